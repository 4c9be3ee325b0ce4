// Exact softmax attention for Hopper (sm_90a): FlashAttention-2's algorithm (flash_attn.cu)
// with both matrix products on warpgroup MMA (wgmma), which reads its operands straight from
// shared memory and runs asynchronously to the warps that issue it.
//
// A block is two warpgroups (256 threads), each owning 64 query rows (128 a block) of one
// head of one sequence. Q, and K and V in two stages, sit in shared memory in wgmma's
// canonical layout: 128-byte panels (64 16-bit values of each row), 128-byte swizzled
// (16-byte chunk c of row r at chunk c ^ (r % 8) of its 128-byte row), so that a matrix
// descriptor addresses any 8-row group and k-slice; K and V stream through with cp.async,
// one barrier an iteration, as in flash_attn.cu. S = Q·Kᵀ is wgmma m64nBNk16 with both
// operands in shared memory (K-major); the online softmax runs on S in registers
// (flash_common.cuh: the accumulators are in mma.sync's layout, warp w of a warpgroup
// holding its rows 16w..16w + 15); P stays in registers as the A operand of O += P·V, wgmma
// m64nDk16 with V MN-major (transposed) in shared memory.
//
// Two schedules: each block's products and softmax in turn; or pipelined, the softmax of one
// block overlapping the P·V of the block before (FlashAttention-3's intra-warpgroup overlap).
// Not yet here (issue 25): K and V by the tensor memory accelerator, a producer warp and
// register reallocation, two warpgroups' softmax and products ping-ponged.
// Head dims 64 and 128 (whole 128-byte panels); the others go to flash_attn.cu.
//
// The same parameters and layouts as flash_attn.cu's kernels (see there). Compiled for every
// architecture; the body exists for sm_90a only (wgmma is sm_90a's), elsewhere it traps.
#include "flash_wgmma.cuh"

namespace {

constexpr int WARPGROUPS = 2;
constexpr int THREADS = WARPGROUPS * 128;
constexpr int BM = WARPGROUPS * 64;  // query rows a block

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// D: head dim (64 or 128); BN: keys a stage (64 or 128). PIPELINED: the softmax of key
// block j overlaps the tensor cores' P·V of block j − 1 (three K/V stages; see the loop);
// else each block's products and softmax run in turn (two stages).
template <bool BF16, int D, int BN, bool PIPELINED>
__device__ __forceinline__ void flash_forward_sm90(
    const half_bits* __restrict__ q, const half_bits* __restrict__ k, const half_bits* __restrict__ v,
    i64 q_stride, i64 kv_stride, half_bits* __restrict__ out, i64 out_stride, const i64* __restrict__ offsets,
    const i64* __restrict__ block_seq, const i64* __restrict__ block_q0,
    const float* __restrict__ positions, const float* __restrict__ slopes_log2, float scale_log2) {
    static_assert(D == 64 || D == 128, "head dims in whole 128-byte panels");
    constexpr int STAGES = PIPELINED ? 3 : 2;
    constexpr int CH = D / 8;   // 16-byte chunks a row
    constexpr int NT = BN / 8;  // 8-key tiles of the scores
    constexpr int DT = D / 8;   // 8-column tiles of the output
    constexpr unsigned KV_BYTES = BN * D * 2;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const Tiles layout = tiles<BM, BN, D, STAGES>(smem_raw);
    const unsigned sq = layout.q, sk = layout.k, sv = layout.v;

    const int tid = threadIdx.x, group = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
    const int head = blockIdx.y;
    const QueryBlock qb = query_block<BM, D>(offsets, block_seq, block_q0);
    const i64 q0 = qb.q0, seq_start = qb.seq_start, seq_end = qb.seq_end, head_off = qb.head_off;
    const int q_rows = qb.q_rows;

    for (int i = tid; i < BM * CH; i += THREADS) {
        const int r = i / CH, c = i % CH;
        const bool ok = r < q_rows;
        cp_async16(sq + panel_at<BM>(r, c), q + (q0 + (ok ? r : 0)) * q_stride + head_off + c * 8, ok);
    }
    const int blocks = (int)((seq_end - seq_start + BN - 1) / BN);
    // Key block j's K and V into stage j % STAGES, as one cp.async group.
    auto load_kv = [&](int j) {
        const i64 k0 = seq_start + (i64)j * BN;
        const int rows = (int)min((i64)BN, seq_end - k0);
#pragma unroll
        for (int i = tid; i < BN * CH; i += THREADS) {
            const int r = i / CH, c = i % CH;
            const bool ok = r < rows;
            const i64 at = (k0 + (ok ? r : 0)) * kv_stride + head_off + c * 8;
            const unsigned to = (j % STAGES) * KV_BYTES + panel_at<BN>(r, c);
            cp_async16(sk + to, k + at, ok);
            cp_async16(sv + to, v + at, ok);
        }
        cp_async_commit();
    };
    // Past it, every thread's copies so far are visible to wgmma, and every warpgroup is past
    // its waits for the products before.
    auto copies_landed = [] {
        cp_async_wait<0>();
        fence_async_shared();
        __syncthreads();
    };

    // This thread's rows: tile 0, half h → row 64·group + 16·warp + lane/4 + 8h of the block.
    const int row_base = group * 64 + warp * 16 + (lane >> 2);
    float qpos[1][2][2];
    const float slope = query_alibi<1>(qpos, positions, slopes_log2, head, scale_log2, row_base, q_rows, q0);
    float o[1][DT][4], row_max[1][2], row_sum[1][2];
    start_rows(o, row_max, row_sum);

    const unsigned q_rows_at = sq + group * 64 * 128;  // this warpgroup's rows of Q
    float s[1][NT][4];
    unsigned a[BN / 16][4];
    auto scores = [&](int j) { issue_scores<BF16, D, BM, BN>(s, q_rows_at, sk + (j % STAGES) * KV_BYTES); };
    auto values = [&](int j) { issue_values<BF16, D, BN>(o, a, sv + (j % STAGES) * KV_BYTES); };
    auto pack = [&] { pack_probabilities<BF16, BN>(a, s); };
    auto softmax = [&](int j, float (&alpha)[1][2]) {
        bias_and_mask<1, NT>(s, qpos, positions, slope, seq_start + (i64)j * BN, seq_end, lane);
        softmax_scores(s, row_max, row_sum, alpha, scale_log2);
    };

    auto scores_ready = [&] { fence_registers<NT * 4>(&s[0][0][0]); };
    auto output_ready = [&] { fence_registers<DT * 4>(&o[0][0][0]); };
    load_kv(0);
    if constexpr (!PIPELINED) {
        // Stage j is the only copy in flight at the barrier; past it, block j − 1's products
        // (waited for) are over, so its stage takes the next copy.
        for (int j = 0; j < blocks; ++j) {
            copies_landed();
            if (j + 1 < blocks) load_kv(j + 1);
            wgmma_fence();
            scores(j);
            wgmma_wait<0>();
            scores_ready();
            float alpha[1][2];
            softmax(j, alpha);
            rescale_output(o, alpha);
            pack();
            wgmma_fence();
            values(j);
            wgmma_wait<0>();
            output_ready();
        }
    } else {
        // Block 0's scores and softmax first; then for each next block j: its scores and
        // block j − 1's P·V issued together, the scores waited for (wgmma groups complete in
        // order), j's softmax while P·V runs, then P·V waited for before the output is
        // rescaled and j's P packed. Stage j + 1's copy goes into the stage block j − 2 used,
        // whose P·V every warpgroup waited for before the barrier.
        copies_landed();
        if (blocks > 1) load_kv(1);
        wgmma_fence();
        scores(0);
        wgmma_wait<0>();
        scores_ready();
        float alpha[1][2];
        softmax(0, alpha);
        pack();
        for (int j = 1; j < blocks; ++j) {
            copies_landed();
            if (j + 1 < blocks) load_kv(j + 1);
            wgmma_fence();
            scores(j);
            values(j - 1);
            wgmma_wait<1>();
            scores_ready();
            softmax(j, alpha);
            wgmma_wait<0>();
            output_ready();
            rescale_output(o, alpha);
            pack();
        }
        wgmma_fence();
        values(blocks - 1);
        wgmma_wait<0>();
        output_ready();
    }
    store_rows<BF16>(o, row_sum, out, out_stride, head_off, q0, row_base, q_rows, lane);
}

#endif

}  // namespace

// One kernel per (type, head dim, schedule): FLASH_KERNEL_SM90(NAME, BF16, D, BN, PIPELINED);
// build.rs reads these lines into the Rust table as flash_attn.cu's, with BM = 128 query rows
// a block, THREADS threads, shared memory (BM + 2·STAGES·BN)·D 16-bit values (STAGES 3
// pipelined, else 2) and 1 KB for alignment. On a Hopper the backend runs the first schedule
// (the faster at d 128, within 4% at d 64: bench/RESULTS.md); the pipelined one is asked for
// by `bench attention --kernel wgmma-pipelined`.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FLASH_SM90_BODY(BF16, D, BN, PIPELINED)                                                      \
    flash_forward_sm90<BF16, D, BN, PIPELINED>(q, k, v, q_stride, kv_stride, out, out_stride, offsets, \
                                               block_seq, block_q0, positions, slopes_log2, scale_log2);
#else
#define FLASH_SM90_BODY(BF16, D, BN, PIPELINED) __trap();
#endif
#define FLASH_KERNEL_SM90(NAME, BF16, D, BN, PIPELINED)                                                 \
    extern "C" __global__ void __launch_bounds__(THREADS) NAME(                                          \
        const half_bits* q, const half_bits* k, const half_bits* v, i64 q_stride, i64 kv_stride,         \
        half_bits* out, i64 out_stride, const i64* offsets, const i64* block_seq, const i64* block_q0,   \
        const float* positions, const float* slopes_log2, float scale_log2) {                            \
        FLASH_SM90_BODY(BF16, D, BN, PIPELINED)                                                          \
    }

FLASH_KERNEL_SM90(flash_attn_sm90_bf16_d64, true, 64, 64, false)
FLASH_KERNEL_SM90(flash_attn_sm90_bf16_d128, true, 128, 64, false)
FLASH_KERNEL_SM90(flash_attn_sm90_f16_d64, false, 64, 64, false)
FLASH_KERNEL_SM90(flash_attn_sm90_f16_d128, false, 128, 64, false)
FLASH_KERNEL_SM90(flash_attn_sm90_pipelined_bf16_d64, true, 64, 64, true)
FLASH_KERNEL_SM90(flash_attn_sm90_pipelined_bf16_d128, true, 128, 64, true)
FLASH_KERNEL_SM90(flash_attn_sm90_pipelined_f16_d64, false, 64, 64, true)
FLASH_KERNEL_SM90(flash_attn_sm90_pipelined_f16_d128, false, 128, 64, true)
