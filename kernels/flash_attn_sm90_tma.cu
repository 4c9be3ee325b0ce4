// Exact softmax attention for Hopper (sm_90a), warp-specialised as FlashAttention-3 is: one
// producer warpgroup whose single thread has the tensor memory accelerator (TMA) copy Q once
// and K and V block by block into a ring of STAGES shared-memory stages, each stage's arrival
// counted in bytes on an mbarrier; and two consumer warpgroups, 64 query rows each, that
// compute S = Q·Kᵀ and O += P·V on wgmma (flash_wgmma.cuh) and the online softmax in
// registers (flash_common.cuh), then hand the stage back on an mbarrier of their own. The
// producer gives up its registers (setmaxnreg: 40 left) so the consumers can hold 232 each.
//
// Two overlaps hide the softmax (its exponentials take as long as the products at d 64):
// within a warpgroup, key block j's scores and block j − 1's P·V are issued together and
// j's softmax runs while P·V does; between the two warpgroups, named barriers hand the
// tensor cores back and forth (ping-pong), so one warpgroup's products run while the other's
// softmax does.
//
// Q, K and V are read through tensor maps (3D: [tokens, heads, D], the tokens' stride; boxes
// of 64 values of one head × the tile's rows, 128-byte swizzled, which is wgmma's canonical
// layout), so loads need no masking: rows past a sequence's end are masked in the scores,
// rows past the tensor's end and values past a head's D read as zeros. So head dims 80 and
// 96 run as 128 (their last panel zero-padded: the products do 60% and 33% more work than
// they need, the softmax, loads and stores none). Tokens must fit in int (the TMA's
// coordinates): the host falls back to flash_attn_sm90.cu beyond 2^31.
//
// The other parameters and layouts are flash_attn.cu's (see there). Compiled for every
// architecture; the body exists for sm_90a only, elsewhere it traps.
#include "flash_wgmma.cuh"

namespace {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// Named barriers 1 to C (0 is __syncthreads): consumer g's turn to issue its products. The
// consumers take turns in a ring: consumer g waits on barrier 1 + g, which the consumer
// before it completes by arriving (256 threads: the two warpgroups). The ids are
// immediates, so the kernel claims these barriers only.
__device__ __forceinline__ void wait_turn(int group) {
    switch (group) {
        case 0: asm volatile("bar.sync 1, 256;\n" ::: "memory"); break;
        case 1: asm volatile("bar.sync 2, 256;\n" ::: "memory"); break;
        default: asm volatile("bar.sync 3, 256;\n" ::: "memory"); break;
    }
}
__device__ __forceinline__ void pass_turn(int next) {
    switch (next) {
        case 0: asm volatile("bar.arrive 1, 256;\n" ::: "memory"); break;
        case 1: asm volatile("bar.arrive 2, 256;\n" ::: "memory"); break;
        default: asm volatile("bar.arrive 3, 256;\n" ::: "memory"); break;
    }
}

// D: head dim (64, 80, 96 or 128), computed as DP (a whole number of 64-value panels); BN:
// keys a stage; STAGES: K/V stages in the ring; C: consumer warpgroups (2 or 3), 64 query
// rows each. The registers split as FlashAttention-3's: with two consumers 40 for the
// producer and 232 for each consumer, with three 24 and 160 (all 65,536 but 1,024).
template <bool BF16, int D, int BN, int STAGES, int C, int DP = (D + 63) / 64 * 64>
__device__ __forceinline__ void flash_forward_tma(
    const TensorMap& q_map, const TensorMap& k_map, const TensorMap& v_map, half_bits* __restrict__ out,
    i64 out_stride, const i64* __restrict__ offsets, const i64* __restrict__ block_seq,
    const i64* __restrict__ block_q0, const float* __restrict__ positions, const float* __restrict__ slopes_log2,
    float scale_log2) {
    static_assert(D % 16 == 0 && (DP == 64 || DP == 128), "head dims 64 to 128, in 16s");
    static_assert(C == 2 || C == 3, "two or three consumer warpgroups");
    constexpr int BM = C * 64;  // query rows a block
    constexpr int PANELS = DP / 64;
    constexpr int NT = BN / 8;   // 8-key tiles of the scores
    constexpr int DT = DP / 8;   // 8-column tiles of the output
    constexpr unsigned Q_BYTES = BM * DP * 2, KV_BYTES = BN * DP * 2;
    // The tiles, then the mbarriers: Q's, each stage's K and V arrivals, each stage's release.
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const Tiles layout = tiles<BM, BN, DP, STAGES>(smem_raw);
    const unsigned sq = layout.q, sk = layout.k, sv = layout.v;
    const unsigned q_full = layout.end;
    auto k_full = [&](int stage) { return q_full + 8 * (1 + stage); };
    auto v_full = [&](int stage) { return q_full + 8 * (1 + STAGES + stage); };
    auto released = [&](int stage) { return q_full + 8 * (1 + 2 * STAGES + stage); };

    const int tid = threadIdx.x, warpgroup = tid >> 7;
    const QueryBlock qb = query_block<BM, D>(offsets, block_seq, block_q0);
    const int blocks = (int)((qb.seq_end - qb.seq_start + BN - 1) / BN);
    if (tid == 0) {
        mbarrier_init(q_full, 1);
        for (int stage = 0; stage < STAGES; ++stage) {
            mbarrier_init(k_full(stage), 1);
            mbarrier_init(v_full(stage), 1);
            mbarrier_init(released(stage), C * 128);
        }
        mbarrier_init_fence();
    }
    __syncthreads();

    if (warpgroup == 0) {
        // The producer: Q, then key block j into stage j % STAGES once every consumer has
        // released that stage's block j − STAGES (phase parity: the stage's round).
        registers_down<C == 2 ? 40 : 24>();
        if (tid == 0) {
            const int head = blockIdx.y;
            mbarrier_expect_bytes(q_full, Q_BYTES);
#pragma unroll
            for (int p = 0; p < PANELS; ++p) tma_load(sq + p * BM * 128, q_map, 64 * p, head, (int)qb.q0, q_full);
            for (int j = 0; j < blocks; ++j) {
                const int stage = j % STAGES;
                if (j >= STAGES) mbarrier_wait(released(stage), ((j / STAGES) + 1) & 1);
                const int row = (int)(qb.seq_start + (i64)j * BN);
                const unsigned at = stage * KV_BYTES;
                mbarrier_expect_bytes(k_full(stage), KV_BYTES);
#pragma unroll
                for (int p = 0; p < PANELS; ++p) tma_load(sk + at + p * BN * 128, k_map, 64 * p, head, row, k_full(stage));
                mbarrier_expect_bytes(v_full(stage), KV_BYTES);
#pragma unroll
                for (int p = 0; p < PANELS; ++p) tma_load(sv + at + p * BN * 128, v_map, 64 * p, head, row, v_full(stage));
            }
        }
        return;
    }

    registers_up<C == 2 ? 232 : 160>();
    const int group = warpgroup - 1, warp = (tid >> 5) & 3, lane = tid & 31;
    // This thread's rows: half h → row 64·group + 16·warp + lane/4 + 8h of the block.
    const int row_base = group * 64 + warp * 16 + (lane >> 2);
    float slope = 0.f;  // per unscaled score: slope · √d
    float qpos[1][2][2];
    if (positions) {
        slope = slopes_log2[blockIdx.y] / scale_log2;
        load_query_positions<1>(qpos, positions, row_base, qb.q_rows, qb.q0);
    }
    float o[1][DT][4];
    float row_max[1][2] = {{NEG_INF, NEG_INF}}, row_sum[1][2] = {{0.f, 0.f}};
#pragma unroll
    for (int dt = 0; dt < DT; ++dt)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[0][dt][e] = 0.f;
    float s[1][NT][4];
    unsigned a[BN / 16][4];
    const unsigned q_rows_at = sq + group * 64 * 128;
    auto scores = [&](int j) { issue_scores<BF16, DP, BM, BN>(s, q_rows_at, sk + (j % STAGES) * KV_BYTES); };
    auto values = [&](int j) { issue_values<BF16, DP, BN>(o, a, sv + (j % STAGES) * KV_BYTES); };
    auto softmax = [&](int j, float (&alpha)[1][2]) {
        fence_registers<NT * 4>(&s[0][0][0]);
        bias_and_mask<1, NT>(s, qpos, positions, slope, qb.seq_start + (i64)j * BN, qb.seq_end, lane);
        softmax_scores(s, row_max, row_sum, alpha, scale_log2);
    };
    auto keys_landed = [&](int j) { mbarrier_wait(k_full(j % STAGES), (j / STAGES) & 1); };
    auto values_landed = [&](int j) { mbarrier_wait(v_full(j % STAGES), (j / STAGES) & 1); };
    // Turns: consumer 0 goes first (the last one passes to it before starting); each passes
    // the turn on after issuing, but the last not after its last turn (consumer 0 has none
    // left to take it).
    int turns_left = blocks + 1;
    const int next = group + 1 == C ? 0 : group + 1;
    auto take_turn = [&] { wait_turn(group); };
    auto end_turn = [&] {
        if (--turns_left > 0 || next != 0) pass_turn(next);
    };
    if (next == 0) pass_turn(next);

    mbarrier_wait(q_full, 0);
    float alpha[1][2];
    keys_landed(0);
    take_turn();
    wgmma_fence();
    scores(0);
    end_turn();
    wgmma_wait<0>();
    softmax(0, alpha);
    pack_probabilities<BF16, BN>(a, s);
    for (int j = 1; j < blocks; ++j) {
        keys_landed(j);
        values_landed(j - 1);
        take_turn();
        wgmma_fence();
        scores(j);
        values(j - 1);
        end_turn();
        wgmma_wait<1>();  // block j's scores (groups complete in order)
        softmax(j, alpha);
        wgmma_wait<0>();  // block j − 1's P·V: its stage is free
        fence_registers<DT * 4>(&o[0][0][0]);
        mbarrier_arrive(released((j - 1) % STAGES));
        rescale_output(o, alpha);
        pack_probabilities<BF16, BN>(a, s);
    }
    values_landed(blocks - 1);
    take_turn();
    wgmma_fence();
    values(blocks - 1);
    end_turn();
    wgmma_wait<0>();
    fence_registers<DT * 4>(&o[0][0][0]);
    // The head's D columns (the padding's are zeros).
    store_rows<BF16, 1, DT, D / 8>(o, row_sum, out, out_stride, qb.head_off, qb.q0, row_base, qb.q_rows, lane);
}

#endif

}  // namespace

// One kernel per (type, head dim): FLASH_KERNEL_SM90_TMA(NAME, BF16, D, BN, STAGES, C);
// build.rs reads these lines into the Rust table with BM = 64·C query rows a block,
// 128·(C + 1) threads, shared memory (BM + 2·STAGES·BN)·DP 16-bit values, 1 KB for alignment
// and the mbarriers.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FLASH_SM90_TMA_BODY(BF16, D, BN, STAGES, C)                                                          \
    flash_forward_tma<BF16, D, BN, STAGES, C>(q_map, k_map, v_map, out, out_stride, offsets, block_seq, block_q0, \
                                              positions, slopes_log2, scale_log2);
#else
#define FLASH_SM90_TMA_BODY(BF16, D, BN, STAGES, C) __trap();
#endif
#define FLASH_KERNEL_SM90_TMA(NAME, BF16, D, BN, STAGES, C)                                                  \
    extern "C" __global__ void __launch_bounds__(128 * (C + 1), 1) NAME(                                     \
        const __grid_constant__ TensorMap q_map, const __grid_constant__ TensorMap k_map,                    \
        const __grid_constant__ TensorMap v_map, half_bits* out, i64 out_stride, const i64* offsets,         \
        const i64* block_seq, const i64* block_q0, const float* positions, const float* slopes_log2,         \
        float scale_log2) {                                                                                  \
        FLASH_SM90_TMA_BODY(BF16, D, BN, STAGES, C)                                                          \
    }

FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_bf16_d64, true, 64, 128, 3, 2)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_bf16_d128, true, 128, 128, 3, 2)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_f16_d64, false, 64, 128, 3, 2)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_f16_d128, false, 128, 128, 3, 2)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_bf16_d80, true, 80, 128, 3, 2)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_bf16_d96, true, 96, 128, 3, 2)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_f16_d80, false, 80, 128, 3, 2)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_f16_d96, false, 96, 128, 3, 2)
// At d 64 three consumers (192 query rows a block) where the launch has blocks enough for
// every SM many times over: 10% faster from 64k tokens, slower where few blocks leave SMs
// idle in the last wave (bench/RESULTS.md; the host picks: attention.rs).
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_c3_bf16_d64, true, 64, 128, 3, 3)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_c3_f16_d64, false, 64, 128, 3, 3)
