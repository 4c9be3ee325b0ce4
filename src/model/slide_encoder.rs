//! Stage 2, the slide encoder: a pre-norm transformer over all tissue tiles of a slide as
//! one sequence (N from 1 to over 10^6), exact softmax attention through the tiled kernel,
//! positions from each token's grid (row, column) by 2D rotary embedding (no lookup table,
//! so any slide size works), optionally a 2D ALiBi bias, and two heads: a tumour logit per
//! token and a slide-level logit.
//!
//! Weights (safetensors, names under `slide.`): `proj_in` (input features → width),
//! `blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`, `token_head`
//! (width → 1) and `slide_head` (width → 1, on the mean of the normalised tokens).

use super::layers::{packed_attention, Weights};
use super::ModelError;
use crate::backend::cpu::attention::{alibi_slopes, Alibi2d};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlideEncoderConfig {
    /// Width of the input features (the tile encoder's width).
    pub input_dim: usize,
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_ratio: f64,
    pub norm_eps: f64,
    /// Base of the rotary frequencies.
    pub rope_base: f64,
    /// Add a 2D ALiBi bias (−slope · grid distance) to the scores.
    pub alibi: bool,
}

impl SlideEncoderConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.heads == 0 || self.width % self.heads != 0 {
            return Err(format!(
                "slide encoder width {} does not split into {} heads",
                self.width, self.heads
            ));
        }
        if (self.width / self.heads) % 4 != 0 {
            return Err("slide encoder head dim must be a multiple of 4 (2D rotary embedding)".into());
        }
        Ok(())
    }

    fn mlp_hidden(&self) -> usize {
        (self.width as f64 * self.mlp_ratio + 1e-6) as usize
    }

    /// Every tensor the configuration needs, with its shape.
    pub fn expected_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (w, h) = (self.width, self.mlp_hidden());
        let mut v = vec![
            ("slide.proj_in.weight".to_string(), vec![w, self.input_dim]),
            ("slide.proj_in.bias".into(), vec![w]),
        ];
        for b in 0..self.depth {
            for (n, s) in [
                ("norm1.weight", vec![w]),
                ("norm1.bias", vec![w]),
                ("attn.qkv.weight", vec![3 * w, w]),
                ("attn.qkv.bias", vec![3 * w]),
                ("attn.proj.weight", vec![w, w]),
                ("attn.proj.bias", vec![w]),
                ("norm2.weight", vec![w]),
                ("norm2.bias", vec![w]),
                ("mlp.fc1.weight", vec![h, w]),
                ("mlp.fc1.bias", vec![h]),
                ("mlp.fc2.weight", vec![w, h]),
                ("mlp.fc2.bias", vec![w]),
            ] {
                v.push((format!("slide.blocks.{b}.{n}"), s));
            }
        }
        for (n, s) in [
            ("slide.norm.weight", vec![w]),
            ("slide.norm.bias", vec![w]),
            ("slide.token_head.weight", vec![1, w]),
            ("slide.token_head.bias", vec![1]),
            ("slide.slide_head.weight", vec![1, w]),
            ("slide.slide_head.bias", vec![1]),
        ] {
            v.push((n.to_string(), s));
        }
        v
    }
}

pub struct SlideEncoder {
    pub config: SlideEncoderConfig,
    weights: Weights,
}

/// The slide encoder's outputs.
pub struct SlideOutput {
    /// One tumour logit per token.
    pub token_logits: Vec<f32>,
    pub slide_logit: f32,
}

impl SlideEncoder {
    /// Takes the weights named in [`SlideEncoderConfig::expected_shapes`], checking shapes.
    pub fn new(
        config: SlideEncoderConfig,
        weights: HashMap<String, Tensor>,
    ) -> Result<SlideEncoder, ModelError> {
        config.validate().map_err(ModelError::Config)?;
        for (name, shape) in config.expected_shapes() {
            match weights.get(&name) {
                None => {
                    return Err(ModelError::Config(format!(
                        "slide encoder tensor {name} is missing"
                    )))
                }
                Some(t) if t.dims() != shape.as_slice() => {
                    return Err(ModelError::Config(format!(
                        "tensor {name} has shape {:?}, expected {shape:?}",
                        t.dims()
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(SlideEncoder {
            config,
            weights: Weights(weights),
        })
    }

    /// Runs the encoder over `features` ([N, input_dim], row by row) at grid `positions`
    /// (row, column), as one sequence.
    pub fn forward(&self, features: &[f32], positions: &[[f32; 2]]) -> Result<SlideOutput, ModelError> {
        let c = &self.config;
        let n = positions.len();
        if n == 0 || features.len() != n * c.input_dim {
            return Err(ModelError::Input(format!(
                "{} features for {n} tokens of {}",
                features.len(),
                c.input_dim
            )));
        }
        let x = Tensor::from_vec(features.to_vec(), (n, c.input_dim), &Device::Cpu)?;
        let mut x = self.weights.dense(&x, "slide.proj_in")?;
        let rope = Rope::new(positions, c.width / c.heads, c.rope_base);
        let slopes = alibi_slopes(c.heads);
        let bias = c.alibi.then_some(Alibi2d {
            positions,
            slopes: &slopes,
        });
        for b in 0..c.depth {
            x = self.block(b, &x, &rope, bias)?;
        }
        let x = self.weights.norm(&x, "slide.norm", c.norm_eps)?;
        let token_logits = self
            .weights
            .dense(&x, "slide.token_head")?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let pooled = x.mean_keepdim(0)?;
        let slide_logit = self
            .weights
            .dense(&pooled, "slide.slide_head")?
            .flatten_all()?
            .to_vec1::<f32>()?[0];
        Ok(SlideOutput {
            token_logits,
            slide_logit,
        })
    }

    fn block(&self, b: usize, x: &Tensor, rope: &Rope, bias: Option<Alibi2d>) -> Result<Tensor, ModelError> {
        let c = &self.config;
        let name = |n: &str| format!("slide.blocks.{b}.{n}");
        let h = self.weights.norm(x, &name("norm1"), c.norm_eps)?;
        let qkv = self.weights.dense(&h, &name("attn.qkv"))?;
        let n = x.dim(0)?;
        let (heads, hd) = (c.heads, c.width / c.heads);
        let rotate = |t: &mut [f32]| rope.apply(t, heads);
        let a = packed_attention(&qkv, &[0, n], heads, hd, Some(&rotate), bias)?;
        let a = self.weights.dense(&a, &name("attn.proj"))?;
        let x = (x + a)?;
        let h = self.weights.norm(&x, &name("norm2"), c.norm_eps)?;
        let h = self.weights.dense(&h, &name("mlp.fc1"))?.gelu_erf()?;
        let m = self.weights.dense(&h, &name("mlp.fc2"))?;
        Ok((x + m)?)
    }
}

/// Stage-2 tokens from stage-1 patch tokens: each tile's `side` × `side` patch tokens
/// (after `prefix` class/register tokens) averaged in `k` × `k` groups, so a tile gives
/// (side/k)² tokens and the heatmap resolves groups rather than tiles. A token's position is
/// its tile's (row, column) times side/k plus its group's place in the tile.
///
/// `tokens` is [tiles, prefix + side², D]; returns features [tiles · (side/k)², D] row by
/// row, and positions.
pub fn group_patch_tokens(
    tokens: &Tensor,
    prefix: usize,
    side: usize,
    k: usize,
    tile_positions: &[[u32; 2]],
) -> Result<(Vec<f32>, Vec<[f32; 2]>), ModelError> {
    let (tiles, t, d) = tokens.dims3()?;
    if k == 0 || side % k != 0 || t != prefix + side * side || tiles != tile_positions.len() {
        return Err(ModelError::Input(format!(
            "cannot group {t} tokens of {tiles} tiles ({prefix} prefix, {side}² patches) in {k} × {k}"
        )));
    }
    let groups = side / k;
    let data = tokens.flatten_all()?.to_vec1::<f32>()?;
    let mut features = vec![0f32; tiles * groups * groups * d];
    let mut positions = Vec::with_capacity(tiles * groups * groups);
    let inv = 1.0 / (k * k) as f32;
    for (tile, pos) in tile_positions.iter().enumerate() {
        for gi in 0..groups {
            for gj in 0..groups {
                let out_row = (tile * groups + gi) * groups + gj;
                let out = &mut features[out_row * d..(out_row + 1) * d];
                for pi in gi * k..(gi + 1) * k {
                    for pj in gj * k..(gj + 1) * k {
                        let at = (tile * t + prefix + pi * side + pj) * d;
                        out.iter_mut()
                            .zip(&data[at..at + d])
                            .for_each(|(o, v)| *o += v * inv);
                    }
                }
                positions.push([
                    (pos[0] as usize * groups + gi) as f32,
                    (pos[1] as usize * groups + gj) as f32,
                ]);
            }
        }
    }
    Ok((features, positions))
}

/// 2D rotary position embedding: the first half of each head's dimensions rotates with the
/// token's row, the second half with its column, pairs (2i, 2i+1) at frequency base^(−4i/d).
/// Scores then depend on positions only through their differences.
struct Rope {
    /// Per token and pair: (cos, sin) for the row half then the column half.
    table: Vec<(f32, f32)>,
    head_dim: usize,
}

impl Rope {
    fn new(positions: &[[f32; 2]], head_dim: usize, base: f64) -> Rope {
        let quarter = head_dim / 4;
        let freqs: Vec<f64> = (0..quarter)
            .map(|i| base.powf(-(i as f64) / quarter as f64))
            .collect();
        let mut table = Vec::with_capacity(positions.len() * 2 * quarter);
        for p in positions {
            for &coordinate in p {
                for f in &freqs {
                    let angle = coordinate as f64 * f;
                    table.push((angle.cos() as f32, angle.sin() as f32));
                }
            }
        }
        Rope { table, head_dim }
    }

    /// Rotates `x` ([N, heads, head_dim]) in place.
    fn apply(&self, x: &mut [f32], heads: usize) {
        let d = self.head_dim;
        let pairs = d / 2;
        for (t, token) in x.chunks_exact_mut(heads * d).enumerate() {
            let rot = &self.table[t * pairs..(t + 1) * pairs];
            for head in token.chunks_exact_mut(d) {
                for (i, &(cos, sin)) in rot.iter().enumerate() {
                    let (a, b) = (head[2 * i], head[2 * i + 1]);
                    head[2 * i] = a * cos - b * sin;
                    head[2 * i + 1] = a * sin + b * cos;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_weights(c: &SlideEncoderConfig, seed: u64) -> HashMap<String, Tensor> {
        let mut s = seed | 1;
        c.expected_shapes()
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let data: Vec<f32> = (0..n)
                    .map(|_| {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        let r = ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
                        if name.contains("norm") && name.ends_with("weight") {
                            1.0 + 0.2 * r
                        } else {
                            0.4 * r
                        }
                    })
                    .collect();
                (name, Tensor::from_vec(data, shape, &Device::Cpu).unwrap())
            })
            .collect()
    }

    fn config(alibi: bool) -> SlideEncoderConfig {
        SlideEncoderConfig {
            input_dim: 24,
            width: 32,
            depth: 2,
            heads: 2,
            mlp_ratio: 2.0,
            norm_eps: 1e-6,
            rope_base: 100.0,
            alibi,
        }
    }

    fn inputs(n: usize) -> (Vec<f32>, Vec<[f32; 2]>) {
        let features = (0..n * 24)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let positions = (0..n).map(|i| [(i / 7) as f32, (i % 7) as f32]).collect();
        (features, positions)
    }

    #[test]
    fn positions_matter_only_relative_to_each_other() {
        for alibi in [false, true] {
            let enc = SlideEncoder::new(config(alibi), random_weights(&config(alibi), 7)).unwrap();
            let (f, p) = inputs(40);
            let a = enc.forward(&f, &p).unwrap();
            let shifted: Vec<[f32; 2]> = p.iter().map(|q| [q[0] + 13.0, q[1] + 5.0]).collect();
            let b = enc.forward(&f, &shifted).unwrap();
            let max = a
                .token_logits
                .iter()
                .zip(&b.token_logits)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(max < 1e-3, "ALiBi {alibi}: translation changed logits by {max}");
            // But the arrangement matters: swapping two tokens' positions changes the output.
            let mut swapped = p.clone();
            swapped.swap(0, 39);
            let c = enc.forward(&f, &swapped).unwrap();
            assert!(a
                .token_logits
                .iter()
                .zip(&c.token_logits)
                .any(|(x, y)| (x - y).abs() > 1e-3));
        }
    }

    #[test]
    fn patch_tokens_group_into_finer_stage_two_tokens() {
        // Two tiles, one prefix token, 4 × 4 patches of width 2, grouped 2 × 2.
        let (side, d, prefix) = (4usize, 2usize, 1usize);
        let t = prefix + side * side;
        let data: Vec<f32> = (0..2 * t * d).map(|i| i as f32).collect();
        let tokens = Tensor::from_vec(data.clone(), (2, t, d), &Device::Cpu).unwrap();
        let (f, p) = group_patch_tokens(&tokens, prefix, side, 2, &[[0, 0], [3, 5]]).unwrap();
        assert_eq!(p.len(), 8);
        assert_eq!(p[4], [6.0, 10.0], "tile (3, 5), group (0, 0)");
        assert_eq!(p[7], [7.0, 11.0], "tile (3, 5), group (1, 1)");
        // Group (0, 1) of tile 0 averages patches (0,2), (0,3), (1,2), (1,3).
        let patch =
            |tile: usize, r: usize, c: usize, ch: usize| data[(tile * t + prefix + r * side + c) * d + ch];
        let want = (patch(0, 0, 2, 0) + patch(0, 0, 3, 0) + patch(0, 1, 2, 0) + patch(0, 1, 3, 0)) / 4.0;
        assert!((f[d] - want).abs() < 1e-5);
        assert!(group_patch_tokens(&tokens, prefix, side, 3, &[[0, 0], [3, 5]]).is_err());
    }

    #[test]
    fn tokens_are_permutation_equivariant_and_one_token_works() {
        let enc = SlideEncoder::new(config(true), random_weights(&config(true), 3)).unwrap();
        let (f, p) = inputs(30);
        let a = enc.forward(&f, &p).unwrap();
        // Reverse the token order (features and positions together).
        let rev_f: Vec<f32> = f.chunks(24).rev().flatten().copied().collect();
        let rev_p: Vec<[f32; 2]> = p.iter().rev().copied().collect();
        let b = enc.forward(&rev_f, &rev_p).unwrap();
        for (i, x) in a.token_logits.iter().enumerate() {
            assert!((x - b.token_logits[29 - i]).abs() < 1e-4);
        }
        assert!((a.slide_logit - b.slide_logit).abs() < 1e-4);
        let one = enc.forward(&f[..24], &p[..1]).unwrap();
        assert_eq!(one.token_logits.len(), 1);
        assert!(one.slide_logit.is_finite());
    }
}
