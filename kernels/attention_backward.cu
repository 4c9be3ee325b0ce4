// Exact attention's backward pass, FlashAttention-2 style, on tensor cores (mma.sync
// m16n8k16, or wgmma on a Hopper): probabilities recomputed from the log-sum-exp the forward
// saved, memory O(N·d), packed variable-length batches and the 2D ALiBi bias as
// in the forward (q and k arrive rotated when the encoder uses RoPE; the host turns their
// gradients back).
//
// With z = q·kᵀ/√d (+ bias), P = softmax(z) by rows, O = P·V and dO given:
//   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dZ = P ∘ (dP − rowsum(dO ∘ O)),  dQ = dZ·K/√d,  dK = dZᵀ·Q/√d.
// The rows' log-sum-exps (in log2 units) and δs come in pairs from `attention_row_terms`.
// A block owns BK = 128 keys of one head of one sequence (16 a warp) and walks every query
// block of the sequence, BQ rows at a time (64; on mma.sync 32 at d 128, where 64 would spill),
// the next step's Q and dO copied in while this one computes: it holds dK and dV for its keys in registers and
// adds its share of dQ into an f32 buffer (global reductions), which `attention_dq` then scales into
// the bf16 gradient. Grid: x = key blocks (the forward's block table, built with 128 rows a
// block), y = heads.
//
// On a Hopper (the _sm90_ kernels, d 64 and 128) every product runs on wgmma, a warpgroup's
// 64 keys at a time: Sᵀ and dPᵀ from shared memory, dV and dK with Pᵀ and dZᵀ from registers, and dQ
// from the stored dZᵀ, each warpgroup half of D. A step's dQ product runs on into the next
// step, whose Sᵀ and dPᵀ are issued before it is waited for and its sums added: each warp
// stages its 16 rows in shared memory and adds them with one bulk reduction into an f32
// accumulator laid out [head][half of D][rows][D/2] (`attention_dq_halves` reads it).
#include "flash_common.cuh"
#include "flash_wgmma.cuh"

namespace {

constexpr int WARPS = 8;
constexpr int THREADS = WARPS * 32;
constexpr int BK = WARPS * 16;  // keys a block

// The row stride of the BK × BQ tile of dZᵀ: swizzled at 64 columns, padded below (tile_at).
template <int BQ>
__device__ constexpr int ds_stride() {
    return BQ % 64 == 0 ? BQ : BQ + 8;
}

// dst[0..4] += (a, b, c, d) in global memory, dst 16-byte aligned: one vector reduction on
// Hopper (the L2 takes a quarter of the requests), four atomics elsewhere.
__device__ __forceinline__ void add_f32x4(float* dst, float a, float b, float c, float d) {
#if __CUDA_ARCH__ >= 900
    asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(dst), "f"(a), "f"(b), "f"(c), "f"(d)
                 : "memory");
#else
    atomicAdd(dst, a);
    atomicAdd(dst + 1, b);
    atomicAdd(dst + 2, c);
    atomicAdd(dst + 3, d);
#endif
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// The compiler sees a wgmma's register A operands read when it is issued, not when it is
// waited for: pinning them (an empty asm that "changes" each) after the wait keeps their
// registers from being reused while the product may still read them.
template <int N>
__device__ __forceinline__ void fence_fragments(unsigned (&a)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) asm volatile("" : "+r"(a[i][j])::"memory");
}

// dQ's 64 queries × this warpgroup's N columns of D (half of it) = dZ·K over a block's BK
// keys, one wgmma group: dZ read as the transpose of the stored dZᵀ tile and K from its tile,
// both MN-major (keys down their 128-byte rows, 16 keys = 2,048 bytes a slice); `k_columns`:
// the first of the warpgroup's columns in K's tile (at d 64, 64 bytes into the rows for the
// second half: the swizzle acts on addresses). The accumulators: this warp's 16 queries, in
// mma.sync's layout, 8 columns a tile.
template <int BK_, int N>
__device__ __forceinline__ void issue_dq(float (&acc)[N / 16][2][4], unsigned dzt_tile, unsigned k_columns) {
    const unsigned long long a = descriptor(dzt_tile, BK_ * 128, 1024), b = descriptor(k_columns, BK_ * 128, 1024);
#pragma unroll
    for (int kk = 0; kk < BK_ / 16; ++kk)
        wgmma_ss_mn<true, N>(&acc[0][0][0], advance(a, kk * 2048), advance(b, kk * 2048), kk > 0);
    wgmma_commit();
}
#endif

// A 32-bit store to shared memory at a shared-space address.
__device__ __forceinline__ void st_shared_u32(unsigned addr, unsigned value) {
    asm volatile("st.shared.u32 [%0], %1;" ::"r"(addr), "r"(value) : "memory");
}

// Copies `rows` (at most R) rows of D values from `src` (rows `stride` apart) into the
// swizzled R-row tile `dst`, zeros past them; cp.async, not waited for. The tile is laid out
// as tile_at places rows, or in wgmma's 128-byte panels (PANELS; the same layout at d 64).
// A thread copies one 16-byte chunk of every PASS-th row: a fixed count, unrolled, whose
// chunk and swizzle are the same in every pass (PASS is a multiple of 8).
template <int D, int R, bool PANELS>
__device__ __forceinline__ void load_rows(half_bits* dst, const half_bits* src, i64 stride, int rows) {
    constexpr int CH = D / 8, PASS = THREADS / CH;
    static_assert(THREADS % CH == 0 && R % PASS == 0 && PASS % 8 == 0, "whole passes");
    const int r0 = threadIdx.x / CH, c = threadIdx.x % CH;
#pragma unroll
    for (int j = 0; j < R / PASS; ++j) {
        const int r = r0 + j * PASS;
        const bool ok = r < rows;
        const unsigned at = PANELS ? panel_at<R>(r, c) : tile_at<D, D>(r, c) * 2;
        cp_async16(smem_addr(dst) + at, src + (ok ? r : 0) * stride + c * 8, ok);
    }
}

// One lane's addresses in a shared-memory tile of LD-wide rows laid out as tile_at<D, LD>
// places them: the lane's row r and chunk c0 are fixed, and each access adds a multiple of
// 8 rows and an offset chunk whose bits are disjoint from c0's. Then the row's swizzle is
// the lane's alone ((chunk + c0) ^ (r & 7) = chunk ^ (c0 ^ (r & 7))), and an address is an
// xor and an add off two registers rather than the swizzle recomputed at every ldmatrix.
template <int D, int LD>
struct LaneTile {
    unsigned row;  // shared address of the lane's row (plus `byte` within its chunk)
    unsigned x;    // the lane's chunk bits, swizzled, in bytes
    __device__ __forceinline__ LaneTile(const half_bits* tile, int r, int c0, int byte = 0)
        : row(smem_addr(tile) + r * LD * 2 + byte), x((LD == D ? c0 ^ (r & 7) : c0) << 4) {}
    // The address `rows` (a multiple of 8) below the lane's row, at chunk `chunk` + c0.
    __device__ __forceinline__ unsigned at(int rows, int chunk) const { return row + rows * LD * 2 + ((chunk << 4) ^ x); }
};

// acc (16 rows × NT·8 columns) = A · Bᵀ, A this warp's 16 rows of tile `a` and B the NT·8
// rows of tile `b` (both D wide, swizzled): scores Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ. The lanes' rows
// and chunks are ldmatrix's: `a` from a_lane(), `b` from b_lane().
template <int D>
__device__ __forceinline__ LaneTile<D, D> a_lane(const half_bits* tile, int warp, int lane) {
    return LaneTile<D, D>(tile, warp * 16 + (lane & 15), lane >> 4);
}
template <int D>
__device__ __forceinline__ LaneTile<D, D> b_lane(const half_bits* tile, int lane) {
    return LaneTile<D, D>(tile, (lane >> 4) * 8 + (lane & 7), (lane >> 3) & 1);
}
// ... and the transposed B operand's (ldmatrix .trans): rows kk·16 on, chunks dp·2 on.
template <int D, int LD = D>
__device__ __forceinline__ LaneTile<D, LD> bt_lane(const half_bits* tile, int lane, int chunk0 = 0) {
    return LaneTile<D, LD>(tile, ((lane >> 3) & 1) * 8 + (lane & 7), chunk0 + (lane >> 4));
}

template <int D, int NT>
__device__ __forceinline__ void rows_times_rows(float (&acc)[NT][4], const LaneTile<D, D>& a, const LaneTile<D, D>& b) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[nt][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        unsigned af[4];
        ldmatrix_x4(af, a.at(0, kk * 2));
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
            unsigned bf[4];
            ldmatrix_x4(bf, b.at(np * 16, kk * 2));
            mma_16816<true>(acc[2 * np], af, bf);
            mma_16816<true>(acc[2 * np + 1], af, bf + 2);
        }
    }
}

// acc (16 × D) += A · B, A the warp's 16 × NT·8 values (Pᵀ or dZᵀ) as bf16 A fragments,
// `a_of(kk, af)` giving those of columns 16·kk..16·kk + 16, and B the NT·8 rows of tile `b`
// (D wide; from bt_lane()): dV += Pᵀ·dO and dK += dZᵀ·Q.
template <int D, int NT, typename AFragments>
__device__ __forceinline__ void values_times_rows(float (&acc)[D / 8][4], AFragments a_of, const LaneTile<D, D>& b) {
#pragma unroll
    for (int kk = 0; kk < NT / 2; ++kk) {
        unsigned af[4];
        a_of(kk, af);
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
            unsigned bf[4];
            ldmatrix_x4_trans(bf, b.at(kk * 16, dp * 2));
            mma_16816<true>(acc[2 * dp], af, bf);
            mma_16816<true>(acc[2 * dp + 1], af, bf + 2);
        }
    }
}

template <int D, int BQ, bool DK_LATE, bool WGMMA>
__device__ __forceinline__ void attention_backward(
    const half_bits* __restrict__ q, const half_bits* __restrict__ k, const half_bits* __restrict__ v, i64 qkv_stride,
    const half_bits* __restrict__ dout, i64 dout_stride, const float* __restrict__ row_terms, float* __restrict__ dq,
    half_bits* __restrict__ dk, half_bits* __restrict__ dv,
    i64 dkv_stride, const i64* __restrict__ offsets, const i64* __restrict__ block_seq,
    const i64* __restrict__ block_k0, const float* __restrict__ positions, const float* __restrict__ slopes_log2,
    float scale_log2, i64 dq_rows) {
    static_assert(D % 64 == 0 && D <= 128, "head dims 64 and 128");
    static_assert(BQ % 32 == 0 && BQ <= 64, "queries a step: 32 or 64");
    constexpr int DT = D / 8, NT = BQ / 8, LDS = ds_stride<BQ>();
    // dQ = dZ·K: the warps split the step's BQ / 16 groups of 16 queries, and D among them.
    constexpr int QG = BQ / 16, D_PARTS = WARPS / QG;
    static_assert(!WGMMA || (BQ == 64 && !DK_LATE), "wgmma: 64 queries a step");
#if !defined(__CUDA_ARCH_FEAT_SM90_ALL)
    if constexpr (WGMMA) __trap();  // launched on Hopper only
#endif
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    // wgmma's tiles start on 1,024-byte boundaries (its swizzle's period; the launch gives 1
    // KB to spare), laid out in its 128-byte-swizzled panels (load_rows).
    unsigned char* smem = smem_raw;
    if constexpr (WGMMA) smem += ((smem_addr(smem_raw) + 1023u) & ~1023u) - smem_addr(smem_raw);
    half_bits* sk = reinterpret_cast<half_bits*>(smem);  // BK × D
    half_bits* sv = sk + BK * D;                               // BK × D
    half_bits* sq = sv + BK * D;                               // 2 stages × BQ × D
    half_bits* sdo = sq + 2 * BQ * D;                          // 2 stages × BQ × D
    // dZᵀ, BK × LDS; on wgmma two, one a step (dQ's product reads one while the next is made).
    half_bits* sds = sdo + 2 * BQ * D;
    // 2 stages × BQ rows' (log-sum-exp in log2 units, δ): attention_row_terms's.
    float2* sterms = reinterpret_cast<float2*>(sds + (WGMMA ? 2 : 1) * BK * LDS);
    // On wgmma, each warp's 16 rows × D/2 columns of dQ on their way to the accumulator.
    [[maybe_unused]] float* sdq = reinterpret_cast<float*>(sterms + 2 * BQ) + (threadIdx.x >> 5) * 16 * (D / 2);

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    [[maybe_unused]] const int warpgroup = uniform_warpgroup();
    const int head = blockIdx.y, heads = gridDim.y;
    // The key block, as the forward's query blocks are found (BK rows a block).
    const QueryBlock kb = query_block<BK, D>(offsets, block_seq, block_k0);
    const i64 k0 = kb.q0, seq_start = kb.seq_start, seq_end = kb.seq_end, head_off = kb.head_off;
    const int k_rows = kb.q_rows;

    load_rows<D, BK, WGMMA>(sk, k + k0 * qkv_stride + head_off, qkv_stride, k_rows);
    load_rows<D, BK, WGMMA>(sv, v + k0 * qkv_stride + head_off, qkv_stride, k_rows);
    cp_async_commit();

    // This thread's key rows (block rows row_base and row_base + 8) for ALiBi.
    const int row_base = warp * 16 + (lane >> 2);
    float kpos[1][2][2];
    const float slope = query_alibi<1>(kpos, positions, slopes_log2, head, scale_log2, row_base, k_rows, k0);

    float dk_acc[DT][4], dv_acc[DT][4];
#pragma unroll
    for (int dt = 0; dt < DT; ++dt)
#pragma unroll
        for (int e = 0; e < 4; ++e) dk_acc[dt][e] = dv_acc[dt][e] = 0.f;

    // The lanes' addresses in the tiles every step reads the same way (LaneTile).
    const auto k_lane = a_lane<D>(sk, warp, lane), v_lane = a_lane<D>(sv, warp, lane);
    const LaneTile<BQ, LDS> ds_store(sds, warp * 16 + (lane >> 2), 0, 4 * (lane & 3));
    constexpr unsigned DS_BYTES = WGMMA ? BK * LDS * 2 : 0;  // from one dZᵀ buffer to the next
    // dQ: the warp's 16 queries and DP 16-column parts of D (see below).
    constexpr int DP = D / 16 / D_PARTS;
    const int group = warp % QG, dp0 = warp / QG * DP;
    const LaneTile<BQ, LDS> dz_lane(sds, (lane >> 4) * 8 + (lane & 7), group * 2 + ((lane >> 3) & 1));
    const auto kt_lane = bt_lane<D>(sk, lane, dp0 * 2);

    const i64 width = (i64)heads * D;
    // This warp's dQ (its 16 queries of the step from q0 and DP 16-column parts of D) added to
    // the f32 buffer. Lanes pair up (lane, lane ^ 1) so that each holds four adjacent columns
    // of one row: the even lane its upper row, the odd one its lower (8 below), columns
    // 4·((lane >> 1) & 1) of each 8-column tile; one 16-byte reduction instead of four.
    [[maybe_unused]] const auto add_dq = [&](const float (&acc)[DP][2][4], i64 q0, int q_rows) {
        const bool odd = lane & 1;
        const int r = group * 16 + (lane >> 2) + (odd ? 8 : 0);
#pragma unroll
        for (int j = 0; j < DP; ++j)
#pragma unroll
            for (int t = 0; t < 2; ++t) {
                const float give0 = odd ? acc[j][t][0] : acc[j][t][2], give1 = odd ? acc[j][t][1] : acc[j][t][3];
                const float got0 = __shfl_xor_sync(0xffffffffu, give0, 1);
                const float got1 = __shfl_xor_sync(0xffffffffu, give1, 1);
                // Selected, not branched on: one reduction whichever lane.
                const float a = odd ? got0 : acc[j][t][0], b = odd ? got1 : acc[j][t][1];
                const float c = odd ? acc[j][t][2] : got0, d = odd ? acc[j][t][3] : got1;
                if (r < q_rows)
                    add_f32x4(dq + (q0 + r) * width + head_off + (dp0 + j) * 16 + t * 8 + 2 * (lane & 2), a, b, c, d);
            }
    };
    // On wgmma a step's dQ product is issued at the next step's barrier, beside that step's
    // Sᵀ and dPᵀ, and its sums added while they run (its first row and rows kept here). The
    // first step issues one too, on the unwritten tile, and adds none of it (no rows): were
    // the issue conditional, the compiler would join the accumulators' two paths with
    // copies that read them while the product runs, and ptxas would wait for it there.
    [[maybe_unused]] float dq_pending[DP][2][4];
    // issue_dq's: the warpgroup's first column of D in K's panels.
    [[maybe_unused]] const unsigned k_columns = smem_addr(sk) + panel_at<BK>(0, warpgroup * D / 16);
    i64 pending_q0 = seq_start;
    int pending_rows = 0;
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    // This warp's 16 rows of a step's dQ (its warpgroup's half of D) added to the accumulator
    // [head][half][dq_rows][D/2], where they are one contiguous span: staged in shared memory
    // and added by one bulk reduction from lane 0, instead of a 16-byte reduction per lane and
    // (D/2)/8 of them a row. Column c of a row lies at c ^ 8·(token & 3), so that the lanes'
    // 8-byte stores (8 rows × 4 column pairs an instruction) hit all 32 banks. Rows past the
    // sequence add zeros (their probabilities are 0): into the next sequence's rows, or the
    // accumulator's 64 rows of padding.
    [[maybe_unused]] const auto bulk_dq = [&](const float (&acc)[DP][2][4], i64 q0, int q_rows) {
        if (q_rows == 0) return;  // the first step's product, on the unwritten tile
        constexpr int HALF = D / 2;
        // The last reduction from the staging tile has read it.
        if (lane == 0) asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
        __syncwarp();
        const i64 row0 = q0 + group * 16;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = (lane >> 2) + 8 * h, swizzle = 8 * (int)((row0 + r) & 3);
#pragma unroll
            for (int j = 0; j < DP; ++j)
#pragma unroll
                for (int t = 0; t < 2; ++t) {
                    const int c = j * 16 + t * 8 + 2 * (lane & 3);
                    *reinterpret_cast<float2*>(sdq + r * HALF + (c ^ swizzle)) =
                        make_float2(acc[j][t][2 * h], acc[j][t][2 * h + 1]);
                }
        }
        fence_async_shared();  // the stores visible to the bulk copy
        __syncwarp();
        if (lane == 0) {
            const float* to = dq + ((i64)(head * 2 + warpgroup) * dq_rows + row0) * HALF;
            asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n"
                         "cp.async.bulk.commit_group;\n" ::"l"(to),
                         "r"(smem_addr(sdq)), "n"(16 * HALF * 4)
                         : "memory");
        }
    };
#endif

    // The query step from q0 into stage `stage`, all by cp.async (not waited for): Q, dO and
    // the rows' terms. Rows past the sequence get zeros: their scores are masked to −∞, so
    // any finite log-sum-exp does.
    auto fetch = [&](int stage, i64 q0) {
        const int q_rows = (int)min((i64)BQ, seq_end - q0);
        load_rows<D, BQ, WGMMA>(sq + stage * BQ * D, q + q0 * qkv_stride + head_off, qkv_stride, q_rows);
        load_rows<D, BQ, WGMMA>(sdo + stage * BQ * D, dout + q0 * dout_stride + head_off, dout_stride, q_rows);
        static_assert(BQ <= THREADS, "a thread a row's terms");
        if (tid < BQ) {
            const bool ok = tid < q_rows;
            cp_async8(smem_addr(sterms + stage * BQ + tid), row_terms + (ok ? (q0 + tid) * heads + head : 0) * 2, ok);
        }
        cp_async_commit();
    };
    fetch(0, seq_start);

    int stage = 0;
    for (i64 q0 = seq_start; q0 < seq_end; q0 += BQ, stage ^= 1) {
        const int q_rows = (int)min((i64)BQ, seq_end - q0);
        // This step's copies are the only ones in flight. Once every thread has them and is
        // past this barrier, the last step is over everywhere (its reads of the other stage
        // and of dZᵀ), so the next step's copies go into the other stage while this one
        // computes: one barrier a step here, one before dQ (on wgmma this one serves both:
        // the last step's dZᵀ is stored in the other tile, which no product reads).
        cp_async_wait<0>();
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
        if constexpr (WGMMA) fence_async_shared();  // the copies visible to wgmma
#endif
        __syncthreads();
        if (q0 + BQ < seq_end) fetch(stage ^ 1, q0 + BQ);
        const half_bits* sq_now = sq + stage * BQ * D;
        const half_bits* sdo_now = sdo + stage * BQ * D;
        // A thread's two query columns of tile nt are adjacent: one 16-byte load gives both
        // rows' terms (log-sum-exp, δ, log-sum-exp, δ).
        const auto terms = [&](int nt) {
            return *reinterpret_cast<const float4*>(sterms + stage * BQ + nt * 8 + 2 * (lane & 3));
        };

        // Sᵀ for the warp's 16 keys and the step's BQ queries, and dPᵀ = V·dOᵀ: both products
        // first, so that dPᵀ's run on the tensor cores while Sᵀ turns into probabilities
        // (the masking's branches would otherwise keep the compiler from interleaving them).
        float p[NT][4], ds[NT][4];
        // On wgmma: the warpgroup's 64 keys (its four warps' 16 each, rows as mma.sync's).
        using Acc = float(&)[1][NT][4];
        using Out = float(&)[1][DT][4];
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
        [[maybe_unused]] const unsigned wg_keys = smem_addr(sk) + warpgroup * 64 * 128;
        [[maybe_unused]] const unsigned wg_values = smem_addr(sv) + warpgroup * 64 * 128;
        [[maybe_unused]] unsigned p_a[NT / 2][4];
#endif
        if constexpr (WGMMA) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
            fence_registers<DP * 8>(&dq_pending[0][0][0]);
            wgmma_fence();
            issue_dq<BK, D / 2>(dq_pending, smem_addr(sds) + (stage ^ 1) * DS_BYTES, k_columns);
            issue_scores<true, D, BK, BQ>(reinterpret_cast<Acc>(p), wg_keys, smem_addr(sq_now));
            issue_scores<true, D, BK, BQ>(reinterpret_cast<Acc>(ds), wg_values, smem_addr(sdo_now));
            // dQ's group, committed first, is done first.
            wgmma_wait<2>();
            fence_registers<DP * 8>(&dq_pending[0][0][0]);
            bulk_dq(dq_pending, pending_q0, pending_rows);
            wgmma_wait<0>();
            fence_registers<NT * 4>(&p[0][0]);
            fence_registers<NT * 4>(&ds[0][0]);
#endif
        } else {
            rows_times_rows<D, NT>(p, k_lane, b_lane<D>(sq_now, lane));
            rows_times_rows<D, NT>(ds, v_lane, b_lane<D>(sdo_now, lane));
        }
        bias_and_mask<1, NT>(reinterpret_cast<float(&)[1][NT][4]>(p), kpos, positions, slope, q0, seq_end, lane);
        // Keys past the sequence (zero rows, only in a sequence's last block) get no
        // probability: their scores are masked to −∞ here (where the log-sum-exp is very
        // negative, 2^−lse would overflow). A block-wide branch, so that full blocks make
        // their probabilities with no select.
        if (k_rows < BK) {
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (row_base + 8 * (e >> 1) >= k_rows) p[nt][e] = NEG_INF;
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const float4 l = terms(nt);
#pragma unroll
            for (int e = 0; e < 4; ++e) p[nt][e] = fast_exp2(fmaf(p[nt][e], scale_log2, -(e & 1 ? l.z : l.x)));
        }
        if constexpr (WGMMA) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
            // dV += Pᵀ·dO, Pᵀ from registers, dO read MN-major; left running while dZᵀ is made.
            pack_probabilities<true, BQ>(p_a, reinterpret_cast<Acc>(p));
            // Pinned before the fence, so that the compiler cannot sink their writes past it.
            fence_fragments(p_a);
            fence_registers<DT * 4>(&dv_acc[0][0]);
            wgmma_fence();
            issue_values<true, D, BQ>(reinterpret_cast<Out>(dv_acc), p_a, smem_addr(sdo_now));
#endif
        } else {
            values_times_rows<D, NT>(
                dv_acc,
                [&](int kk, unsigned (&af)[4]) {
                    probabilities_as_a<true, 1, NT>(af, reinterpret_cast<const float(&)[1][NT][4]>(p), 0, kk);
                },
                bt_lane<D>(sdo_now, lane));
        }

        // dZᵀ = Pᵀ ∘ (dPᵀ − δ), δ = rowsum(dO ∘ O) of each query.
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const float4 d = terms(nt);
#pragma unroll
            for (int e = 0; e < 4; ++e) ds[nt][e] = p[nt][e] * (ds[nt][e] - (e & 1 ? d.w : d.y));
        }
        // Packed to bf16 once, for dK here and for dQ through shared memory.
        unsigned ds_a[NT / 2][4];
#pragma unroll
        for (int kk = 0; kk < NT / 2; ++kk)
            probabilities_as_a<true, 1, NT>(ds_a[kk], reinterpret_cast<const float(&)[1][NT][4]>(ds), 0, kk);
        const auto dk_step = [&] {
            if constexpr (WGMMA) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
                fence_fragments(ds_a);
                fence_registers<DT * 4>(&dk_acc[0][0]);
                wgmma_fence();
                issue_values<true, D, BQ>(reinterpret_cast<Out>(dk_acc), ds_a, smem_addr(sq_now));
#endif
            } else {
                values_times_rows<D, NT>(
                    dk_acc,
                    [&](int kk, unsigned (&af)[4]) {
#pragma unroll
                        for (int i = 0; i < 4; ++i) af[i] = ds_a[kk][i];
                    },
                    bt_lane<D>(sq_now, lane));
            }
        };
        if constexpr (!DK_LATE) dk_step();

        // dZᵀ to shared memory ([key][query]), for dQ = dZ·K: fragment i of ds_a[kk] holds
        // tile 2·kk + (i >> 1), rows half i & 1.
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int h = 0; h < 2; ++h)
                st_shared_u32(ds_store.at(8 * h, nt) + stage * DS_BYTES, ds_a[nt / 2][(nt & 1) * 2 + h]);
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
        if constexpr (WGMMA) {
            // dV's and dK's products done: their registers and this step's Q and dO free.
            wgmma_wait<0>();
            fence_registers<DT * 4>(&dv_acc[0][0]);
            fence_registers<DT * 4>(&dk_acc[0][0]);
            fence_fragments(p_a);
            fence_fragments(ds_a);
            fence_async_shared();  // dZᵀ's stores visible to wgmma
            pending_q0 = q0;
            pending_rows = q_rows;
        }
#endif
        if constexpr (!WGMMA) {
            __syncthreads();
            // DK_LATE: dK after the barrier, beside dQ's products, two independent chains for
            // the compiler to interleave (faster at d 64, slower at d 128: bench/RESULTS.md).
            if constexpr (DK_LATE) dk_step();

            // dQ for the warp's 16 queries and DP 16-column parts of D: A = dZ (the transpose
            // of the stored dZᵀ, loaded once for all DP parts), B = K; added at once.
            float acc[DP][2][4] = {};
#pragma unroll
            for (int kk = 0; kk < BK / 16; ++kk) {
                unsigned af[4];
                ldmatrix_x4_trans(af, dz_lane.at(kk * 16, 0));
#pragma unroll
                for (int j = 0; j < DP; ++j) {
                    unsigned bf[4];
                    ldmatrix_x4_trans(bf, kt_lane.at(kk * 16, j * 2));
                    mma_16816<true>(acc[j][0], af, bf);
                    mma_16816<true>(acc[j][1], af, bf + 2);
                }
            }
            add_dq(acc, q0, q_rows);
        }
    }
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    if constexpr (WGMMA) {
        // The last step's dQ.
        __syncthreads();
        fence_registers<DP * 8>(&dq_pending[0][0][0]);
        wgmma_fence();
        issue_dq<BK, D / 2>(dq_pending, smem_addr(sds) + (stage ^ 1) * DS_BYTES, k_columns);
        wgmma_wait<0>();
        fence_registers<DP * 8>(&dq_pending[0][0][0]);
        bulk_dq(dq_pending, pending_q0, pending_rows);
        // The reductions done before the block's shared memory goes.
        if (lane == 0) asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
    }
#endif

    // dK (scaled by 1/√d, the scores' scale) and dV for the block's keys.
    const float scale = scale_log2 * 0.69314718f;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int r = row_base + 8 * h;
        if (r >= k_rows) continue;
        const i64 at = (k0 + r) * dkv_stride + head_off + 2 * (lane & 3);
#pragma unroll
        for (int dt = 0; dt < DT; ++dt) {
            *reinterpret_cast<unsigned*>(dk + at + dt * 8) = pack2<true>(dk_acc[dt][2 * h] * scale, dk_acc[dt][2 * h + 1] * scale);
            *reinterpret_cast<unsigned*>(dv + at + dt * 8) = pack2<true>(dv_acc[dt][2 * h], dv_acc[dt][2 * h + 1]);
        }
    }
}

}  // namespace

// One kernel per head dim: ATTENTION_BACKWARD(NAME, D, BQ, DK_LATE, WGMMA); shared memory
// (2·BK + 4·BQ)·D + BK·ds_stride(BQ) 16-bit values and 4·BQ floats; on wgmma a second dZᵀ
// tile (BK·ds_stride(BQ) values), dQ's staging (8 warps × 16 rows × D/2 floats) and 1 KB for
// alignment (attention_backward.rs sizes it with the same numbers; its test reads them from
// these lines). `dq`: [tokens, heads·D] f32 sums on mma.sync (`attention_dq` reads them), the
// [heads][2][dq_rows][D/2] accumulator on wgmma (`attention_dq_halves`). The wgmma kernels
// (Hopper, sm_90a) trap elsewhere.
#define ATTENTION_BACKWARD(NAME, D, BQ, DK_LATE, WGMMA)                                                               \
    extern "C" __global__ void __launch_bounds__(THREADS) NAME(                                          \
        const half_bits* q, const half_bits* k, const half_bits* v, i64 qkv_stride, const half_bits* dout, \
        i64 dout_stride, const float* row_terms, float* dq, half_bits* dk, half_bits* dv,                 \
        i64 dkv_stride, const i64* offsets, const i64* block_seq, const i64* block_k0,                    \
        const float* positions, const float* slopes_log2, float scale_log2, i64 dq_rows) {               \
        attention_backward<D, BQ, DK_LATE, WGMMA>(q, k, v, qkv_stride, dout, dout_stride, row_terms, dq, dk, dv, dkv_stride,  \
                              offsets, block_seq, block_k0, positions, slopes_log2, scale_log2, dq_rows); \
    }

ATTENTION_BACKWARD(attention_backward_bf16_d64, 64, 64, true, false)
ATTENTION_BACKWARD(attention_backward_sm90_bf16_d64, 64, 64, false, true)
ATTENTION_BACKWARD(attention_backward_bf16_d128, 128, 32, false, false)
ATTENTION_BACKWARD(attention_backward_sm90_bf16_d128, 128, 64, false, true)

// The backward's two terms of every (token, head) row, `row_terms` [tokens, heads, 2] (f32
// pairs, read 8 bytes at a time): the forward's log-sum-exp in log2 units (the
// probabilities are exp2s) and δ = rowsum(dO ∘ O). One thread a row.
extern "C" __global__ void attention_row_terms(const half_bits* out, const half_bits* dout, const float* lse,
                                               float* row_terms, i64 tokens, int heads, int head_dim) {
    GRID_STRIDE(i, tokens * heads) {
        const half_bits* o = out + i * head_dim;
        const half_bits* g = dout + i * head_dim;
        float sum = 0.f;
        for (int c = 0; c < head_dim; ++c) sum = fmaf(bf16_to_f32(o[c]), bf16_to_f32(g[c]), sum);
        reinterpret_cast<float2*>(row_terms)[i] = make_float2(lse[i] * 1.44269504f, sum);
    }
}

// dQ's f32 sums (`dq` [tokens, heads·head_dim]) scaled by 1/√d into the q part of the bf16
// gradient of the fused projection (`dqkv` [tokens, 3·heads·head_dim]).
extern "C" __global__ void attention_dq(const float* dq, half_bits* dqkv, i64 tokens, int width, float scale) {
    GRID_STRIDE(i, tokens * width) {
        const i64 t = i / width;
        const int c = (int)(i - t * width);
        dqkv[t * 3 * width + c] = f32_to_bf16(dq[i] * scale);
    }
}

// The same from the wgmma kernels' accumulator [heads][2][rows][head_dim/2] (`rows`: the
// tokens and 64 of padding), each row's columns swizzled by its token (bulk_dq).
extern "C" __global__ void attention_dq_halves(const float* acc, half_bits* dqkv, i64 tokens, i64 rows, int heads,
                                               int head_dim, float scale) {
    const int width = heads * head_dim, half = head_dim / 2;
    GRID_STRIDE(i, tokens * width) {
        const i64 t = i / width;
        const int c = (int)(i - t * width), head = c / head_dim, within = c - head * head_dim;
        const int part = within / half, col = within - part * half;
        const float value = acc[((i64)(head * 2 + part) * rows + t) * half + (col ^ (8 * (int)(t & 3)))];
        dqkv[t * 3 * width + c] = f32_to_bf16(value * scale);
    }
}
