// Training's operations beyond the forward's (src/backend/cuda/grad.rs): the backward
// passes of layer norm and GELU, column sums (a bias's gradient), a row repeated (a mean's
// backward), a squared norm, and AdamW on f32 master weights. Gradients and optimiser state
// are f32; the layer inputs they read are f32 too (the backend widens bf16 activations
// first). Row-major [rows, cols]; grid-stride loops with 64-bit indices.
#include "common.cuh"

// Sums over the block (every thread gets the total; `shared` 32 floats).
__device__ __forceinline__ float block_total(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    const int warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads();
    if ((threadIdx.x & 31) == 0) shared[warp] = v;
    __syncthreads();
    float total = 0.f;
    for (int i = 0; i < warps; ++i) total += shared[i];
    return total;
}

// Layer norm's backward, one warp a row: with x̂ = (x − mean)·rstd and g = dy·w,
//   dx = rstd · (g − mean(g) − x̂ · mean(g·x̂)),
// and each block's partial column sums of dy·x̂ (dw) and dy (db) gathered in shared memory
// (2·cols floats), then added to `dw` and `db` (zeroed by the caller) once a block.
extern "C" __global__ void layer_norm_backward(const float* x, const half_bits* w, const float* dy, float* dx,
                                               float* dw, float* db, i64 rows, int cols, float eps) {
    extern __shared__ float partial[];  // dw then db, cols each
    for (int c = threadIdx.x; c < 2 * cols; c += blockDim.x) partial[c] = 0.f;
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const i64 warps = (i64)gridDim.x * (blockDim.x >> 5);
    for (i64 r = blockIdx.x * (i64)(blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
        const float* xr = x + r * cols;
        const float* gr = dy + r * cols;
        float sum = 0.f;
        for (int c = lane; c < cols; c += 32) sum += xr[c];
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffff, sum, o);
        const float mean = sum / cols;
        float sq = 0.f;
        for (int c = lane; c < cols; c += 32) sq += (xr[c] - mean) * (xr[c] - mean);
        for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffff, sq, o);
        const float rstd = rsqrtf(sq / cols + eps);
        float g_sum = 0.f, gx_sum = 0.f;
        for (int c = lane; c < cols; c += 32) {
            const float xh = (xr[c] - mean) * rstd, g = gr[c] * bf16_to_f32(w[c]);
            g_sum += g;
            gx_sum += g * xh;
            atomicAdd(&partial[c], gr[c] * xh);
            atomicAdd(&partial[cols + c], gr[c]);
        }
        for (int o = 16; o > 0; o >>= 1) {
            g_sum += __shfl_xor_sync(0xffffffff, g_sum, o);
            gx_sum += __shfl_xor_sync(0xffffffff, gx_sum, o);
        }
        const float g_mean = g_sum / cols, gx_mean = gx_sum / cols;
        for (int c = lane; c < cols; c += 32) {
            const float xh = (xr[c] - mean) * rstd, g = gr[c] * bf16_to_f32(w[c]);
            dx[r * cols + c] = rstd * (g - g_mean - xh * gx_mean);
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        atomicAdd(&dw[c], partial[c]);
        atomicAdd(&db[c], partial[cols + c]);
    }
}

// d/dx of x·Φ(x) (exact GELU) times dy: Φ(x) + x·φ(x).
extern "C" __global__ void gelu_backward(const float* x, const float* dy, float* dx, i64 n) {
    GRID_STRIDE(i, n) {
        const float v = x[i];
        const float cdf = 0.5f * (1.f + erff(v * 0.70710678118654752f));
        const float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}

// Each column's sum over the rows into `out` (zeroed by the caller): each block sums a
// share of the rows, one thread a column, and adds its sums once.
extern "C" __global__ void column_sums(const float* x, float* out, i64 rows, int cols) {
    const i64 per_block = (rows + gridDim.x - 1) / gridDim.x;
    const i64 first = blockIdx.x * per_block, last = min(rows, first + per_block);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float sum = 0.f;
        for (i64 r = first; r < last; ++r) sum += x[r * cols + c];
        if (first < last) atomicAdd(&out[c], sum);
    }
}

// out [rows, cols] = row [cols] in every row, times scale.
extern "C" __global__ void repeat_row(const float* row, float* out, i64 rows, int cols, float scale) {
    GRID_STRIDE(i, rows * cols) { out[i] = row[i % cols] * scale; }
}

// out [n, cols]: row i is x's row rows[i] (a training crop's tokens, from a slide's features
// kept on the device).
extern "C" __global__ void gather_rows(const half_bits* x, const int* rows, half_bits* out, i64 n, int cols) {
    GRID_STRIDE(i, n * cols) { out[i] = x[(i64)rows[i / cols] * cols + i % cols]; }
}

// Σ x² into `out` (zeroed by the caller), a block's share added once.
extern "C" __global__ void sum_squares(const float* x, float* out, i64 n) {
    __shared__ float shared[32];
    float sum = 0.f;
    GRID_STRIDE(i, n) { sum += x[i] * x[i]; }
    sum = block_total(sum, shared);
    if (threadIdx.x == 0) atomicAdd(out, sum);
}

// One AdamW step, decoupled weight decay: with g = grad · grad_scale,
//   m' = β1·m + (1 − β1)·g,  v' = β2·v + (1 − β2)·g²,
//   w' = w·(1 − lr·decay) − lr · (m'/c1) / (sqrt(v'/c2) + eps),  c1, c2 the bias corrections.
extern "C" __global__ void adamw(const float* w, const float* grad, const float* m, const float* v, float* w_out,
                                 float* m_out, float* v_out, i64 n, float lr, float beta1, float beta2, float eps,
                                 float decay, float c1, float c2, float grad_scale) {
    GRID_STRIDE(i, n) {
        const float g = grad[i] * grad_scale;
        const float mi = beta1 * m[i] + (1.f - beta1) * g;
        const float vi = beta2 * v[i] + (1.f - beta2) * g * g;
        m_out[i] = mi;
        v_out[i] = vi;
        w_out[i] = w[i] * (1.f - lr * decay) - lr * (mi / c1) / (sqrtf(vi / c2) + eps);
    }
}
