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
