// Exact softmax attention, FlashAttention-2 style, on tensor cores (mma.sync m16n8k16).
//
// A block of 4 warps owns 128 query rows of one head of one sequence (32 a warp); keys and
// values stream through shared memory 64 rows at a time, double buffered with cp.async (one
// barrier an iteration), and an online softmax (running maximum and sum per row, in base 2
// with the 1/sqrt(d) scale folded in) keeps memory O(N·d). Head dims: any multiple of 16 up
// to 128 (a FLASH_KERNEL line each, at the end); shared-memory rows are laid out so that
// each ldmatrix phase (8 rows, one 16-byte chunk each) hits the 8 distinct 4-bank groups,
// see tile_at.
//
// Layout: q, k, v are token-major with row strides (a fused QKV projection's output is
// [tokens, 3, heads, d], so q, k and v are views into it; rotated q and k may come from a
// copy), out is [tokens, heads, d] with its own stride. Sequences of a packed batch are `offsets[s]..offsets[s + 1]`; the host lists,
// per query block, its sequence and first row (`block_seq`, `block_q0`), so a batch of
// thousands of 257-token tiles and one sequence of 2^20 tokens are one launch each. Grid:
// x = query blocks (up to 2^31 − 1), y = heads. Every token index is 64-bit.
//
// Optional 2D ALiBi: with `positions` ([tokens, 2] grid row and column, f32) each score gets
// −slope[head] · ‖pos_q − pos_k‖ (`slopes_log2` is pre-multiplied by log2 e), computed here.
#include "flash_common.cuh"

namespace {

constexpr int WARPS = 4;
constexpr int THREADS = WARPS * 32;

// D: head dim; LD: shared-memory row stride (elements, see tile_at); MT: 16-row tiles per
// warp; BN: keys per stage; SKIP_RESCALE: rescale the accumulators only when a warp vote says
// some row maximum moved.
// LSE: also each query row's log-sum-exp (log2 units, of the scaled scores) in `lse`
// ([tokens, heads], f32), which training's backward pass reads.
template <bool BF16, int D, int LD, int MT, int BN, bool Q_IN_REGS, bool SKIP_RESCALE, bool LSE = false>
__device__ __forceinline__ void flash_forward(
    const half_bits* __restrict__ q, const half_bits* __restrict__ k, const half_bits* __restrict__ v,
    i64 q_stride, i64 kv_stride, half_bits* __restrict__ out, i64 out_stride, const i64* __restrict__ offsets,
    const i64* __restrict__ block_seq, const i64* __restrict__ block_q0,
    const float* __restrict__ positions, const float* __restrict__ slopes_log2, float scale_log2,
    float* __restrict__ lse = nullptr) {
    // QKᵀ takes D / 16 k-slices and P·V D / 16 pairs of 8-column tiles, so D is a multiple
    // of 16; past 128 the accumulators no longer fit in registers.
    static_assert(D % 16 == 0 && D >= 16 && D <= 128, "head dims: multiples of 16 up to 128");
    static_assert(BN % 16 == 0 && (BN & (BN - 1)) == 0, "BN: a power of two (the trees below)");
    constexpr int BM = WARPS * MT * 16;  // query rows per block
    constexpr int CH = D / 8;   // 16-byte chunks per row
    constexpr int NT = BN / 8;  // 8-key tiles of the scores
    constexpr int DT = D / 8;   // 8-column tiles of the output
    extern __shared__ __align__(128) unsigned char smem_raw[];
    half_bits* sq = reinterpret_cast<half_bits*>(smem_raw);  // BM × LD
    half_bits* sk = sq + BM * LD;                             // 2 stages × BN × LD
    half_bits* sv = sk + 2 * BN * LD;                         // 2 stages × BN × LD

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int head = blockIdx.y;
    const QueryBlock qb = query_block<BM, D>(offsets, block_seq, block_q0);
    const i64 q0 = qb.q0, seq_start = qb.seq_start, seq_end = qb.seq_end, head_off = qb.head_off;
    const int q_rows = qb.q_rows;

    for (int i = tid; i < BM * CH; i += THREADS) {
        const int r = i / CH, c = i % CH;
        const bool ok = r < q_rows;
        cp_async16(smem_addr(sq + tile_at<D, LD>(r, c)), q + (q0 + (ok ? r : 0)) * q_stride + head_off + c * 8, ok);
    }
    // Each thread copies one 16-byte chunk of every STEP-th row: one 64-bit address per
    // stage, then pointer steps (in the swizzled layout STEP is 8 or 16, a multiple of 8, so
    // the swizzle stays put; padded rows have none). Where CH does not divide the block's
    // threads (D = 80: 12 rows of 10 chunks a pass, D = 96: 10 of 12), the THREADS % CH
    // threads left over copy nothing, and where STEP does not divide BN the last pass copies
    // only the rows left; at D = 64 and 128 neither happens and the guards compile away.
    constexpr int STEP = THREADS / CH;
    constexpr int PASSES = (BN + STEP - 1) / STEP;
    constexpr bool RAGGED = THREADS % CH != 0 || BN % STEP != 0;
    const int kv_row0 = THREADS % CH == 0 || tid < STEP * CH ? tid / CH : BN, kv_chunk = tid % CH;
    const i64 kv_step = STEP * kv_stride;
    auto load_kv = [&](int stage, i64 k0) {
        const int rows = (int)min((i64)BN, seq_end - k0);
        const i64 first = k0 * kv_stride + head_off + kv_chunk * 8;  // row k0: always valid
        const i64 mine = first + kv_row0 * kv_stride;
        const int at_smem = stage * BN * LD + tile_at<D, LD>(kv_row0, kv_chunk);
#pragma unroll
        for (int t = 0; t < PASSES; ++t) {
            // A row past the stage is not this thread's to copy (not even as zeros).
            if (RAGGED && kv_row0 + t * STEP >= BN) break;
            const bool ok = kv_row0 + t * STEP < rows;
            const i64 at = ok ? mine + t * kv_step : first;
            cp_async16(smem_addr(sk + at_smem + t * STEP * LD), k + at, ok);
            cp_async16(smem_addr(sv + at_smem + t * STEP * LD), v + at, ok);
        }
    };
    load_kv(0, seq_start);
    cp_async_commit();

    // This thread's rows: tile mt, half h → row warp·16·MT + mt·16 + lane/4 + 8h of the block.
    const int row_base = warp * MT * 16 + (lane >> 2);
    float qpos[MT][2][2];
    const float slope = query_alibi<MT>(qpos, positions, slopes_log2, head, scale_log2, row_base, q_rows, q0);

    float o[MT][DT][4], row_max[MT][2], row_sum[MT][2];
    start_rows(o, row_max, row_sum);
    unsigned qf[Q_IN_REGS ? MT : 1][Q_IN_REGS ? D / 16 : 1][4];

    const int blocks = (int)((seq_end - seq_start + BN - 1) / BN);
    for (int j = 0; j < blocks; ++j) {
        const i64 k0 = seq_start + (i64)j * BN;
        // Stage j is the only copy in flight. Once every thread has it and is past this
        // barrier, iteration j − 1 is over everywhere, so its stage takes the next copy:
        // one barrier an iteration.
        cp_async_wait<0>();
        __syncthreads();
        if (j + 1 < blocks) {
            load_kv((j + 1) & 1, k0 + BN);
            cp_async_commit();
        }
        const half_bits* kt = sk + (j & 1) * BN * LD;
        const half_bits* vt = sv + (j & 1) * BN * LD;
        if constexpr (Q_IN_REGS) {
            if (j == 0) {
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int kk = 0; kk < D / 16; ++kk)
                        ldmatrix_x4(qf[mt][kk], smem_addr(sq + tile_at<D, LD>(warp * MT * 16 + mt * 16 + (lane & 15), kk * 2 + (lane >> 4))));
            }
        }

        // Scores S = Q·Kᵀ for this warp's 32 rows and the block's BN keys.
        float s[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.f;
        // Walked as one sequence of (k-slice, key pair) steps so that each step's K fragment
        // is read from shared memory while the previous step's MMAs run.
        auto load_k = [&](unsigned* b, int step) {
            const int kk = step / (NT / 2), np = step % (NT / 2);
            ldmatrix_x4(b, smem_addr(kt + tile_at<D, LD>(np * 16 + (lane >> 4) * 8 + (lane & 7), kk * 2 + ((lane >> 3) & 1))));
        };
        {
            constexpr int STEPS = D / 16 * (NT / 2);
            unsigned a[MT][4], b[2][4];
            load_k(b[0], 0);
#pragma unroll
            for (int step = 0; step < STEPS; ++step) {
                const int kk = step / (NT / 2), np = step % (NT / 2);
                if (step + 1 < STEPS) load_k(b[(step + 1) & 1], step + 1);
                if (np == 0) {
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        if constexpr (Q_IN_REGS) {
#pragma unroll
                            for (int e = 0; e < 4; ++e) a[mt][e] = qf[mt][kk][e];
                        } else {
                            ldmatrix_x4(a[mt], smem_addr(sq + tile_at<D, LD>(warp * MT * 16 + mt * 16 + (lane & 15), kk * 2 + (lane >> 4))));
                        }
                    }
                }
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma_16816<BF16>(s[mt][2 * np], a[mt], b[step & 1]);
                    mma_16816<BF16>(s[mt][2 * np + 1], a[mt], b[step & 1] + 2);
                }
            }
        }

        bias_and_mask<MT, NT>(s, qpos, positions, slope, k0, seq_end, lane);
        online_softmax<MT, NT, DT, SKIP_RESCALE>(s, o, row_max, row_sum, scale_log2);

        // O += P·V: the scores' accumulator layout is the A operand's, 16 keys at a time.
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk) {
            unsigned a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) probabilities_as_a<BF16>(a[mt], s, mt, kk);
#pragma unroll
            for (int dp = 0; dp < DT / 2; ++dp) {
                unsigned b[4];
                ldmatrix_x4_trans(b, smem_addr(vt + tile_at<D, LD>(kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7), dp * 2 + (lane >> 4))));
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma_16816<BF16>(o[mt][2 * dp], a[mt], b);
                    mma_16816<BF16>(o[mt][2 * dp + 1], a[mt], b + 2);
                }
            }
        }
    }

    store_rows<BF16>(o, row_sum, out, out_stride, head_off, q0, row_base, q_rows, lane);
    if constexpr (LSE) store_lse<MT>(row_max, row_sum, lse, head, gridDim.y, q0, row_base, q_rows, lane, scale_log2);
}

}  // namespace

// Training's forward: the same kernel that also writes each row's log-sum-exp, for the
// backward pass (kernels/attention_backward.cu); bf16, the head dims that has. Launched with
// the FLASH_KERNEL line's tile sizes for its head dim (`attention_backward.rs`).
#define FLASH_KERNEL_LSE(NAME, BF16, D, LD, MT, BN, Q_IN_REGS, SKIP)                                   \
    extern "C" __global__ void __launch_bounds__(THREADS) NAME(                                          \
        const half_bits* q, const half_bits* k, const half_bits* v, i64 q_stride, i64 kv_stride,         \
        half_bits* out, i64 out_stride, const i64* offsets, const i64* block_seq, const i64* block_q0,   \
        const float* positions, const float* slopes_log2, float scale_log2, float* lse) {                \
        flash_forward<BF16, D, LD, MT, BN, Q_IN_REGS, SKIP, true>(q, k, v, q_stride, kv_stride, out,     \
                                                                out_stride, offsets, block_seq, block_q0, \
                                                                positions, slopes_log2, scale_log2, lse); \
    }

// One kernel per (type, head dim): FLASH_KERNEL(NAME, BF16, D, LD, MT, BN, Q_IN_REGS, SKIP);
// build.rs reads these lines into the Rust table (src/backend/cuda/kernels.rs), which picks
// the kernel and sizes its shared memory, (BM + 4·BN)·LD 16-bit values; a head dim without a
// line is refused, naming those with one. LD = D (swizzled) at d = 64 and 128, D + 8
// (padded) otherwise (tile_at). Every head dim: 128 query rows a block (two 16-row tiles a
// warp), 64 keys a stage; q in registers at d = 64, read from shared memory at d = 128 (in
// registers it would spill).
// Measured on an H100 (TFLOP/s at N = 64k, each pair from one run): d = 128, one tile a
// warp 249, two tiles with 32 keys a stage 303, two with 64 keys 320; d = 64, skipping the
// rescale by warp vote 278 against 290 without, 128 keys a stage (q in registers or not,
// spilling 60 bytes) 278 against 292. At d = 128 the vote stays: without it the compiler
// spills 60 bytes (with it, none). Row maxima and sums as pairwise trees plus K/V copies by
// pointer steps (one 64-bit address a stage, no per-copy multiply): predicted +3-5%,
// measured +7% at d = 64 and +9-10% at d = 128 (64k: 288 -> 307, 317 -> 344), and the 4-byte
// spill at d = 128 gone; the copies alone gave most of it (304, 341), the trees alone +2%
// at d = 64 and nothing at d = 128. One barrier an iteration instead of two (the next
// stage's copy issued after the barrier, into the stage the last iteration read; on an
// H200, predicted +1-3%): d = 64 +2.4% at 16k and +0.9% at 64k, d = 128 +1.2% and +0.3%.
// Each K fragment read one step ahead of its MMAs (on an H100, two runs of each against
// the last version, interleaved): predicted +1-2%, measured +0.3-1.8% at d = 64 and
// +0.4-1.5% at d = 128; the same for V fragments, or Q fragments one k-slice ahead too,
// gave nothing or lost (Q ahead spills 12 bytes at d = 128).
// d = 80 (ViT-H/14: Virchow, Virchow2) and 96 (NVRTC 13.0, sm_90a): q from shared memory
// (in registers it spills 12 bytes at d = 80, more at 96). The rescale vote, timed on an
// H200 against the kernel without it: d = 96 +2.5-3% (250 registers instead of 255, at the
// cap), kept; d = 80 -5%, left out (236 registers). q in registers as well lost at both.
// Tile-length sequences (a tile encoder's batch: 256 sequences of 197-265 tokens packed into
// one launch; H200, `bench attention --batch 256`, PyTorch's SDPA in the same job): 141.7
// TFLOP/s at 197 tokens × 16 heads × d 64 (PyTorch flash 124.9, cuDNN 172.0), 148.0 at 265 ×
// 24 heads, 139 at 261 × 16 × d 80. Tried there and taken out: skipping the MMAs of 16-key
// groups past a sequence's end on its last block (predicted +15-20% at 197 tokens; measured
// -7% there and -13% at N = 16k-64k, d = 64: the uniform branches cost more than the MMAs they
// skip); one block a whole sequence (7-9 warps, keys and values read once per head): the
// 4-warp register allocation unit holds a 9-warp block to 168 registers (spilling: 9.9
// TFLOP/s), one tile a warp (96 registers) 98; 64-row blocks of one tile a warp 120.
// d = 32 and 48 (small slide encoders) as d = 64: 173 and 216 registers. Not instantiated:
// d = 16 (no encoder has it) and d = 112 (spills 8-40 bytes on sm_90a).
#define FLASH_KERNEL(NAME, BF16, D, LD, MT, BN, Q_IN_REGS, SKIP)                                       \
    extern "C" __global__ void __launch_bounds__(THREADS) NAME(                                          \
        const half_bits* q, const half_bits* k, const half_bits* v, i64 q_stride, i64 kv_stride,         \
        half_bits* out, i64 out_stride, const i64* offsets, const i64* block_seq, const i64* block_q0,   \
        const float* positions, const float* slopes_log2, float scale_log2) {                            \
        flash_forward<BF16, D, LD, MT, BN, Q_IN_REGS, SKIP>(q, k, v, q_stride, kv_stride, out, out_stride, \
                                                          offsets, block_seq, block_q0, positions,       \
                                                          slopes_log2, scale_log2);                      \
    }

FLASH_KERNEL(flash_attn_bf16_d32, true, 32, 40, 2, 64, true, false)
FLASH_KERNEL(flash_attn_bf16_d48, true, 48, 56, 2, 64, true, false)
FLASH_KERNEL(flash_attn_bf16_d64, true, 64, 64, 2, 64, true, false)
FLASH_KERNEL(flash_attn_bf16_d80, true, 80, 88, 2, 64, false, false)
FLASH_KERNEL(flash_attn_bf16_d96, true, 96, 104, 2, 64, false, true)
FLASH_KERNEL(flash_attn_bf16_d128, true, 128, 128, 2, 64, false, true)
FLASH_KERNEL(flash_attn_f16_d32, false, 32, 40, 2, 64, true, false)
FLASH_KERNEL(flash_attn_f16_d48, false, 48, 56, 2, 64, true, false)
FLASH_KERNEL(flash_attn_f16_d64, false, 64, 64, 2, 64, true, false)
FLASH_KERNEL(flash_attn_f16_d80, false, 80, 88, 2, 64, false, false)
FLASH_KERNEL(flash_attn_f16_d96, false, 96, 104, 2, 64, false, true)
FLASH_KERNEL(flash_attn_f16_d128, false, 128, 128, 2, 64, false, true)
FLASH_KERNEL_LSE(flash_attn_lse_bf16_d64, true, 64, 64, 2, 64, true, false)
FLASH_KERNEL_LSE(flash_attn_lse_bf16_d128, true, 128, 128, 2, 64, false, true)
