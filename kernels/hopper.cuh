// Hopper's asynchronous hardware (sm_90a), as the attention kernels flash_attn_sm90.cu and
// flash_attn_sm90_tma.cu use it: warpgroup MMA (wgmma) on shared-memory tiles in its
// canonical 128-byte-swizzled layout, with their matrix descriptors and the fences and waits
// of its asynchronous groups; the tensor memory accelerator (TMA) filling such tiles, on
// transaction-counting mbarriers; and register reallocation between warpgroups (setmaxnreg).
#pragma once
#include "common.cuh"

// A TMA descriptor (CUtensorMap, made by cuTensorMapEncodeTiled on the host), passed to a
// kernel by value as a __grid_constant__ parameter: the TMA reads it where it lies.
struct __align__(64) TensorMap {
    unsigned long long words[16];
};

// Byte offset of 16-byte chunk `chunk` of row `row` in a tile of ROWS rows: 128-byte panels
// of ROWS rows each, swizzled within each 8-row, 1,024-byte atom.
template <int ROWS>
__device__ __forceinline__ unsigned panel_at(int row, int chunk) {
    return (chunk >> 3) * (ROWS * 128) + row * 128 + (((chunk & 7) ^ (row & 7)) << 4);
}

// This thread's warpgroup (128 threads), read from lane 0 so that the compiler knows it
// uniform: wgmma descriptors built from it then stay in uniform registers instead of being
// moved there before every product.
__device__ __forceinline__ int uniform_warpgroup() { return __shfl_sync(0xffffffffu, threadIdx.x >> 7, 0); }

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// A shared-memory matrix descriptor: start address, leading- and stride-dimension byte
// offsets (each in 16-byte units), 128-byte swizzle. The start lies in a 1,024-byte-aligned
// atom or a 32-byte step into one (a k-slice), so the base offset is 0.
__device__ __forceinline__ unsigned long long descriptor(unsigned addr, unsigned leading, unsigned stride) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | ((unsigned long long)(leading >> 4) << 16) |
           ((unsigned long long)(stride >> 4) << 32) | (1ull << 62);
}

// The descriptor of the matrix `bytes` (a multiple of 16) past `desc`'s start: its start
// field moved on. A shared-memory address is under 2^18 bytes, so the field never carries
// into the next, and the high word is untouched: one add off a descriptor built once,
// instead of masks and shifts before every product.
__device__ __forceinline__ unsigned long long advance(unsigned long long desc, unsigned bytes) {
    unsigned lo, hi;
    asm("mov.b64 {%0, %1}, %2;" : "=r"(lo), "=r"(hi) : "l"(desc));
    unsigned long long moved;
    asm("mov.b64 %0, {%1, %2};" : "=l"(moved) : "r"(lo + (bytes >> 4)), "r"(hi));
    return moved;
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


// D[64×32] and D[64×64] (+)= A·B, A and B both MN-major in shared memory (imm-trans-a and -b
// 1): D's 16 or 32 values of this thread, accumulated into unless `scale_d` is 0.
#define WGMMA_SS_N32_MN(TYPE)                                                                     \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"                                  \
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32." TYPE "." TYPE " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 1, 1;\n}\n" \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]) \
                 : "l"(a), "l"(b), "r"(scale_d))
#define WGMMA_SS_N64_MN(TYPE)                                                                     \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                  \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 1, 1;\n}\n" \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
                 : "l"(a), "l"(b), "r"(scale_d))

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

template <bool BF16, int N>
__device__ __forceinline__ void wgmma_ss_mn(float* d, unsigned long long a, unsigned long long b, int scale_d) {
    static_assert(N == 32 || N == 64, "32 or 64 columns");
    if constexpr (N == 32) {
        if constexpr (BF16) WGMMA_SS_N32_MN("bf16"); else WGMMA_SS_N32_MN("f16");
    } else {
        if constexpr (BF16) WGMMA_SS_N64_MN("bf16"); else WGMMA_SS_N64_MN("f16");
    }
}

// An mbarrier in shared memory expecting `count` arrivals a phase.
__device__ __forceinline__ void mbarrier_init(unsigned bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// Makes the barriers just initialised visible to the other threads and to the TMA (followed
// by a __syncthreads()).
__device__ __forceinline__ void mbarrier_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
// One arrival that also expects `bytes` more of TMA transfers this phase.
__device__ __forceinline__ void mbarrier_expect_bytes(unsigned bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbarrier_arrive(unsigned bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Until the phase of parity `parity` is complete.
__device__ __forceinline__ void mbarrier_wait(unsigned bar, unsigned parity) {
    asm volatile(
        "{\n.reg .pred done;\nwait:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra wait;\n}\n" ::"r"(bar),
        "r"(parity)
        : "memory");
}

// The box of the 3D tensor `map` at (x, y, z), innermost first, copied by the TMA to shared
// memory at `to` (its swizzle applied), its bytes counted on the mbarrier `bar`. Elements
// past the tensor's bounds read as zeros.
__device__ __forceinline__ void tma_load(unsigned to, const TensorMap& map, int x, int y, int z, unsigned bar) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(to),
        "l"(reinterpret_cast<unsigned long long>(&map)), "r"(x), "r"(y), "r"(z), "r"(bar)
        : "memory");
}

// This warpgroup's registers a thread lowered to N (a producer's: the rest go to the
// consumers) or raised to N; every thread of the warpgroup runs it.
template <int N>
__device__ __forceinline__ void registers_down() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N)); }
template <int N>
__device__ __forceinline__ void registers_up() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N)); }

#endif
