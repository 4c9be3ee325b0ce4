//! [`Gradients`] on the GPU: the backward GEMMs through cuBLAS (bf16 in, f32 out and
//! accumulation), the other backward operations and AdamW as kernels/training.cu's kernels,
//! attention's through kernels/attention_backward.cu. Weight gradients, optimiser state and
//! master weights are f32; the forward computes with bf16 copies of the weights.

use super::attention_backward::{attention_backward, attention_with_lse};
use super::{device_err, CudaBackend, CudaPositions, CudaTensor, Storage};
use crate::backend::grad::{AdamWState, AdamWStep, Gradients, LinearGrads, NormGrads};
use crate::backend::{Backend, BackendError};
use cudarc::cublas::sys as blas;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};
use half::bf16;
use std::ffi::c_void;
use std::sync::Arc;

impl CudaBackend {
    /// `x`'s values in f32: its own buffer, or a widened copy of a bf16 one.
    pub(super) fn f32_data(&self, x: &CudaTensor) -> Result<Arc<CudaSlice<f32>>, BackendError> {
        match &x.data {
            Storage::F32(d) => Ok(d.clone()),
            Storage::Bf16(d) => {
                let n = x.rows * x.cols;
                let mut out = self.alloc::<f32>(n)?;
                let n64 = n as i64;
                launch!(self, "to_f32", Self::elementwise(n), &**d, &mut out, &n64)?;
                Ok(Arc::new(out))
            }
        }
    }

    fn zeroed(&self, n: usize) -> Result<CudaSlice<f32>, BackendError> {
        self.inner.stream.alloc_zeros::<f32>(n.max(1)).map_err(device_err)
    }

    /// Column-major `c [m, n] = op(a) · op(b)` (cuBLAS's terms), bf16 `a` and `b`, f32 `c`.
    #[allow(clippy::too_many_arguments)]
    fn gemm_f32(
        &self,
        transpose: (bool, bool),
        (m, n, k): (usize, usize, usize),
        a: &CudaSlice<bf16>,
        lda: usize,
        b: &CudaSlice<bf16>,
        ldb: usize,
        c: &mut CudaSlice<f32>,
    ) -> Result<(), BackendError> {
        let blas_handle = self.blas()?;
        let int =
            |v: usize| i32::try_from(v).map_err(|_| BackendError::Device(format!("a GEMM dimension of {v}")));
        let op = |t: bool| match t {
            true => blas::cublasOperation_t::CUBLAS_OP_T,
            false => blas::cublasOperation_t::CUBLAS_OP_N,
        };
        let stream = &self.inner.stream;
        let (alpha, beta) = (1f32, 0f32);
        let bf = blas::cudaDataType_t::CUDA_R_16BF;
        let (a_ptr, _) = a.device_ptr(stream);
        let (b_ptr, _) = b.device_ptr(stream);
        let (c_ptr, _) = c.device_ptr_mut(stream);
        stream.context().bind_to_thread().map_err(device_err)?;
        // SAFETY: the buffers hold the shapes given (the callers' checks), on the handle's
        // stream, which is the backend's.
        unsafe {
            cudarc::cublas::result::gemm_ex(
                *blas_handle.handle(),
                op(transpose.0),
                op(transpose.1),
                int(m)?,
                int(n)?,
                int(k)?,
                (&alpha as *const f32).cast(),
                a_ptr as *const c_void,
                bf,
                int(lda)?,
                b_ptr as *const c_void,
                bf,
                int(ldb)?,
                (&beta as *const f32).cast(),
                c_ptr as *mut c_void,
                blas::cudaDataType_t::CUDA_R_32F,
                int(m)?,
                blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| BackendError::Device(format!("cuBLAS GEMM: {e:?}")))
    }

    /// Each column's sum over the rows of `x` (`[1, cols]`, f32).
    fn column_sums(&self, x: &CudaTensor) -> Result<CudaTensor, BackendError> {
        let data = self.f32_data(x)?;
        let mut out = self.zeroed(x.cols)?;
        let (rows, cols) = (x.rows as i64, x.cols as i32);
        let cfg = LaunchConfig {
            grid_dim: (x.rows.div_ceil(256).clamp(1, 1024) as u32, 1, 1),
            block_dim: (x.cols.clamp(32, 1024) as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, "column_sums", cfg, &*data, &mut out, &rows, &cols)?;
        Ok(self.tensor_f32(out, 1, x.cols))
    }
}

fn same_shape(what: &str, a: &CudaTensor, b: &CudaTensor) -> Result<(), BackendError> {
    if (a.rows, a.cols) != (b.rows, b.cols) {
        return Err(BackendError::Input(format!(
            "{what} of [{}, {}] and [{}, {}]",
            a.rows, a.cols, b.rows, b.cols
        )));
    }
    Ok(())
}

impl Gradients for CudaBackend {
    fn master(&self, data: &[f32], rows: usize, cols: usize) -> Result<CudaTensor, BackendError> {
        assert_eq!(data.len(), rows * cols, "master of [{rows}, {cols}]");
        Ok(self.tensor_f32(self.upload_raw(data)?, rows, cols))
    }

    fn zeros(&self, rows: usize, cols: usize) -> Result<CudaTensor, BackendError> {
        Ok(self.tensor_f32(self.zeroed(rows * cols)?, rows, cols))
    }

    fn for_compute(&self, master: &CudaTensor) -> Result<CudaTensor, BackendError> {
        Ok(CudaTensor {
            data: Storage::Bf16(self.bf16_data(master)?),
            rows: master.rows,
            cols: master.cols,
        })
    }

    fn linear_backward(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        dy: &CudaTensor,
        bias: bool,
    ) -> Result<LinearGrads<CudaTensor>, BackendError> {
        let (rows, inner, out) = (x.rows, x.cols, w.rows);
        if w.cols != inner || (dy.rows, dy.cols) != (rows, out) {
            return Err(BackendError::Input(format!(
                "linear backward: x [{rows}, {inner}], w [{}, {}], dy [{}, {}]",
                w.rows, w.cols, dy.rows, dy.cols
            )));
        }
        let _span = self.span("linear backward", 4.0 * (rows * inner * out) as f64);
        let (xb, wb, dyb) = (self.bf16_data(x)?, self.bf16_data(w)?, self.bf16_data(dy)?);
        // Row-major matrices are their transposes in cuBLAS's column-major terms.
        // dxᵀ [inner, rows] = wᵀ [inner, out] · dyᵀ [out, rows].
        let mut dx = self.alloc::<f32>(rows * inner)?;
        self.gemm_f32((false, false), (inner, rows, out), &wb, inner, &dyb, out, &mut dx)?;
        // dwᵀ [inner, out] = xᵀ [inner, rows] · dy [rows, out].
        let mut dw = self.alloc::<f32>(out * inner)?;
        self.gemm_f32((false, true), (inner, out, rows), &xb, inner, &dyb, out, &mut dw)?;
        Ok(LinearGrads {
            dx: self.tensor_f32(dx, rows, inner),
            dw: self.tensor_f32(dw, out, inner),
            db: bias.then(|| self.column_sums(dy)).transpose()?,
        })
    }

    fn layer_norm_backward(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        dy: &CudaTensor,
        eps: f64,
    ) -> Result<NormGrads<CudaTensor>, BackendError> {
        same_shape("layer norm backward", x, dy)?;
        let _span = self.span("layer norm backward", 0.0);
        let (rows, cols) = (x.rows, x.cols);
        let (xf, dyf, wb) = (self.f32_data(x)?, self.f32_data(dy)?, self.bf16_data(w)?);
        let mut dx = self.alloc::<f32>(rows * cols)?;
        let (mut dw, mut db) = (self.zeroed(cols)?, self.zeroed(cols)?);
        let cfg = LaunchConfig {
            grid_dim: (
                rows.div_ceil(8).clamp(1, 4 * self.inner.multiprocessors) as u32,
                1,
                1,
            ),
            block_dim: (256, 1, 1),
            shared_mem_bytes: (2 * cols * 4) as u32,
        };
        if 2 * cols * 4 > 48 << 10 {
            return Err(BackendError::Device(format!(
                "layer norm backward of {cols} columns"
            )));
        }
        let (r, c, e) = (rows as i64, cols as i32, eps as f32);
        launch!(
            self,
            "layer_norm_backward",
            cfg,
            &*xf,
            &*wb,
            &*dyf,
            &mut dx,
            &mut dw,
            &mut db,
            &r,
            &c,
            &e
        )?;
        Ok(NormGrads {
            dx: self.tensor_f32(dx, rows, cols),
            dw: self.tensor_f32(dw, 1, cols),
            db: self.tensor_f32(db, 1, cols),
        })
    }

    fn gelu_backward(&self, x: &CudaTensor, dy: &CudaTensor) -> Result<CudaTensor, BackendError> {
        same_shape("GELU backward", x, dy)?;
        let _span = self.span("GELU backward", 0.0);
        let n = x.rows * x.cols;
        let (xf, dyf) = (self.f32_data(x)?, self.f32_data(dy)?);
        let mut dx = self.alloc::<f32>(n)?;
        let n64 = n as i64;
        launch!(
            self,
            "gelu_backward",
            Self::elementwise(n),
            &*xf,
            &*dyf,
            &mut dx,
            &n64
        )?;
        Ok(self.tensor_f32(dx, x.rows, x.cols))
    }

    fn attention_saving(
        &self,
        qkv: &CudaTensor,
        offsets: &[usize],
        heads: usize,
        head_dim: usize,
        positions: Option<&CudaPositions>,
    ) -> Result<(CudaTensor, CudaTensor), BackendError> {
        attention_with_lse(self, qkv, offsets, heads, head_dim, positions)
    }

    fn attention_backward(
        &self,
        qkv: &CudaTensor,
        out: &CudaTensor,
        lse: &CudaTensor,
        dout: &CudaTensor,
        offsets: &[usize],
        heads: usize,
        head_dim: usize,
        positions: Option<&CudaPositions>,
    ) -> Result<CudaTensor, BackendError> {
        attention_backward(self, qkv, out, lse, dout, offsets, heads, head_dim, positions)
    }

    fn repeat_row(&self, row: &CudaTensor, rows: usize, scale: f32) -> Result<CudaTensor, BackendError> {
        let _span = self.span("repeat row", 0.0);
        let data = self.f32_data(row)?;
        let cols = row.cols;
        let mut out = self.alloc::<f32>(rows * cols)?;
        let (r, c) = (rows as i64, cols as i32);
        launch!(
            self,
            "repeat_row",
            Self::elementwise(rows * cols),
            &*data,
            &mut out,
            &r,
            &c,
            &scale
        )?;
        Ok(self.tensor_f32(out, rows, cols))
    }

    fn gather_rows(&self, x: &CudaTensor, rows: &[usize]) -> Result<CudaTensor, BackendError> {
        let _span = self.span("gather rows", 0.0);
        if let Some(&bad) = rows.iter().find(|&&r| r >= x.rows || r > i32::MAX as usize) {
            return Err(BackendError::Input(format!(
                "row {bad} of a [{}, {}] tensor",
                x.rows, x.cols
            )));
        }
        let data = self.bf16_data(x)?;
        let index: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
        let index = self
            .inner
            .stream
            .clone_htod(if index.is_empty() { &[0][..] } else { &index })
            .map_err(device_err)?;
        let mut out = self.alloc::<bf16>(rows.len() * x.cols)?;
        let (n, c) = (rows.len() as i64, x.cols as i32);
        launch!(
            self,
            "gather_rows",
            Self::elementwise(rows.len() * x.cols),
            &*data,
            &index,
            &mut out,
            &n,
            &c
        )?;
        Ok(self.tensor(out, rows.len(), x.cols))
    }

    fn feature_budget(&self) -> Option<usize> {
        self.memory().ok().map(|(free, _)| free / 2)
    }

    fn sum_squares(&self, xs: &[&CudaTensor]) -> Result<f64, BackendError> {
        // Every tensor's sum added into one value on the device: one read back, not one a
        // tensor (an optimiser step's gradients are a few dozen).
        let _span = self.span("sum of squares", 0.0);
        let mut out = self.zeroed(1)?;
        for x in xs {
            let data = self.f32_data(x)?;
            let n = x.rows * x.cols;
            let n64 = n as i64;
            let cfg = LaunchConfig {
                grid_dim: (n.div_ceil(256).clamp(1, 1024) as u32, 1, 1),
                ..Self::elementwise(n)
            };
            launch!(self, "sum_squares", cfg, &*data, &mut out, &n64)?;
        }
        Ok(self.download(&self.tensor_f32(out, 1, 1))?[0] as f64)
    }

    fn adamw(
        &self,
        state: &AdamWState<CudaTensor>,
        g: &CudaTensor,
        s: AdamWStep,
    ) -> Result<AdamWState<CudaTensor>, BackendError> {
        let (w, m, v) = (&state.w, &state.m, &state.v);
        for (what, other) in [("gradient", g), ("first moment", m), ("second moment", v)] {
            same_shape(&format!("AdamW's weight and {what}"), w, other)?;
        }
        let _span = self.span("AdamW", 0.0);
        let n = w.rows * w.cols;
        let (wf, gf, mf, vf) = (
            self.f32_data(w)?,
            self.f32_data(g)?,
            self.f32_data(m)?,
            self.f32_data(v)?,
        );
        let (mut w2, mut m2, mut v2) = (
            self.alloc::<f32>(n)?,
            self.alloc::<f32>(n)?,
            self.alloc::<f32>(n)?,
        );
        let n64 = n as i64;
        let c1 = (1.0 - s.beta1.powi(s.t)) as f32;
        let c2 = (1.0 - s.beta2.powi(s.t)) as f32;
        let (lr, b1, b2, eps, decay, scale) = (
            s.lr as f32,
            s.beta1 as f32,
            s.beta2 as f32,
            s.eps as f32,
            s.weight_decay as f32,
            s.grad_scale as f32,
        );
        launch!(
            self,
            "adamw",
            Self::elementwise(n),
            &*wf,
            &*gf,
            &*mf,
            &*vf,
            &mut w2,
            &mut m2,
            &mut v2,
            &n64,
            &lr,
            &b1,
            &b2,
            &eps,
            &decay,
            &c1,
            &c2,
            &scale
        )?;
        let shape = |d| self.tensor_f32(d, w.rows, w.cols);
        Ok(AdamWState {
            w: shape(w2),
            m: shape(m2),
            v: shape(v2),
        })
    }
}
