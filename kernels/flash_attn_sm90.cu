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
#include "flash_common.cuh"

namespace {

constexpr int WARPGROUPS = 2;
constexpr int THREADS = WARPGROUPS * 128;
constexpr int BM = WARPGROUPS * 64;  // query rows a block

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// Byte offset of 16-byte chunk `chunk` of row `row` in a tile of ROWS rows: 128-byte panels
// of ROWS rows each, swizzled within each 8-row, 1,024-byte atom.
template <int ROWS>
__device__ __forceinline__ unsigned panel_at(int row, int chunk) {
    return (chunk >> 3) * (ROWS * 128) + row * 128 + (((chunk & 7) ^ (row & 7)) << 4);
}

// A shared-memory matrix descriptor: start address, leading- and stride-dimension byte
// offsets (each in 16-byte units), 128-byte swizzle. The start lies in a 1,024-byte-aligned
// atom or a 32-byte step into one (a k-slice), so the base offset is 0.
__device__ __forceinline__ unsigned long long descriptor(unsigned addr, unsigned leading, unsigned stride) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | ((unsigned long long)(leading >> 4) << 16) |
           ((unsigned long long)(stride >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Until at most N of this warpgroup's committed wgmma groups are pending.
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// The compiler sees a wgmma's accumulators written when it is issued, not when it is waited
// for: without this (after each wait) it may move their reads above the wait. An empty asm
// that "changes" each register pins them there, as CUTLASS's warpgroup_fence_operand does.
template <int N>
__device__ __forceinline__ void fence_registers(float* r) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

// This thread's cp.async writes to shared memory made visible to wgmma (the async proxy).
__device__ __forceinline__ void fence_async_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// D[64×64] (+)= A·Bᵀ, A and B K-major in shared memory (descriptors): D's 32 values of
// this thread, accumulated into unless `scale_d` is 0.
#define WGMMA_SS_N64(TYPE)                                                                        \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                  \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n" \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])                                                                          \
                 : "l"(a), "l"(b), "r"(scale_d))

// D[64×128] (+)= A·Bᵀ, A and B K-major in shared memory (descriptors): D's 64 values of
// this thread, accumulated into unless `scale_d` is 0.
#define WGMMA_SS_N128(TYPE)                                                                        \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                  \
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n" \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])                                                                          \
                 : "l"(a), "l"(b), "r"(scale_d))

// D[64×64] += A·B, A from registers (4 packed pairs a thread, mma.sync's A layout per warp),
// B MN-major in shared memory (imm-trans-b 1).
#define WGMMA_RS_N64(TYPE)                                                                        \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                  \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n" \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])                                                                          \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(1))

// D[64×128] += A·B, A from registers (4 packed pairs a thread, mma.sync's A layout per warp),
// B MN-major in shared memory (imm-trans-b 1).
#define WGMMA_RS_N128(TYPE)                                                                        \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                  \
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n" \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])                                                                          \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(1))


template <bool BF16, int N>
__device__ __forceinline__ void wgmma_ss(float* d, unsigned long long a, unsigned long long b, int scale_d) {
    static_assert(N == 64 || N == 128, "scores of 64 or 128 keys");
    if constexpr (N == 64) {
        if constexpr (BF16) WGMMA_SS_N64("bf16"); else WGMMA_SS_N64("f16");
    } else {
        if constexpr (BF16) WGMMA_SS_N128("bf16"); else WGMMA_SS_N128("f16");
    }
}

template <bool BF16, int N>
__device__ __forceinline__ void wgmma_rs(float* d, const unsigned (&a)[4], unsigned long long b) {
    static_assert(N == 64 || N == 128, "head dims 64 or 128");
    if constexpr (N == 64) {
        if constexpr (BF16) WGMMA_RS_N64("bf16"); else WGMMA_RS_N64("f16");
    } else {
        if constexpr (BF16) WGMMA_RS_N128("bf16"); else WGMMA_RS_N128("f16");
    }
}

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
    constexpr unsigned Q_BYTES = BM * D * 2, KV_BYTES = BN * D * 2;
    // The swizzle pattern repeats every 1,024 bytes, from 1,024-byte-aligned addresses: the
    // tiles start at the first such address (the launch gives 1 KB to spare).
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const unsigned sq = (smem_addr(smem_raw) + 1023u) & ~1023u;  // BM × D
    const unsigned sk = sq + Q_BYTES;                              // STAGES × BN × D
    const unsigned sv = sk + STAGES * KV_BYTES;                    // STAGES × BN × D

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
    float slope = 0.f;  // per unscaled score: slope · √d
    float qpos[1][2][2];
    if (positions) {
        slope = slopes_log2[head] / scale_log2;
        load_query_positions<1>(qpos, positions, row_base, q_rows, q0);
    }
    float o[1][DT][4];
    float row_max[1][2] = {{NEG_INF, NEG_INF}}, row_sum[1][2] = {{0.f, 0.f}};
#pragma unroll
    for (int dt = 0; dt < DT; ++dt)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[0][dt][e] = 0.f;

    // S = Q·Kᵀ of key block j, issued: this warpgroup's 64 rows of Q (8-row groups 1,024
    // bytes apart in each panel), a k-slice of 16 being 32 bytes into a panel.
    const unsigned q_rows_at = sq + group * 64 * 128;
    float s[1][NT][4];
    auto issue_scores = [&](int j) {
        const unsigned kt = sk + (j % STAGES) * KV_BYTES;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            const unsigned slice = (kk & 3) * 32;
            const unsigned long long a = descriptor(q_rows_at + (kk >> 2) * (BM * 128) + slice, 16, 1024);
            const unsigned long long b = descriptor(kt + (kk >> 2) * (BN * 128) + slice, 16, 1024);
            wgmma_ss<BF16, BN>(&s[0][0][0], a, b, kk > 0);
        }
        wgmma_commit();
    };
    // O += P·V of key block j, issued, 16 keys at a time: V MN-major, keys 2,048 bytes (16
    // rows) apart, its 64-column panels BN · 128 bytes apart, 8-key groups 1,024. P is packed
    // before the fence (a wgmma in flight's registers must not be written).
    unsigned a[BN / 16][4];
    auto pack_probabilities = [&] {
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk) probabilities_as_a<BF16>(a[kk], s, 0, kk);
    };
    auto issue_values = [&](int j) {
        const unsigned vt = sv + (j % STAGES) * KV_BYTES;
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk)
            wgmma_rs<BF16, D>(&o[0][0][0], a[kk], descriptor(vt + kk * 2048, BN * 128, 1024));
        wgmma_commit();
    };
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
            issue_scores(j);
            wgmma_wait<0>();
            scores_ready();
            float alpha[1][2];
            softmax(j, alpha);
            rescale_output(o, alpha);
            pack_probabilities();
            wgmma_fence();
            issue_values(j);
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
        issue_scores(0);
        wgmma_wait<0>();
        scores_ready();
        float alpha[1][2];
        softmax(0, alpha);
        pack_probabilities();
        for (int j = 1; j < blocks; ++j) {
            copies_landed();
            if (j + 1 < blocks) load_kv(j + 1);
            wgmma_fence();
            issue_scores(j);
            issue_values(j - 1);
            wgmma_wait<1>();
            scores_ready();
            softmax(j, alpha);
            wgmma_wait<0>();
            output_ready();
            rescale_output(o, alpha);
            pack_probabilities();
        }
        wgmma_fence();
        issue_values(blocks - 1);
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
