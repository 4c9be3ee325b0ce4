//! The CPU backend: candle-core tensors in f32 (its matmul is a blocked, multithreaded
//! GEMM), attention through flashslide's tiled kernel, parallel with rayon.

pub mod attention;
pub mod attention_grad;
mod grad;
pub mod rope;

use super::{Backend, PositionSpec};
use crate::backend::BackendError;
use attention::{alibi_slopes, attention, Alibi2d, Packed};
use candle_core::{Device, Tensor, D};
use rope::Rope;

#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

/// Positions prepared for the CPU kernel.
pub struct CpuPositions {
    rope: Option<Rope>,
    /// Grid positions and per-head slopes when the ALiBi bias is on.
    alibi: Option<(Vec<[f32; 2]>, Vec<f32>)>,
}

impl CpuBackend {
    /// q, k, v of a fused projection (`[tokens, 3·heads·head_dim]`) as host arrays, q and k
    /// rotated where `positions` says, and the ALiBi bias it asks for.
    fn attention_inputs(
        qkv: &Tensor,
        heads: usize,
        head_dim: usize,
        positions: Option<&CpuPositions>,
    ) -> Result<[Vec<f32>; 3], BackendError> {
        let tokens = qkv.dim(0)?;
        let qkv = qkv.reshape((tokens, 3, heads, head_dim))?;
        let part = |i: usize| -> Result<Vec<f32>, BackendError> {
            Ok(qkv.narrow(1, i, 1)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let (mut q, mut k, v) = (part(0)?, part(1)?, part(2)?);
        if let Some(rope) = positions.and_then(|p| p.rope.as_ref()) {
            rope.apply(&mut q, heads);
            rope.apply(&mut k, heads);
        }
        Ok([q, k, v])
    }

    fn alibi(positions: Option<&CpuPositions>) -> Option<Alibi2d<'_>> {
        positions
            .and_then(|p| p.alibi.as_ref())
            .map(|(positions, slopes)| Alibi2d { positions, slopes })
    }
}

impl Backend for CpuBackend {
    type Tensor = Tensor;
    type Positions = CpuPositions;
    type Pixels = Vec<u8>;

    fn describe(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn upload(&self, data: &[f32], rows: usize, cols: usize) -> Result<Tensor, BackendError> {
        Ok(Tensor::from_slice(data, (rows, cols), &Device::Cpu)?)
    }

    fn download(&self, x: &Tensor) -> Result<Vec<f32>, BackendError> {
        Ok(x.flatten_all()?.to_vec1::<f32>()?)
    }

    fn shape(&self, x: &Tensor) -> (usize, usize) {
        let d = x.dims();
        (d[0], d[1])
    }

    fn linear(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor, BackendError> {
        let y = x.matmul(&w.t()?)?;
        Ok(match b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    fn layer_norm(&self, x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor, BackendError> {
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        Ok(centred
            .broadcast_div(&(var + eps)?.sqrt()?)?
            .broadcast_mul(w)?
            .broadcast_add(b)?)
    }

    fn gelu(&self, x: &Tensor) -> Result<Tensor, BackendError> {
        Ok(x.gelu_erf()?)
    }

    fn swiglu(&self, x: &Tensor) -> Result<Tensor, BackendError> {
        let half = x.dim(D::Minus1)? / 2;
        Ok((x.narrow(D::Minus1, 0, half)?.silu()? * x.narrow(D::Minus1, half, half)?)?)
    }

    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, BackendError> {
        Ok((a + b)?)
    }

    fn scale_columns(&self, x: &Tensor, gamma: &Tensor) -> Result<Tensor, BackendError> {
        Ok(x.broadcast_mul(gamma)?)
    }

    fn concat_rows(&self, parts: &[Tensor]) -> Result<Tensor, BackendError> {
        Ok(Tensor::cat(parts, 0)?)
    }

    fn concat_cols(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, BackendError> {
        Ok(Tensor::cat(&[a, b], 1)?)
    }

    fn upload_pixels(&self, rgb: &[u8]) -> Result<Vec<u8>, BackendError> {
        Ok(rgb.to_vec())
    }

    fn download_pixels(&self, pixels: &Vec<u8>) -> Result<Vec<u8>, BackendError> {
        Ok(pixels.clone())
    }

    fn pixel_bytes(&self, pixels: &Vec<u8>) -> usize {
        pixels.len()
    }

    fn patchify(
        &self,
        rgb: &Vec<u8>,
        batch: usize,
        side: usize,
        p: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Tensor, BackendError> {
        let (s, grid) = (side, side / p);
        let n = grid * grid;
        let mut patches = vec![0f32; batch * n * 3 * p * p];
        for (row, chunk) in patches.chunks_exact_mut(3 * p * p).enumerate() {
            let (b, pi) = (row / n, row % n);
            let (py, px) = (pi / grid, pi % grid);
            for ch in 0..3 {
                for ky in 0..p {
                    for kx in 0..p {
                        let (y, x) = (py * p + ky, px * p + kx);
                        let v = rgb[((b * s + y) * s + x) * 3 + ch] as f32 / 255.0;
                        chunk[(ch * p + ky) * p + kx] = (v - mean[ch]) / std[ch];
                    }
                }
            }
        }
        Ok(Tensor::from_vec(patches, (batch * n, 3 * p * p), &Device::Cpu)?)
    }

    fn prepend_and_position(
        &self,
        patches: &Tensor,
        batch: usize,
        prefix: Option<&Tensor>,
        position: &Tensor,
    ) -> Result<Tensor, BackendError> {
        let (rows, d) = patches.dims2()?;
        let mut parts = Vec::new();
        if let Some(prefix) = prefix {
            let p = prefix.dim(0)?;
            parts.push(prefix.unsqueeze(0)?.broadcast_as((batch, p, d))?.contiguous()?);
        }
        parts.push(patches.reshape((batch, rows / batch, d))?);
        let x = Tensor::cat(&parts, 1)?.broadcast_add(&position.unsqueeze(0)?)?;
        let t = x.dim(1)?;
        Ok(x.reshape((batch * t, d))?)
    }

    fn mean_rows(&self, x: &Tensor, seqs: usize, start: usize, count: usize) -> Result<Tensor, BackendError> {
        let (rows, d) = x.dims2()?;
        Ok(x.reshape((seqs, rows / seqs, d))?
            .narrow(1, start, count)?
            .mean(1)?)
    }

    fn group_tokens(
        &self,
        x: &Tensor,
        seqs: usize,
        prefix: usize,
        side: usize,
        k: usize,
    ) -> Result<Tensor, BackendError> {
        let (rows, d) = x.dims2()?;
        let g = side / k;
        Ok(x.reshape((seqs, rows / seqs, d))?
            .narrow(1, prefix, side * side)?
            .reshape((seqs, g, k, g, k, d))?
            .mean(4)?
            .mean(2)?
            .reshape((seqs * g * g, d))?)
    }

    fn prepare_positions(
        &self,
        spec: PositionSpec,
        heads: usize,
        head_dim: usize,
    ) -> Result<CpuPositions, BackendError> {
        Ok(CpuPositions {
            rope: spec
                .rope_base
                .map(|base| Rope::new(spec.positions, head_dim, base)),
            alibi: spec.alibi.then(|| (spec.positions.to_vec(), alibi_slopes(heads))),
        })
    }

    fn attention(
        &self,
        qkv: &Tensor,
        offsets: &[usize],
        heads: usize,
        head_dim: usize,
        positions: Option<&CpuPositions>,
    ) -> Result<Tensor, BackendError> {
        let tokens = qkv.dim(0)?;
        let [q, k, v] = Self::attention_inputs(qkv, heads, head_dim, positions)?;
        let bias = Self::alibi(positions);
        let mut out = vec![0f32; q.len()];
        let shape = Packed {
            offsets,
            heads,
            head_dim,
        };
        attention(&q, &k, &v, &mut out, &shape, bias);
        Ok(Tensor::from_vec(out, (tokens, heads * head_dim), &Device::Cpu)?)
    }
}
