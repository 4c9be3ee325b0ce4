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
// `lse`, where not null, also takes each query row's log-sum-exp (natural log) for training's
// backward, as flash_attn.cu's FLASH_KERNEL_LSE kernels write it.
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
// PERSISTENT: a block takes tiles (a query block of a head: `query_blocks` × `heads` of
// them, a head's query blocks in a row) from blockIdx.x, gridDim.x apart, one after another
// on the same ring of stages, so the producer loads a tile's K and V while the consumers
// finish the tile before (short sequences: tile-length batches); else the grid is one block
// a tile (query block blockIdx.x of head blockIdx.y).
template <bool BF16, int D, int BN, int STAGES, int C, bool PERSISTENT, int DP = (D + 63) / 64 * 64>
__device__ __forceinline__ void flash_forward_tma(
    const TensorMap& q_map, const TensorMap& k_map, const TensorMap& v_map, half_bits* __restrict__ out,
    i64 out_stride, const i64* __restrict__ offsets, const i64* __restrict__ block_seq,
    const i64* __restrict__ block_q0, const float* __restrict__ positions, const float* __restrict__ slopes_log2,
    float scale_log2, i64 query_blocks, int heads, float* __restrict__ lse) {
    static_assert(D % 16 == 0 && (DP == 64 || DP == 128), "head dims 64 to 128, in 16s");
    static_assert(C == 2 || C == 3, "two or three consumer warpgroups");
    constexpr int BM = C * 64;  // query rows a block
    constexpr int PANELS = DP / 64;
    constexpr int NT = BN / 8;   // 8-key tiles of the scores
    constexpr int DT = DP / 8;   // 8-column tiles of the output
    constexpr unsigned Q_BYTES = BM * DP * 2, KV_BYTES = BN * DP * 2;
    // The tiles, then the mbarriers: Q's arrival, each stage's K and V arrivals, each stage's
    // release, and (persistent) Q's release.
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const Tiles layout = tiles<BM, BN, DP, STAGES>(smem_raw);
    const unsigned sq = layout.q, sk = layout.k, sv = layout.v;
    const unsigned q_full = layout.end;
    auto k_full = [&](int stage) { return q_full + 8 * (1 + stage); };
    auto v_full = [&](int stage) { return q_full + 8 * (1 + STAGES + stage); };
    auto released = [&](int stage) { return q_full + 8 * (1 + 2 * STAGES + stage); };
    const unsigned q_empty = q_full + 8 * (1 + 3 * STAGES);

    // This block's tiles: (query block, head) pairs, the first and the step between them.
    const i64 tiles_all = PERSISTENT ? query_blocks * heads : 1;
    const i64 first_tile = PERSISTENT ? (i64)blockIdx.x : 0, tile_step = PERSISTENT ? (i64)gridDim.x : 1;
    auto tile_at = [&](i64 t, int& head) {
        if constexpr (PERSISTENT) {
            head = (int)(t / query_blocks);
            return query_block<BM, D>(offsets, block_seq, block_q0, t % query_blocks, head);
        } else {
            head = blockIdx.y;
            return query_block<BM, D>(offsets, block_seq, block_q0);
        }
    };
    auto key_blocks = [&](const QueryBlock& qb) { return (int)((qb.seq_end - qb.seq_start + BN - 1) / BN); };

    const int tid = threadIdx.x, warpgroup = uniform_warpgroup();
    if (tid == 0) {
        mbarrier_init(q_full, 1);
        for (int stage = 0; stage < STAGES; ++stage) {
            mbarrier_init(k_full(stage), 1);
            mbarrier_init(v_full(stage), 1);
            mbarrier_init(released(stage), C * 128);
        }
        if constexpr (PERSISTENT) mbarrier_init(q_empty, C * 128);
        mbarrier_init_fence();
    }
    __syncthreads();

    if (warpgroup == 0) {
        // The producer: each tile's Q (once the consumers are done with the tile before's),
        // then its key blocks, block n (counted over the block's tiles) into stage
        // n % STAGES once every consumer has released that stage's block n − STAGES (phase
        // parity: the stage's round).
        registers_down<C == 2 ? 40 : 24>();
        if (tid == 0) {
            int n = 0, round = 0;
            for (i64 t = first_tile; t < tiles_all; t += tile_step, ++round) {
                int head;
                const QueryBlock qb = tile_at(t, head);
                if (PERSISTENT && round > 0) mbarrier_wait(q_empty, (round - 1) & 1);
                mbarrier_expect_bytes(q_full, Q_BYTES);
#pragma unroll
                for (int p = 0; p < PANELS; ++p)
                    tma_load(sq + p * BM * 128, q_map, 64 * p, head, (int)qb.q0, q_full);
                const int blocks = key_blocks(qb);
                for (int j = 0; j < blocks; ++j, ++n) {
                    const int stage = n % STAGES;
                    if (n >= STAGES) mbarrier_wait(released(stage), ((n / STAGES) + 1) & 1);
                    const int row = (int)(qb.seq_start + (i64)j * BN);
                    const unsigned at = stage * KV_BYTES;
                    mbarrier_expect_bytes(k_full(stage), KV_BYTES);
#pragma unroll
                    for (int p = 0; p < PANELS; ++p)
                        tma_load(sk + at + p * BN * 128, k_map, 64 * p, head, row, k_full(stage));
                    mbarrier_expect_bytes(v_full(stage), KV_BYTES);
#pragma unroll
                    for (int p = 0; p < PANELS; ++p)
                        tma_load(sv + at + p * BN * 128, v_map, 64 * p, head, row, v_full(stage));
                }
            }
        }
        return;
    }

    registers_up<C == 2 ? 232 : 160>();
    const int group = warpgroup - 1, warp = (tid >> 5) & 3, lane = tid & 31;
    // This thread's rows: half h → row 64·group + 16·warp + lane/4 + 8h of the block.
    const int row_base = group * 64 + warp * 16 + (lane >> 2);
    const unsigned q_rows_at = sq + group * 64 * 128;
    // Turns: consumer 0 goes first (the last one passes to it before starting); each passes
    // the turn on after issuing. The last consumer's last pass has no turn of consumer 0's
    // left to take it: one-tile blocks leave it out; persistent ones let consumer 0 take it
    // at the end (their turn count is not known ahead).
    const int next = group + 1 == C ? 0 : group + 1;
    if (next == 0) pass_turn(next);
    int n0 = 0, round = 0;  // the tile's first key block, counted over the block's tiles
    // Each tile's place (block table and offsets: a chain of dependent global loads) is read
    // one tile ahead, while the tile before computes.
    int head_next = 0;
    QueryBlock qb_next = first_tile < tiles_all ? tile_at(first_tile, head_next) : QueryBlock{};
    for (i64 t = first_tile; t < tiles_all; t += tile_step, ++round) {
        const int head = head_next;
        const QueryBlock qb = qb_next;
        if (PERSISTENT && t + tile_step < tiles_all) qb_next = tile_at(t + tile_step, head_next);
        const int blocks = key_blocks(qb);
        float qpos[1][2][2];
        const float slope =
            query_alibi<1>(qpos, positions, slopes_log2, head, scale_log2, row_base, qb.q_rows, qb.q0);
        float o[1][DT][4], row_max[1][2], row_sum[1][2];
        start_rows(o, row_max, row_sum);
        float s[1][NT][4];
        unsigned a[BN / 16][4];
        auto stage_of = [&](int j) { return (n0 + j) % STAGES; };
        auto parity_of = [&](int j) { return ((n0 + j) / STAGES) & 1; };
        auto scores = [&](int j) { issue_scores<BF16, DP, BM, BN>(s, q_rows_at, sk + stage_of(j) * KV_BYTES); };
        auto values = [&](int j) { issue_values<BF16, DP, BN>(o, a, sv + stage_of(j) * KV_BYTES); };
        auto softmax = [&](int j, float (&alpha)[1][2]) {
            fence_registers<NT * 4>(&s[0][0][0]);
            bias_and_mask<1, NT>(s, qpos, positions, slope, qb.seq_start + (i64)j * BN, qb.seq_end, lane);
            softmax_scores(s, row_max, row_sum, alpha, scale_log2);
        };
        auto keys_landed = [&](int j) { mbarrier_wait(k_full(stage_of(j)), parity_of(j)); };
        auto values_landed = [&](int j) { mbarrier_wait(v_full(stage_of(j)), parity_of(j)); };
        int turns_left = blocks + 1;
        auto take_turn = [&] { wait_turn(group); };
        auto end_turn = [&] {
            if (PERSISTENT || --turns_left > 0 || next != 0) pass_turn(next);
        };
        // Persistent: the tile's last scores are in, so Q may take the next tile's.
        auto q_done = [&] {
            if constexpr (PERSISTENT) mbarrier_arrive(q_empty);
        };

        mbarrier_wait(q_full, round & 1);
        float alpha[1][2];
        keys_landed(0);
        take_turn();
        wgmma_fence();
        scores(0);
        end_turn();
        wgmma_wait<0>();
        if (blocks == 1) q_done();
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
            if (j + 1 == blocks) q_done();
            softmax(j, alpha);
            wgmma_wait<0>();  // block j − 1's P·V: its stage is free
            fence_registers<DT * 4>(&o[0][0][0]);
            mbarrier_arrive(released(stage_of(j - 1)));
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
        // Persistent: the last block's stage goes back to the ring for the next tiles.
        if constexpr (PERSISTENT) mbarrier_arrive(released(stage_of(blocks - 1)));
        // The head's D columns (the padding's are zeros).
        store_rows<BF16, 1, DT, D / 8>(o, row_sum, out, out_stride, qb.head_off, qb.q0, row_base, qb.q_rows, lane);
        if (lse != nullptr) store_lse<1>(row_max, row_sum, lse, head, heads, qb.q0, row_base, qb.q_rows, lane, scale_log2);
        n0 += blocks;
    }
    if (PERSISTENT && group == 0) wait_turn(group);
}

#endif

}  // namespace

// One kernel per (type, head dim, layout): FLASH_KERNEL_SM90_TMA(NAME, BF16, D, BN, STAGES,
// C, PERSISTENT); build.rs reads these lines into the Rust table with BM = 64·C query rows a
// block, 128·(C + 1) threads, shared memory (BM + 2·STAGES·BN)·DP 16-bit values, 1 KB for
// alignment and the mbarriers.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FLASH_SM90_TMA_BODY(BF16, D, BN, STAGES, C, PERSISTENT)                                             \
    flash_forward_tma<BF16, D, BN, STAGES, C, PERSISTENT>(q_map, k_map, v_map, out, out_stride, offsets,      \
                                                          block_seq, block_q0, positions, slopes_log2,       \
                                                          scale_log2, query_blocks, heads, lse);
#else
#define FLASH_SM90_TMA_BODY(BF16, D, BN, STAGES, C, PERSISTENT) __trap();
#endif
#define FLASH_KERNEL_SM90_TMA(NAME, BF16, D, BN, STAGES, C, PERSISTENT)                                      \
    extern "C" __global__ void __launch_bounds__(128 * (C + 1), 1) NAME(                                     \
        const __grid_constant__ TensorMap q_map, const __grid_constant__ TensorMap k_map,                    \
        const __grid_constant__ TensorMap v_map, half_bits* out, i64 out_stride, const i64* offsets,         \
        const i64* block_seq, const i64* block_q0, const float* positions, const float* slopes_log2,         \
        float scale_log2, i64 query_blocks, int heads, float* lse) {                                         \
        FLASH_SM90_TMA_BODY(BF16, D, BN, STAGES, C, PERSISTENT)                                              \
    }

FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_bf16_d64, true, 64, 128, 3, 2, false)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_bf16_d128, true, 128, 128, 3, 2, false)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_f16_d64, false, 64, 128, 3, 2, false)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_f16_d128, false, 128, 128, 3, 2, false)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_bf16_d80, true, 80, 128, 3, 2, false)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_bf16_d96, true, 96, 128, 3, 2, false)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_f16_d80, false, 80, 128, 3, 2, false)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_f16_d96, false, 96, 128, 3, 2, false)
// At d 64 three consumers (192 query rows a block) where the launch has blocks enough for
// every SM many times over: 10% faster from 64k tokens, slower where few blocks leave SMs
// idle in the last wave (bench/RESULTS.md; the host picks: attention.rs).
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_c3_bf16_d64, true, 64, 128, 3, 3, false)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_c3_f16_d64, false, 64, 128, 3, 3, false)
// Tile-length batches (stage 1): persistent blocks, one an SM, at head dims 64 and 128.
// Not yet measured: chosen only when asked for (`bench attention --kernel
// wgmma-tma-persistent`, `selftest`).
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_persistent_bf16_d64, true, 64, 128, 3, 2, true)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_persistent_bf16_d128, true, 128, 128, 3, 2, true)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_persistent_f16_d64, false, 64, 128, 3, 2, true)
FLASH_KERNEL_SM90_TMA(flash_attn_sm90_tma_persistent_f16_d128, false, 128, 128, 3, 2, true)
