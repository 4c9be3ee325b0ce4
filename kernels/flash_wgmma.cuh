// The matrix products of attention's forward on wgmma, shared by flash_attn_sm90.cu (tiles
// loaded by cp.async) and flash_attn_sm90_tma.cu (by the TMA): tiles of rows of D 16-bit
// values in shared memory, in 128-byte panels (64 values of each row; panel p of a tile of
// ROWS rows at p · ROWS · 128 bytes), 128-byte swizzled, from 1,024-byte-aligned addresses.
// The scores and the output are in flash_common.cuh's accumulator layout, one 16-row tile a
// warp (a warpgroup's 64 rows).
#pragma once
#include "flash_common.cuh"
#include "hopper.cuh"

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// Where the tiles lie in dynamic shared memory: Q (BM rows), then STAGES stages of K, then
// of V (BN rows each), rows of DP values, from the first 1,024-byte boundary (the swizzle's
// period; launches give 1 KB to spare); `end`, the first byte past them.
struct Tiles {
    unsigned q, k, v, end;
};
template <int BM, int BN, int DP, int STAGES>
__device__ __forceinline__ Tiles tiles(const void* smem) {
    Tiles t;
    t.q = (smem_addr(smem) + 1023u) & ~1023u;
    t.k = t.q + BM * DP * 2;
    t.v = t.k + STAGES * BN * DP * 2;
    t.end = t.v + STAGES * BN * DP * 2;
    return t;
}

// S = Q·Kᵀ over key block `k_tile` (BN keys), issued as one wgmma group: `q_rows_at`, this
// warpgroup's 64 rows in a Q tile of BM rows (8-row groups 1,024 bytes apart in each panel;
// a k-slice of 16 values is 32 bytes into a panel).
template <bool BF16, int D, int BM, int BN>
__device__ __forceinline__ void issue_scores(float (&s)[1][BN / 8][4], unsigned q_rows_at, unsigned k_tile) {
    const unsigned long long a = descriptor(q_rows_at, 16, 1024), b = descriptor(k_tile, 16, 1024);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        const unsigned slice = (kk & 3) * 32;
        wgmma_ss<BF16, BN>(&s[0][0][0], advance(a, (kk >> 2) * (BM * 128) + slice),
                           advance(b, (kk >> 2) * (BN * 128) + slice), kk > 0);
    }
    wgmma_commit();
}

// The probabilities in s as P·V's A operands, 16 keys each. Packed before the wgmma fence
// that precedes the product: registers a wgmma in flight reads must not be written.
template <bool BF16, int BN>
__device__ __forceinline__ void pack_probabilities(unsigned (&a)[BN / 16][4], const float (&s)[1][BN / 8][4]) {
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) probabilities_as_a<BF16>(a[kk], s, 0, kk);
}

// O += P·V over value block `v_tile` (BN keys), issued as one wgmma group, 16 keys at a time:
// V read MN-major (transposed), keys 2,048 bytes (16 rows) apart, its 64-column panels
// BN · 128 bytes apart, 8-key groups 1,024.
template <bool BF16, int D, int BN>
__device__ __forceinline__ void issue_values(float (&o)[1][D / 8][4], const unsigned (&a)[BN / 16][4], unsigned v_tile) {
    const unsigned long long b = descriptor(v_tile, BN * 128, 1024);
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) wgmma_rs<BF16, D>(&o[0][0][0], a[kk], advance(b, kk * 2048));
    wgmma_commit();
}

#endif
