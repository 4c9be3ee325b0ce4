// The encoders' non-matmul operations (row-major [rows, cols]), f32 arithmetic inside.
// Activations are bf16, except the residual stream, which is f32 (`add` and
// `prepend_and_position` write f32): rounding it to bf16 after every block costs about 1%
// relative error over a 12-block ViT. Kernels that read the residual stream come in a bf16
// and an f32 version. One thread per output element unless said otherwise, with
// grid-stride loops and 64-bit indices, so any size fits the grid.
#include "common.cuh"

__device__ __forceinline__ float ld(const half_bits* p, i64 i) { return bf16_to_f32(p[i]); }
__device__ __forceinline__ float ld(const float* p, i64 i) { return p[i]; }

// Four consecutive values (chunk c of a row: elements 4c..4c+3), as f32; the row must be
// 8-byte (bf16) or 16-byte (f32) aligned.
__device__ __forceinline__ void load4(const half_bits* row, i64 c, float* v) {
    const uint2 p = reinterpret_cast<const uint2*>(row)[c];
    v[0] = __uint_as_float(p.x << 16), v[1] = __uint_as_float(p.x & 0xffff0000u);
    v[2] = __uint_as_float(p.y << 16), v[3] = __uint_as_float(p.y & 0xffff0000u);
}
__device__ __forceinline__ void load4(const float* row, i64 c, float* v) {
    const float4 p = reinterpret_cast<const float4*>(row)[c];
    v[0] = p.x, v[1] = p.y, v[2] = p.z, v[3] = p.w;
}
__device__ __forceinline__ void store4(half_bits* row, i64 c, const float* v) {
    reinterpret_cast<uint2*>(row)[c] = make_uint2(pack2<true>(v[0], v[1]), pack2<true>(v[2], v[3]));
}
__device__ __forceinline__ void store4(float* row, i64 c, const float* v) {
    reinterpret_cast<float4*>(row)[c] = make_float4(v[0], v[1], v[2], v[3]);
}

__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }

extern "C" __global__ void gelu(const half_bits* x, half_bits* out, i64 n) {
    GRID_STRIDE(i, n) out[i] = f32_to_bf16(gelu_erf(bf16_to_f32(x[i])));
}

// out[r, c] = silu(x[r, c]) · x[r, half + c], x being [rows, 2·half]. Blocks walk rows
// (y, grid-strided) and 4-column chunks (x), so no thread divides a 64-bit index.
extern "C" __global__ void swiglu(const half_bits* x, half_bits* out, i64 rows, int half) {
    const int chunks = half % 4 == 0 ? half / 4 : 0;  // rows 8-byte aligned, else one by one
    for (i64 r = blockIdx.y; r < rows; r += gridDim.y) {
        const half_bits* gate = x + r * 2 * half;
        const half_bits* up = gate + half;
        half_bits* o = out + r * half;
        for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += gridDim.x * blockDim.x) {
            float g[4], u[4];
            load4(gate, c, g);
            load4(up, c, u);
            for (int k = 0; k < 4; ++k) g[k] = g[k] / (1.f + __expf(-g[k])) * u[k];
            store4(o, c, g);
        }
        // Columns past the last whole chunk (half not a multiple of 4).
        for (int c = chunks * 4 + threadIdx.x; c < half && blockIdx.x == 0; c += blockDim.x) {
            const float gv = bf16_to_f32(gate[c]);
            o[c] = f32_to_bf16(gv / (1.f + __expf(-gv)) * bf16_to_f32(up[c]));
        }
    }
}

// out = a + b, in f32 (the residual stream); a and b either type.
template <typename A, typename B>
__device__ void add(const A* a, const B* b, float* out, i64 n) {
    GRID_STRIDE(i, n) out[i] = ld(a, i) + ld(b, i);
}
extern "C" __global__ void add_f32_bf16(const float* a, const half_bits* b, float* out, i64 n) { add(a, b, out, n); }
extern "C" __global__ void add_bf16_bf16(const half_bits* a, const half_bits* b, float* out, i64 n) { add(a, b, out, n); }
extern "C" __global__ void add_f32_f32(const float* a, const float* b, float* out, i64 n) { add(a, b, out, n); }

extern "C" __global__ void to_bf16(const float* x, half_bits* out, i64 n) {
    GRID_STRIDE(i, n) out[i] = f32_to_bf16(x[i]);
}

extern "C" __global__ void to_f32(const half_bits* x, float* out, i64 n) {
    GRID_STRIDE(i, n) out[i] = bf16_to_f32(x[i]);
}

extern "C" __global__ void scale_columns(const half_bits* x, const half_bits* gamma, half_bits* out, i64 rows, int cols) {
    GRID_STRIDE(i, rows * cols) out[i] = f32_to_bf16(bf16_to_f32(x[i]) * bf16_to_f32(gamma[i % cols]));
}

// out[r, :] = a[r, :] then b[r, :]: two matrices side by side (a class token and a mean).
extern "C" __global__ void concat_cols(const half_bits* a, const half_bits* b, half_bits* out, i64 rows, int ca,
                                       int cb) {
    const int c = ca + cb;
    GRID_STRIDE(i, rows * c) {
        const i64 r = i / c;
        const int col = (int)(i % c);
        out[i] = col < ca ? a[r * ca + col] : b[r * cb + col - ca];
    }
}

// Layer norm, one warp per row, of any width: mean and variance in f32 over the row (two
// passes over values the warp reads once into L1); bf16 out. Rows of widths `row_norm`
// takes go there instead.
template <typename T>
__device__ void layer_norm(const T* x, const half_bits* w, const half_bits* b, half_bits* out, i64 rows, int cols,
                           float eps) {
    const int lane = threadIdx.x & 31;
    const i64 warps = (i64)gridDim.x * (blockDim.x >> 5);
    for (i64 r = blockIdx.x * (i64)(blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
        const T* row = x + r * cols;
        float sum = 0.f;
        for (int c = lane; c < cols; c += 32) sum += ld(row, c);
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffff, sum, o);
        const float mean = sum / cols;
        float sq = 0.f;
        for (int c = lane; c < cols; c += 32) {
            const float d = ld(row, c) - mean;
            sq += d * d;
        }
        for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffff, sq, o);
        const float inv = rsqrtf(sq / cols + eps);
        for (int c = lane; c < cols; c += 32)
            out[r * cols + c] = f32_to_bf16((ld(row, c) - mean) * inv * bf16_to_f32(w[c]) + bf16_to_f32(b[c]));
    }
}
extern "C" __global__ void layer_norm_bf16(const half_bits* x, const half_bits* w, const half_bits* b,
                                           half_bits* out, i64 rows, int cols, float eps) {
    layer_norm(x, w, b, out, rows, cols, eps);
}
extern "C" __global__ void layer_norm_f32(const float* x, const half_bits* w, const half_bits* b, half_bits* out,
                                          i64 rows, int cols, float eps) {
    layer_norm(x, w, b, out, rows, cols, eps);
}

// The sum of `v` over the block, in every thread (`shared`: 32 floats; the block a whole
// number of warps).
__device__ __forceinline__ float block_sum(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    const int warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads();  // `shared` may still be read from the last call
    if ((threadIdx.x & 31) == 0) shared[warp] = v;
    __syncthreads();
    float total = 0.f;
    for (int i = 0; i < warps; ++i) total += shared[i];
    return total;
}

// Layer norm, one block a row, each thread 4 columns held in registers: cols a multiple of
// 4, at most 4 · 1024, the block cols / 4 threads rounded up to whole warps (the launchers
// see to it). A warp a row held the row in 64 registers a thread and so kept only a quarter
// of an H200's warps resident, too few loads in flight to stream the rows (2.1 TB/s). With
// ADD, a pre-norm block's residual add comes first in the same pass: sum = x + y · gamma
// (gamma, layer scale, when `has_gamma`), written in f32 (the residual stream); normed =
// layer_norm(sum) · w + b in bf16. Without ADD, y, gamma and sum are not touched.
template <typename R, bool ADD>
__device__ void row_norm(const R* x, const half_bits* y, const half_bits* gamma, int has_gamma,
                         const half_bits* w, const half_bits* b, float* sum, half_bits* normed, i64 rows, int cols,
                         float eps) {
    __shared__ float shared[32];
    const int c = threadIdx.x;
    const bool mine = c < cols / 4;
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        float v[4] = {0.f, 0.f, 0.f, 0.f};
        if (mine) {
            load4(x + r * cols, c, v);
            if (ADD) {
                float add[4], g[4] = {1.f, 1.f, 1.f, 1.f};
                load4(y + r * cols, c, add);
                if (has_gamma) load4(gamma, c, g);
                for (int k = 0; k < 4; ++k) v[k] += add[k] * g[k];
                store4(sum + r * cols, c, v);
            }
        }
        const float mean = block_sum(v[0] + v[1] + v[2] + v[3], shared) / cols;
        float sq = 0.f;
        if (mine)
            for (int k = 0; k < 4; ++k) sq += (v[k] - mean) * (v[k] - mean);
        const float inv = rsqrtf(block_sum(sq, shared) / cols + eps);
        if (mine) {
            float wv[4], bv[4];
            load4(w, c, wv);
            load4(b, c, bv);
            for (int k = 0; k < 4; ++k) v[k] = (v[k] - mean) * inv * wv[k] + bv[k];
            store4(normed + r * cols, c, v);
        }
    }
}
extern "C" __global__ void add_layer_norm_f32(const float* residual, const half_bits* y, const half_bits* gamma,
                                              int has_gamma, const half_bits* w, const half_bits* b, float* sum,
                                              half_bits* normed, i64 rows, int cols, float eps) {
    row_norm<float, true>(residual, y, gamma, has_gamma, w, b, sum, normed, rows, cols, eps);
}
extern "C" __global__ void add_layer_norm_bf16(const half_bits* residual, const half_bits* y,
                                               const half_bits* gamma, int has_gamma, const half_bits* w,
                                               const half_bits* b, float* sum, half_bits* normed, i64 rows,
                                               int cols, float eps) {
    row_norm<half_bits, true>(residual, y, gamma, has_gamma, w, b, sum, normed, rows, cols, eps);
}
extern "C" __global__ void layer_norm_rows_f32(const float* x, const half_bits* w, const half_bits* b,
                                               half_bits* out, i64 rows, int cols, float eps) {
    row_norm<float, false>(x, nullptr, nullptr, 0, w, b, nullptr, out, rows, cols, eps);
}
extern "C" __global__ void layer_norm_rows_bf16(const half_bits* x, const half_bits* w, const half_bits* b,
                                                half_bits* out, i64 rows, int cols, float eps) {
    row_norm<half_bits, false>(x, nullptr, nullptr, 0, w, b, nullptr, out, rows, cols, eps);
}

// Layer norm, a warp a row held in registers, GROUPS chunks of 128 columns a warp at most:
// cols a multiple of 128 (every ViT width from 384 to 1,536). A block a row (`row_norm`)
// kept at most 8 rows' loads in flight an SM, and between them its two block-wide sums
// left the memory idle: ViT-L/16's norms streamed at 2.3 TB/s. Here each warp's loads of a
// row are all issued before its first sum, and 24 to 48 warps an SM (as the registers of
// 12 to 4 chunks allow) keep as many rows in flight.
template <typename T, int GROUPS>
__device__ void warp_norm(const T* x, const half_bits* w, const half_bits* b, half_bits* out, i64 rows, int cols,
                          float eps) {
    const int lane = threadIdx.x & 31, groups = cols >> 7;
    const i64 step = (i64)gridDim.x * (blockDim.x >> 5);
    for (i64 r = blockIdx.x * (i64)(blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += step) {
        float v[GROUPS][4];
#pragma unroll
        for (int g = 0; g < GROUPS; ++g)
            if (g < groups) load4(x + r * cols, g * 32 + lane, v[g]);
        float sum = 0.f;
#pragma unroll
        for (int g = 0; g < GROUPS; ++g)
            if (g < groups) sum += (v[g][0] + v[g][1]) + (v[g][2] + v[g][3]);
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffff, sum, o);
        const float mean = sum / cols;
        float sq = 0.f;
#pragma unroll
        for (int g = 0; g < GROUPS; ++g)
            if (g < groups)
                for (int k = 0; k < 4; ++k) sq += (v[g][k] - mean) * (v[g][k] - mean);
        for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffff, sq, o);
        const float inv = rsqrtf(sq / cols + eps);
#pragma unroll
        for (int g = 0; g < GROUPS; ++g)
            if (g < groups) {
                float wv[4], bv[4];
                load4(w, g * 32 + lane, wv);
                load4(b, g * 32 + lane, bv);
                for (int k = 0; k < 4; ++k) v[g][k] = (v[g][k] - mean) * inv * wv[k] + bv[k];
                store4(out + r * cols, g * 32 + lane, v[g]);
            }
    }
}
extern "C" __global__ void __launch_bounds__(256) layer_norm_warp4_f32(const float* x, const half_bits* w,
    const half_bits* b, half_bits* out, i64 rows, int cols, float eps) {
    warp_norm<float, 4>(x, w, b, out, rows, cols, eps);
}
extern "C" __global__ void __launch_bounds__(256) layer_norm_warp4_bf16(const half_bits* x, const half_bits* w,
    const half_bits* b, half_bits* out, i64 rows, int cols, float eps) {
    warp_norm<half_bits, 4>(x, w, b, out, rows, cols, eps);
}
extern "C" __global__ void __launch_bounds__(256) layer_norm_warp8_f32(const float* x, const half_bits* w,
    const half_bits* b, half_bits* out, i64 rows, int cols, float eps) {
    warp_norm<float, 8>(x, w, b, out, rows, cols, eps);
}
extern "C" __global__ void __launch_bounds__(256) layer_norm_warp8_bf16(const half_bits* x, const half_bits* w,
    const half_bits* b, half_bits* out, i64 rows, int cols, float eps) {
    warp_norm<half_bits, 8>(x, w, b, out, rows, cols, eps);
}
extern "C" __global__ void __launch_bounds__(256) layer_norm_warp12_f32(const float* x, const half_bits* w,
    const half_bits* b, half_bits* out, i64 rows, int cols, float eps) {
    warp_norm<float, 12>(x, w, b, out, rows, cols, eps);
}
extern "C" __global__ void __launch_bounds__(256) layer_norm_warp12_bf16(const half_bits* x, const half_bits* w,
    const half_bits* b, half_bits* out, i64 rows, int cols, float eps) {
    warp_norm<half_bits, 12>(x, w, b, out, rows, cols, eps);
}

// Patches of `batch` RGB tiles (side² pixels, bytes): row b·n + patch, column
// (channel·p + ky)·p + kx, normalised (v/255 − mean[c]) / std[c].
extern "C" __global__ void patchify(const unsigned char* rgb, half_bits* out, int batch, int side, int p,
                                    float m0, float m1, float m2, float s0, float s1, float s2) {
    const int grid = side / p, n = grid * grid, width = 3 * p * p;
    GRID_STRIDE(i, (i64)batch * n * width) {
        const i64 row = i / width;
        const int col = (int)(i % width);
        const i64 b = row / n;
        const int patch = (int)(row % n);
        const int ch = col / (p * p), ky = (col / p) % p, kx = col % p;
        const int y = (patch / grid) * p + ky, x = (patch % grid) * p + kx;
        const float v = rgb[((b * side + y) * side + x) * 3 + ch] * (1.f / 255.f);
        const float mean = ch == 0 ? m0 : (ch == 1 ? m1 : m2);
        const float sd = ch == 0 ? s0 : (ch == 1 ? s1 : s2);
        out[i] = f32_to_bf16((v - mean) / sd);
    }
}

// For each of `batch` sequences of n patch rows: `prefix_rows` rows of `prefix` first, then
// the patches; `position` ([prefix_rows + n, d]) added. f32 out: the residual stream.
extern "C" __global__ void prepend_and_position(const half_bits* patches, const half_bits* prefix,
                                                const half_bits* position, float* out, int batch, int n,
                                                int prefix_rows, int d) {
    const int t = prefix_rows + n;
    GRID_STRIDE(i, (i64)batch * t * d) {
        const i64 row = i / d;
        const int col = (int)(i % d), b_tok = (int)(row % t);
        const i64 b = row / t;
        const float v = b_tok < prefix_rows ? bf16_to_f32(prefix[(i64)b_tok * d + col])
                                            : bf16_to_f32(patches[(b * n + b_tok - prefix_rows) * d + col]);
        out[i] = v + bf16_to_f32(position[(i64)b_tok * d + col]);
    }
}

// out[s, c] = mean of x rows start..start + count of sequence s (sequences of seq_len rows).
// Grid: x = sequences, y = 32-column slices of d; 256 threads. A warp's lanes read adjacent
// columns of a row, the 8 warps every 8th row, and the warps' sums are added in shared
// memory (a thread summing a column's every row took 4 ms for a slide's 65,536 × 128).
template <typename T>
__device__ void mean_rows(const T* x, half_bits* out, i64 seq_len, i64 start, i64 count, int d) {
    constexpr int WARPS = 8;
    __shared__ float part[WARPS][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int c = blockIdx.y * 32 + lane;
    const i64 s = blockIdx.x;
    float sum = 0.f;
    if (c < d)
        for (i64 r = warp; r < count; r += WARPS) sum += ld(x, (s * seq_len + start + r) * d + c);
    part[warp][lane] = sum;
    __syncthreads();
    if (warp == 0 && c < d) {
        float total = 0.f;
        for (int w = 0; w < WARPS; ++w) total += part[w][lane];
        out[s * d + c] = f32_to_bf16(total / (float)count);
    }
}
extern "C" __global__ void __launch_bounds__(256) mean_rows_bf16(const half_bits* x, half_bits* out, i64 seq_len,
                                                                 i64 start, i64 count, int d) {
    mean_rows(x, out, seq_len, start, count, d);
}
extern "C" __global__ void __launch_bounds__(256) mean_rows_f32(const float* x, half_bits* out, i64 seq_len,
                                                                i64 start, i64 count, int d) {
    mean_rows(x, out, seq_len, start, count, d);
}

// The mean of each k × k group of a sequence's side × side patch rows (after `prefix`
// rows), groups in raster order: out row (s · g + gi) · g + gj, g = side / k.
template <typename T>
__device__ void group_tokens(const T* x, half_bits* out, int seqs, int seq_len, int prefix, int side, int k, int d) {
    const int g = side / k;
    GRID_STRIDE(i, (i64)seqs * g * g * d) {
        const i64 row = i / d;
        const int c = (int)(i % d), cell = (int)(row % (g * g));
        const i64 s = row / (g * g);
        const int gi = cell / g, gj = cell % g;
        float sum = 0.f;
        for (int py = gi * k; py < (gi + 1) * k; ++py)
            for (int px = gj * k; px < (gj + 1) * k; ++px)
                sum += ld(x, (s * seq_len + prefix + py * side + px) * d + c);
        out[i] = f32_to_bf16(sum / (float)(k * k));
    }
}
extern "C" __global__ void group_tokens_bf16(const half_bits* x, half_bits* out, int seqs, int seq_len, int prefix,
                                             int side, int k, int d) {
    group_tokens(x, out, seqs, seq_len, prefix, side, k, d);
}
extern "C" __global__ void group_tokens_f32(const float* x, half_bits* out, int seqs, int seq_len, int prefix,
                                            int side, int k, int d) {
    group_tokens(x, out, seqs, seq_len, prefix, side, k, d);
}

// 2D rotary embedding of q and k in a fused QKV buffer ([tokens, 3, heads, head_dim]), in
// place: in each head the first half rotates with the token's row, the second with its
// column; pair (2i, 2i+1) of a half turns by direction · coordinate · base^(−i / (head_dim/4))
// (direction −1 turns back: the rotation's inverse, which gradients go through).
extern "C" __global__ void rope_2d(half_bits* qkv, const float* positions, i64 tokens, int heads, int head_dim,
                                   float log2_base, float direction) {
    const int pairs = head_dim / 2, quarter = head_dim / 4;
    GRID_STRIDE(i, tokens * 2 * heads * pairs) {
        const int pair = (int)(i % pairs);
        const i64 rest = i / pairs;
        const int head = (int)(rest % heads);
        const int which = (int)((rest / heads) % 2);  // 0: q, 1: k
        const i64 t = rest / heads / 2;
        const int axis = pair / quarter, f = pair % quarter;
        const float angle = direction * positions[2 * t + axis] * exp2f(-log2_base * (float)f / (float)quarter);
        float sn, cs;
        sincosf(angle, &sn, &cs);
        half_bits* h = qkv + ((t * 3 + which) * heads + head) * (i64)head_dim + 2 * pair;
        const float a = bf16_to_f32(h[0]), b = bf16_to_f32(h[1]);
        h[0] = f32_to_bf16(a * cs - b * sn);
        h[1] = f32_to_bf16(a * sn + b * cs);
    }
}
