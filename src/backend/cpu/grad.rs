//! [`Gradients`] on the CPU: candle operations in f32, attention's through
//! [`super::attention_grad`]. The reference the GPU's backward operations are checked
//! against (`backend::grad_check`).

use super::attention::Packed;
use super::attention_grad::{attention_backward, attention_with_lse};
use super::{CpuBackend, CpuPositions};
use crate::backend::grad::{AdamWState, AdamWStep, Gradients, LinearGrads, NormGrads};
use crate::backend::BackendError;
use candle_core::{DType, Device, Tensor, D};

fn host(x: &Tensor) -> Result<Vec<f32>, BackendError> {
    Ok(x.flatten_all()?.to_vec1::<f32>()?)
}

impl Gradients for CpuBackend {
    fn master(&self, data: &[f32], rows: usize, cols: usize) -> Result<Tensor, BackendError> {
        Ok(Tensor::from_slice(data, (rows, cols), &Device::Cpu)?)
    }

    fn zeros(&self, rows: usize, cols: usize) -> Result<Tensor, BackendError> {
        Ok(Tensor::zeros((rows, cols), DType::F32, &Device::Cpu)?)
    }

    fn for_compute(&self, master: &Tensor) -> Result<Tensor, BackendError> {
        Ok(master.clone())
    }

    fn linear_backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        bias: bool,
    ) -> Result<LinearGrads<Tensor>, BackendError> {
        Ok(LinearGrads {
            dx: dy.matmul(w)?,
            dw: dy.t()?.matmul(x)?,
            db: bias.then(|| dy.sum_keepdim(0)).transpose()?,
        })
    }

    fn layer_norm_backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        eps: f64,
    ) -> Result<NormGrads<Tensor>, BackendError> {
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let rstd = (centred.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
        let normed = centred.broadcast_mul(&rstd)?;
        let g = dy.broadcast_mul(w)?;
        let dx = (g.broadcast_sub(&g.mean_keepdim(D::Minus1)?)?
            - normed.broadcast_mul(&(&g * &normed)?.mean_keepdim(D::Minus1)?)?)?
        .broadcast_mul(&rstd)?;
        Ok(NormGrads {
            dx,
            dw: (dy * &normed)?.sum_keepdim(0)?,
            db: dy.sum_keepdim(0)?,
        })
    }

    fn gelu_backward(&self, x: &Tensor, dy: &Tensor) -> Result<Tensor, BackendError> {
        // d/dx x·Φ(x) = Φ(x) + x·φ(x).
        let cdf = ((x / std::f64::consts::SQRT_2)?.erf()? + 1.0)? * 0.5;
        let pdf =
            (x.sqr()? * -0.5)?.exp()? * (0.5 * std::f64::consts::FRAC_2_SQRT_PI / std::f64::consts::SQRT_2);
        Ok(((cdf? + (x * pdf?)?)? * dy)?)
    }

    fn attention_saving(
        &self,
        qkv: &Tensor,
        offsets: &[usize],
        heads: usize,
        head_dim: usize,
        positions: Option<&CpuPositions>,
    ) -> Result<(Tensor, Tensor), BackendError> {
        let tokens = qkv.dim(0)?;
        let [q, k, v] = Self::attention_inputs(qkv, heads, head_dim, positions)?;
        let shape = Packed {
            offsets,
            heads,
            head_dim,
        };
        let (out, lse) = attention_with_lse(&q, &k, &v, &shape, Self::alibi(positions))?;
        Ok((
            Tensor::from_vec(out, (tokens, heads * head_dim), &Device::Cpu)?,
            Tensor::from_vec(lse, (tokens, heads), &Device::Cpu)?,
        ))
    }

    fn attention_backward(
        &self,
        qkv: &Tensor,
        out: &Tensor,
        lse: &Tensor,
        dout: &Tensor,
        offsets: &[usize],
        heads: usize,
        head_dim: usize,
        positions: Option<&CpuPositions>,
    ) -> Result<Tensor, BackendError> {
        let tokens = qkv.dim(0)?;
        let [q, k, v] = Self::attention_inputs(qkv, heads, head_dim, positions)?;
        let shape = Packed {
            offsets,
            heads,
            head_dim,
        };
        let [mut dq, mut dk, dv] = attention_backward(
            &q,
            &k,
            &v,
            &host(out)?,
            &host(lse)?,
            &host(dout)?,
            &shape,
            Self::alibi(positions),
        )?;
        // The rotation is orthogonal: its gradient turns back by the same angle.
        if let Some(rope) = positions.and_then(|p| p.rope.as_ref()) {
            rope.apply_inverse(&mut dq, heads);
            rope.apply_inverse(&mut dk, heads);
        }
        let width = heads * head_dim;
        let part = |x: Vec<f32>| Tensor::from_vec(x, (tokens, width), &Device::Cpu);
        Ok(Tensor::cat(&[part(dq)?, part(dk)?, part(dv)?], 1)?)
    }

    fn repeat_row(&self, row: &Tensor, rows: usize, scale: f32) -> Result<Tensor, BackendError> {
        let cols = row.dim(1)?;
        Ok((row.broadcast_as((rows, cols))?.contiguous()? * scale as f64)?)
    }

    fn gather_rows(&self, x: &Tensor, rows: &[usize]) -> Result<Tensor, BackendError> {
        let n = x.dim(0)?;
        if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
            return Err(BackendError::Input(format!("row {bad} of a [{n}, _] tensor")));
        }
        let index: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let index = Tensor::new(index.as_slice(), x.device())?;
        Ok(x.index_select(&index, 0)?)
    }

    fn sum_squares(&self, xs: &[&Tensor]) -> Result<f64, BackendError> {
        xs.iter().try_fold(0.0, |sum, x| {
            Ok(sum + x.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?)
        })
    }

    fn adamw(
        &self,
        state: &AdamWState<Tensor>,
        g: &Tensor,
        s: AdamWStep,
    ) -> Result<AdamWState<Tensor>, BackendError> {
        let g = (g * s.grad_scale)?;
        let m = ((&state.m * s.beta1)? + (&g * (1.0 - s.beta1))?)?;
        let v = ((&state.v * s.beta2)? + (g.sqr()? * (1.0 - s.beta2))?)?;
        let (c1, c2) = (1.0 - s.beta1.powi(s.t), 1.0 - s.beta2.powi(s.t));
        let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + s.eps)?)?;
        let w = ((&state.w * (1.0 - s.lr * s.weight_decay))? - (update * s.lr)?)?;
        Ok(AdamWState { w, m, v })
    }
}
