//! The layers both encoders are built from, on candle tensors, with attention through the
//! tiled kernel.

use super::ModelError;
use crate::backend::cpu::attention::{attention, Alibi2d, Packed};
use candle_core::{Device, Tensor, D};
use std::collections::HashMap;

/// A rotation applied in place to token-major q or k ([tokens, heads, head_dim]).
pub(crate) type Rotation<'a> = &'a dyn Fn(&mut [f32]);

/// A model's tensors by name, with the layers that read them by prefix.
pub(crate) struct Weights(pub HashMap<String, Tensor>);

impl Weights {
    /// A tensor whose presence was checked when the model was loaded.
    pub fn get(&self, name: &str) -> &Tensor {
        &self.0[name]
    }

    /// The linear layer `prefix` (`prefix.weight`, and `prefix.bias` when present).
    pub fn dense(&self, x: &Tensor, prefix: &str) -> Result<Tensor, ModelError> {
        linear(
            x,
            self.get(&format!("{prefix}.weight")),
            self.0.get(&format!("{prefix}.bias")),
        )
    }

    /// The layer norm `prefix`.
    pub fn norm(&self, x: &Tensor, prefix: &str, eps: f64) -> Result<Tensor, ModelError> {
        layer_norm(
            x,
            self.get(&format!("{prefix}.weight")),
            self.get(&format!("{prefix}.bias")),
            eps,
        )
    }
}

/// x·Wᵀ + b for x [..., in] and W [out, in].
fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor, ModelError> {
    let y = x.broadcast_matmul(&w.t()?)?;
    Ok(match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// Layer norm over the last dimension.
fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor, ModelError> {
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(centred
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(weight)?
        .broadcast_add(bias)?)
}

/// Multi-head attention over packed sequences: `qkv` is [tokens, 3·heads·head_dim] (a fused
/// projection's output), sequence `s` holds tokens `offsets[s]..offsets[s + 1]`; `rotate`,
/// if given, is applied to q and k (token-major [tokens, heads, head_dim]) before the kernel.
/// Returns [tokens, heads·head_dim].
pub(crate) fn packed_attention(
    qkv: &Tensor,
    offsets: &[usize],
    heads: usize,
    head_dim: usize,
    rotate: Option<Rotation>,
    bias: Option<Alibi2d>,
) -> Result<Tensor, ModelError> {
    let tokens = qkv.dim(0)?;
    let qkv = qkv.reshape((tokens, 3, heads, head_dim))?;
    let part = |i: usize| -> Result<Vec<f32>, ModelError> {
        Ok(qkv.narrow(1, i, 1)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let (mut q, mut k, v) = (part(0)?, part(1)?, part(2)?);
    if let Some(rotate) = rotate {
        rotate(&mut q);
        rotate(&mut k);
    }
    let mut out = vec![0f32; q.len()];
    attention(
        &q,
        &k,
        &v,
        &mut out,
        &Packed {
            offsets,
            heads,
            head_dim,
        },
        bias,
    );
    Ok(Tensor::from_vec(out, (tokens, heads * head_dim), &Device::Cpu)?)
}

/// Resizes a `[h, w, channels]` grid to `[out_h, out_w, channels]` as PyTorch's
/// `interpolate(mode="bicubic", antialias=True, align_corners=False)` does (timm resamples
/// position embeddings so): separable, Keys cubic with a = −0.5, its support widened by the
/// scale when shrinking, weights normalised per output pixel.
pub(crate) fn resize_bicubic_antialiased(
    src: &[f32],
    h: usize,
    w: usize,
    channels: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    let horizontal = resize_axis(src, h, w, channels, out_w, true);
    resize_axis(&horizontal, h, out_w, channels, out_h, false)
}

/// Interpolation weights along one axis: for each output index, the first input index and
/// the weights from there.
fn axis_weights(input: usize, output: usize) -> Vec<(usize, Vec<f32>)> {
    let cubic = |x: f64| {
        let a = -0.5;
        let x = x.abs();
        if x < 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * a
        } else {
            0.0
        }
    };
    let scale = input as f64 / output as f64;
    let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
    let inv = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    (0..output)
        .map(|i| {
            let centre = scale * (i as f64 + 0.5);
            let lo = ((centre - support + 0.5) as i64).max(0) as usize;
            let hi = ((centre + support + 0.5) as i64).min(input as i64) as usize;
            let raw: Vec<f64> = (lo..hi).map(|j| cubic((j as f64 - centre + 0.5) * inv)).collect();
            let total: f64 = raw.iter().sum();
            (lo, raw.iter().map(|v| (v / total) as f32).collect())
        })
        .collect()
}

fn resize_axis(src: &[f32], h: usize, w: usize, c: usize, out: usize, horizontal: bool) -> Vec<f32> {
    let (input, weights) = if horizontal {
        (w, axis_weights(w, out))
    } else {
        (h, axis_weights(h, out))
    };
    debug_assert!(input > 0);
    let (oh, ow) = if horizontal { (h, out) } else { (out, w) };
    let mut dst = vec![0f32; oh * ow * c];
    for y in 0..oh {
        for x in 0..ow {
            let (lo, ws) = &weights[if horizontal { x } else { y }];
            let o = &mut dst[(y * ow + x) * c..(y * ow + x + 1) * c];
            for (k, &wt) in ws.iter().enumerate() {
                let (sy, sx) = if horizontal { (y, lo + k) } else { (lo + k, x) };
                let s = &src[(sy * w + sx) * c..(sy * w + sx + 1) * c];
                o.iter_mut().zip(s).for_each(|(a, b)| *a += wt * b);
            }
        }
    }
    dst
}
