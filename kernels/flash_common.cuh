// The parts of exact attention's forward that do not depend on how the matrix products are
// done: flash_attn.cu (mma.sync) and flash_attn_sm90.cu (Hopper's wgmma) share them. Both
// hold the scores and the output in mma.sync's accumulator layout: a warp has 16-row tiles
// (MT of them), each thread rows lane/4 and lane/4 + 8 of a tile and, in each 8-column tile,
// columns 2·(lane % 4) and + 1; s[mt][nt][2h + c] is row h's column c of tile nt.
#pragma once
#include "common.cuh"

// The query block a thread block owns (query block `block` of head `head`; by default those
// of its grid position): the packed batch's sequence `seq` (tokens seq_start to seq_end), its
// first row q0, the rows it holds (at most BM), and the head's column offset (D values a
// head).
struct QueryBlock {
    int seq;
    i64 q0, seq_start, seq_end;
    int q_rows;
    i64 head_off;
};

template <int BM, int D>
__device__ __forceinline__ QueryBlock query_block(const i64* offsets, const i64* block_seq, const i64* block_q0,
                                                  i64 block = blockIdx.x, int head = blockIdx.y) {
    QueryBlock b;
    b.seq = (int)block_seq[block];
    b.q0 = block_q0[block];
    b.seq_start = offsets[b.seq];
    b.seq_end = offsets[b.seq + 1];
    b.q_rows = (int)min((i64)BM, b.seq_end - b.q0);
    b.head_off = (i64)head * D;
    return b;
}

// Element offset of 16-byte chunk `chunk` of row `row` in a shared-memory tile of D columns
// with rows LD elements apart. ldmatrix reads 8 rows at one chunk per phase; shared memory
// serves 128 B a cycle, 8 groups of 4 banks, so those 8 chunks must lie in 8 different
// groups (chunk address / 16 mod 8):
// - LD == D, D a multiple of 64 (8 or 16 chunks a row): dense rows, chunks swizzled as
//   chunk ^ (row % 8), which stays inside the row's aligned group of 8 chunks;
// - otherwise (D = 80: 10 chunks, 96: 12, where the XOR would leave the row): rows padded by
//   one chunk, LD = D + 8. Then a row is an odd number of chunks long (D / 8 is even, as D
//   is a multiple of 16), so 8 consecutive rows start in 8 different groups mod 8: for
//   D = 80, 176-byte rows are 44 words, 44 mod 32 = 12, the rows' first words mod 32 are
//   0, 12, 24, 4, 16, 28, 8, 20. cp.async's 16-byte writes of consecutive chunks lose at
//   most a 2-way conflict where a phase spans a row end (asynchronous, off the MMA path).
template <int D, int LD>
__device__ __forceinline__ int tile_at(int row, int chunk) {
    static_assert(LD == D ? D % 64 == 0 : LD == D + 8, "LD: D (swizzled, D a multiple of 64) or D + 8");
    if constexpr (LD == D) {
        return row * D + ((chunk ^ (row & 7)) << 3);
    } else {
        return row * LD + (chunk << 3);
    }
}

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// This thread's query positions (grid row, column) for ALiBi: tile mt, half h is block row
// row_base + 16·mt + 8·h, of which the block holds q_rows from token q0.
template <int MT>
__device__ __forceinline__ void load_query_positions(float (&qpos)[MT][2][2], const float* positions,
                                                     int row_base, int q_rows, i64 q0) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = row_base + mt * 16 + 8 * h;
            const i64 t = q0 + (r < q_rows ? r : 0);
            qpos[mt][h][0] = positions[2 * t];
            qpos[mt][h][1] = positions[2 * t + 1];
        }
}

// The ALiBi bias's inputs for this thread (see load_query_positions): its query positions,
// and returned, the head's slope in unscaled-score units (slope · √d); 0 without ALiBi
// (null positions), the positions then left unset.
template <int MT>
__device__ __forceinline__ float query_alibi(float (&qpos)[MT][2][2], const float* __restrict__ positions,
                                             const float* __restrict__ slopes_log2, int head, float scale_log2,
                                             int row_base, int q_rows, i64 q0) {
    if (!positions) return 0.f;
    const float slope = slopes_log2[head] / scale_log2;
    load_query_positions<MT>(qpos, positions, row_base, q_rows, q0);
    return slope;
}

// A query block's running state at its start: output zero, no maximum, no sum.
template <int MT, int DT>
__device__ __forceinline__ void start_rows(float (&o)[MT][DT][4], float (&row_max)[MT][2], float (&row_sum)[MT][2]) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int dt = 0; dt < DT; ++dt)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[mt][dt][e] = 0.f;
        row_max[mt][0] = row_max[mt][1] = NEG_INF;
        row_sum[mt][0] = row_sum[mt][1] = 0.f;
    }
}

// Scores stay unscaled until the exponential, where the base-2 scale folds into one FMA.
// The ALiBi bias (in unscaled units: `slope` is slope · √d) and the mask of keys past the
// sequence's end, for the NT·8 keys from k0; both branches are uniform and cost nothing on
// blocks that need neither.
template <int MT, int NT>
__device__ __forceinline__ void bias_and_mask(float (&s)[MT][NT][4], const float (&qpos)[MT][2][2],
                                              const float* positions, float slope, i64 k0, i64 seq_end,
                                              int lane) {
    if (positions) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int c = 0; c < 2; ++c) {
                const i64 key = min(k0 + nt * 8 + 2 * (lane & 3) + c, seq_end - 1);
                const float kp0 = positions[2 * key], kp1 = positions[2 * key + 1];
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        const float dr = qpos[mt][h][0] - kp0, dc = qpos[mt][h][1] - kp1;
                        s[mt][nt][2 * h + c] -= slope * sqrtf(dr * dr + dc * dc);
                    }
            }
    }
    if (k0 + NT * 8 > seq_end) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int c = 0; c < 2; ++c) {
                if (k0 + nt * 8 + 2 * (lane & 3) + c >= seq_end) {
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        s[mt][nt][c] = NEG_INF;
                        s[mt][nt][2 + c] = NEG_INF;
                    }
                }
            }
    }
}

// `part`'s N values (a power of two) reduced by `op` as a pairwise tree: a log-depth chain
// instead of an N-long one. Each level's width is a constant (W halves per template level),
// so every index is too and `part` stays in registers (a runtime-halving loop left a
// 16-value array in local memory).
template <int N, typename Op>
__device__ __forceinline__ float tree_reduce(float (&part)[N], Op op) {
    if constexpr (N == 1) {
        return part[0];
    } else {
#pragma unroll
        for (int i = 0; i < N / 2; ++i) part[i] = op(part[i], part[i + N / 2]);
        return tree_reduce<N / 2>(reinterpret_cast<float(&)[N / 2]>(part), op);
    }
}

// Online softmax over one block of keys, its first half: new row maxima (over the 4 threads
// holding a row), scores to probabilities p = 2^(s·scale − max·scale) in place, row sums
// rescaled and added to; `alpha`, what the output accumulated so far is to be scaled by.
// Returns whether no row's maximum moved (every alpha 1).
template <int MT, int NT>
__device__ __forceinline__ bool softmax_scores(float (&s)[MT][NT][4], float (&row_max)[MT][2],
                                               float (&row_sum)[MT][2], float (&alpha)[MT][2], float scale_log2) {
    static_assert((NT & (NT - 1)) == 0, "NT: a power of two (the trees below)");
    bool unchanged = true;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            float part[NT];
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) part[nt] = fmaxf(s[mt][nt][2 * h], s[mt][nt][2 * h + 1]);
            float mx = tree_reduce<NT>(part, [](float x, float y) { return fmaxf(x, y); });
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
            // Every block holds at least one valid key, so mx is finite.
            const float m_new = fmaxf(row_max[mt][h], mx);
            unchanged &= m_new == row_max[mt][h];
            alpha[mt][h] = fast_exp2((row_max[mt][h] - m_new) * scale_log2);
            row_max[mt][h] = m_new;
            const float offset = -m_new * scale_log2;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                const float p0 = fast_exp2(fmaf(s[mt][nt][2 * h], scale_log2, offset));
                const float p1 = fast_exp2(fmaf(s[mt][nt][2 * h + 1], scale_log2, offset));
                s[mt][nt][2 * h] = p0;
                s[mt][nt][2 * h + 1] = p1;
                part[nt] = p0 + p1;
            }
            const float sum = tree_reduce<NT>(part, [](float x, float y) { return x + y; });
            row_sum[mt][h] = row_sum[mt][h] * alpha[mt][h] + sum;
        }
    return unchanged;
}

// Its second half: the output accumulated so far scaled by `alpha`.
template <int MT, int DT>
__device__ __forceinline__ void rescale_output(float (&o)[MT][DT][4], const float (&alpha)[MT][2]) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int dt = 0; dt < DT; ++dt) {
            o[mt][dt][0] *= alpha[mt][0];
            o[mt][dt][1] *= alpha[mt][0];
            o[mt][dt][2] *= alpha[mt][1];
            o[mt][dt][3] *= alpha[mt][1];
        }
}

// Both halves (SKIP_RESCALE: the rescale only when a warp vote says some maximum moved).
template <int MT, int NT, int DT, bool SKIP_RESCALE>
__device__ __forceinline__ void online_softmax(float (&s)[MT][NT][4], float (&o)[MT][DT][4],
                                               float (&row_max)[MT][2], float (&row_sum)[MT][2],
                                               float scale_log2) {
    float alpha[MT][2];
    const bool unchanged = softmax_scores(s, row_max, row_sum, alpha, scale_log2);
    if (!SKIP_RESCALE || !__all_sync(0xffffffff, unchanged)) rescale_output(o, alpha);
}

// The probabilities of keys 16·kk .. 16·kk + 15 as the A operand of the P·V product (the
// scores' accumulator layout is the A operand's).
template <bool BF16, int MT, int NT>
__device__ __forceinline__ void probabilities_as_a(unsigned (&a)[4], const float (&s)[MT][NT][4], int mt, int kk) {
    a[0] = pack2<BF16>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
    a[1] = pack2<BF16>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
    a[2] = pack2<BF16>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
    a[3] = pack2<BF16>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
}

// The sum of `x` over the 4 threads of a quad (the threads holding one accumulator row).
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffff, x, 1);
    return x + __shfl_xor_sync(0xffffffff, x, 2);
}

// O / row sum (over the 4 threads holding a row) written to this thread's rows of `out`:
// tile mt, half h is block row row_base + 16·mt + 8·h, of which the block holds q_rows; the
// first STORED of its DT 8-column tiles (the rest: a kernel's padding).
template <bool BF16, int MT, int DT, int STORED = DT>
__device__ __forceinline__ void store_rows(const float (&o)[MT][DT][4], const float (&row_sum)[MT][2],
                                           half_bits* out, i64 out_stride, i64 head_off, i64 q0, int row_base,
                                           int q_rows, int lane) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const float total = quad_sum(row_sum[mt][h]);
            const float inv = 1.f / total;
            const int r = row_base + mt * 16 + 8 * h;
            if (r < q_rows) {
                half_bits* dst = out + (q0 + r) * out_stride + head_off + 2 * (lane & 3);
#pragma unroll
                for (int dt = 0; dt < STORED; ++dt)
                    *reinterpret_cast<unsigned*>(dst + dt * 8) =
                        pack2<BF16>(o[mt][dt][2 * h] * inv, o[mt][dt][2 * h + 1] * inv);
            }
        }
}

// Each of this thread's rows' log-sum-exp of its scaled scores, natural log ((row maximum ·
// scale + log2 of the row sum, the sum over the 4 threads holding the row) · ln 2), at
// lse[token · heads + head]: what the backward pass recomputes probabilities from.
template <int MT>
__device__ __forceinline__ void store_lse(const float (&row_max)[MT][2], const float (&row_sum)[MT][2], float* lse,
                                          int head, int heads, i64 q0, int row_base, int q_rows, int lane,
                                          float scale_log2) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const float total = quad_sum(row_sum[mt][h]);
            const int r = row_base + mt * 16 + 8 * h;
            if (r < q_rows && (lane & 3) == 0) lse[(q0 + r) * heads + head] = (row_max[mt][h] * scale_log2 + log2f(total)) * 0.69314718f;
        }
}
