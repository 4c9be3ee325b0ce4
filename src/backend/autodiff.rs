//! The backend the tile encoder trains on (stage 1, and the one-image baseline; stage 2 has
//! its own backward pass, `train::backprop`): the CPU backend's candle operations, with attention (and
//! 2D RoPE) written as candle operations too, so that candle's autograd differentiates a
//! whole forward pass, and weights made trainable variables. Attention here materialises
//! each sequence's scores, which suits the short sequences training feeds it (tiles of a few
//! dozen tokens, crops of the slide's token grid); inference keeps the tiled kernel.

use super::cpu::CpuBackend;
use super::{Backend, PositionSpec};
use crate::backend::BackendError;
use candle_core::{DType, Device, Tensor, Var, D};

#[derive(Clone, Copy, Debug, Default)]
pub struct AutodiffBackend {
    cpu: CpuBackend,
}

/// Per token, the cosine and sine of each rotated pair's angle (`[tokens, 1, head_dim/2]`),
/// following [`super::cpu::rope`]'s definition.
pub struct AutodiffPositions {
    rope: Option<(Tensor, Tensor)>,
}

impl AutodiffBackend {
    /// Rotates `x` (`[tokens, heads, head_dim]`) pair by pair.
    fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor, BackendError> {
        let (t, h, d) = x.dims3()?;
        let pairs = x.reshape((t, h, d / 2, 2))?;
        let (a, b) = (
            pairs.narrow(3, 0, 1)?.squeeze(3)?,
            pairs.narrow(3, 1, 1)?.squeeze(3)?,
        );
        let ra = (a.broadcast_mul(cos)? - b.broadcast_mul(sin)?)?;
        let rb = (a.broadcast_mul(sin)? + b.broadcast_mul(cos)?)?;
        Ok(Tensor::stack(&[ra, rb], 3)?.reshape((t, h, d))?)
    }

    /// Softmax attention of `seqs` sequences of `len` tokens each: q, k, v `[seqs·len, H, d]`.
    fn attend(q: &Tensor, k: &Tensor, v: &Tensor, seqs: usize, len: usize) -> Result<Tensor, BackendError> {
        let (_, h, d) = q.dims3()?;
        let heads_first = |x: &Tensor| -> Result<Tensor, BackendError> {
            Ok(x.reshape((seqs, len, h, d))?.transpose(1, 2)?.contiguous()?)
        };
        let (q, k, v) = (heads_first(q)?, heads_first(k)?, heads_first(v)?);
        let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?;
        // Softmax is shift-invariant: the maximum needs no gradient.
        let shifted = scores.broadcast_sub(&scores.max_keepdim(D::Minus1)?.detach())?;
        let e = shifted.exp()?;
        let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        Ok(p.matmul(&v)?.transpose(1, 2)?.reshape((seqs * len, h * d))?)
    }
}

impl Backend for AutodiffBackend {
    type Tensor = Tensor;
    type Positions = AutodiffPositions;
    type Pixels = Vec<u8>;

    fn describe(&self) -> String {
        format!("cpu, differentiable ({} threads)", rayon::current_num_threads())
    }

    fn upload(&self, data: &[f32], rows: usize, cols: usize) -> Result<Tensor, BackendError> {
        self.cpu.upload(data, rows, cols)
    }

    /// Weights become variables, which the optimiser finds again with `Var::from_tensor`.
    fn upload_weight(&self, data: &[f32], rows: usize, cols: usize) -> Result<Tensor, BackendError> {
        Ok(Var::from_slice(data, (rows, cols), &Device::Cpu)?
            .as_tensor()
            .clone())
    }

    fn download(&self, x: &Tensor) -> Result<Vec<f32>, BackendError> {
        self.cpu.download(x)
    }

    fn shape(&self, x: &Tensor) -> (usize, usize) {
        self.cpu.shape(x)
    }

    fn linear(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor, BackendError> {
        self.cpu.linear(x, w, b)
    }

    fn layer_norm(&self, x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor, BackendError> {
        self.cpu.layer_norm(x, w, b, eps)
    }

    fn gelu(&self, x: &Tensor) -> Result<Tensor, BackendError> {
        self.cpu.gelu(x)
    }

    fn swiglu(&self, x: &Tensor) -> Result<Tensor, BackendError> {
        self.cpu.swiglu(x)
    }

    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, BackendError> {
        self.cpu.add(a, b)
    }

    fn scale_columns(&self, x: &Tensor, gamma: &Tensor) -> Result<Tensor, BackendError> {
        self.cpu.scale_columns(x, gamma)
    }

    fn concat_rows(&self, parts: &[Tensor]) -> Result<Tensor, BackendError> {
        self.cpu.concat_rows(parts)
    }

    fn concat_cols(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, BackendError> {
        self.cpu.concat_cols(a, b)
    }

    fn upload_pixels(&self, rgb: &[u8]) -> Result<Vec<u8>, BackendError> {
        Ok(rgb.to_vec())
    }

    fn pixel_bytes(&self, pixels: &Vec<u8>) -> usize {
        pixels.len()
    }

    fn download_pixels(&self, pixels: &Vec<u8>) -> Result<Vec<u8>, BackendError> {
        Ok(pixels.clone())
    }

    fn patchify(
        &self,
        rgb: &Vec<u8>,
        batch: usize,
        side: usize,
        patch: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Tensor, BackendError> {
        self.cpu.patchify(rgb, batch, side, patch, mean, std)
    }

    fn prepend_and_position(
        &self,
        patches: &Tensor,
        batch: usize,
        prefix: Option<&Tensor>,
        position: &Tensor,
    ) -> Result<Tensor, BackendError> {
        self.cpu.prepend_and_position(patches, batch, prefix, position)
    }

    fn mean_rows(&self, x: &Tensor, seqs: usize, start: usize, count: usize) -> Result<Tensor, BackendError> {
        self.cpu.mean_rows(x, seqs, start, count)
    }

    fn group_tokens(
        &self,
        x: &Tensor,
        seqs: usize,
        prefix: usize,
        side: usize,
        k: usize,
    ) -> Result<Tensor, BackendError> {
        self.cpu.group_tokens(x, seqs, prefix, side, k)
    }

    fn prepare_positions(
        &self,
        spec: PositionSpec,
        _heads: usize,
        head_dim: usize,
    ) -> Result<AutodiffPositions, BackendError> {
        if spec.alibi {
            return Err(BackendError::Unsupported(
                "training with the ALiBi bias is not supported (2D RoPE is)".into(),
            ));
        }
        let rope = match spec.rope_base {
            None => None,
            Some(base) => {
                let quarter = head_dim / 4;
                let (mut cos, mut sin) = (Vec::new(), Vec::new());
                for p in spec.positions {
                    for &coordinate in p {
                        for i in 0..quarter {
                            let angle = coordinate as f64 * base.powf(-(i as f64) / quarter as f64);
                            cos.push(angle.cos() as f32);
                            sin.push(angle.sin() as f32);
                        }
                    }
                }
                let shape = (spec.positions.len(), 1, head_dim / 2);
                Some((
                    Tensor::from_vec(cos, shape, &Device::Cpu)?,
                    Tensor::from_vec(sin, shape, &Device::Cpu)?,
                ))
            }
        };
        Ok(AutodiffPositions { rope })
    }

    fn attention(
        &self,
        qkv: &Tensor,
        offsets: &[usize],
        heads: usize,
        head_dim: usize,
        positions: Option<&AutodiffPositions>,
    ) -> Result<Tensor, BackendError> {
        let tokens = qkv.dim(0)?;
        let qkv = qkv.reshape((tokens, 3, heads, head_dim))?;
        let part = |i: usize| -> Result<Tensor, BackendError> { Ok(qkv.narrow(1, i, 1)?.squeeze(1)?) };
        let (mut q, mut k, v) = (part(0)?, part(1)?, part(2)?);
        if let Some((cos, sin)) = positions.and_then(|p| p.rope.as_ref()) {
            q = Self::rotate(&q, cos, sin)?;
            k = Self::rotate(&k, cos, sin)?;
        }
        let lengths: Vec<usize> = offsets.windows(2).map(|w| w[1] - w[0]).collect();
        if lengths.iter().all(|&l| l == lengths[0]) && !lengths.is_empty() {
            return Self::attend(&q, &k, &v, lengths.len(), lengths[0]);
        }
        let mut outs = Vec::new();
        for (w, &len) in offsets.windows(2).zip(&lengths) {
            if len == 0 {
                continue;
            }
            let cut = |x: &Tensor| x.narrow(0, w[0], len);
            outs.push(Self::attend(&cut(&q)?, &cut(&k)?, &cut(&v)?, 1, len)?);
        }
        if outs.is_empty() {
            return Ok(Tensor::zeros((0, heads * head_dim), DType::F32, &Device::Cpu)?);
        }
        Ok(Tensor::cat(&outs, 0)?)
    }
}
