//! Stage 2, the slide encoder: a pre-norm transformer over all tissue tiles of a slide as
//! one sequence (N from 1 to over 10^6), exact softmax attention through the tiled kernel,
//! positions from each token's grid (row, column) by 2D rotary embedding (no lookup table,
//! so any slide size works), optionally a 2D ALiBi bias, and two heads: a tumour logit per
//! token and a slide-level logit.
//!
//! Weights (safetensors, names under `slide.`): `proj_in` (input features → width),
//! `blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`, `token_head`
//! (width → 1) and `slide_head` (width → 1, on the mean of the normalised tokens).

use super::config::{ConfigError, ModelConfig};
use super::tile_encoder::Encoded;
use super::weights::{HostTensor, Weights};
use super::ModelError;
use crate::backend::{Backend, PositionSpec};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

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
    /// Stage-2 tokens: absent, one per tile (its pooled feature); k, one per k × k group of
    /// the tile encoder's patch tokens (16-px patches in groups of 4 give 64-px tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_patches: Option<usize>,
}

impl SlideEncoderConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        use super::config::{check_mlp_ratio, check_norm_eps, check_size, MAX_DEPTH, MAX_WIDTH};
        check_size("slide encoder input_dim", self.input_dim, 1, MAX_WIDTH)?;
        check_size("slide encoder width", self.width, 1, MAX_WIDTH)?;
        check_size("slide encoder depth", self.depth, 0, MAX_DEPTH)?;
        check_mlp_ratio(self.mlp_ratio)?;
        check_norm_eps(self.norm_eps)?;
        if !(self.rope_base.is_finite() && self.rope_base > 1.0) {
            return Err(ConfigError::RopeBase(self.rope_base));
        }
        if self.heads == 0 || self.width % self.heads != 0 {
            return Err(ConfigError::Heads {
                what: "slide encoder width",
                width: self.width,
                heads: self.heads,
            });
        }
        if (self.width / self.heads) % 4 != 0 {
            return Err(ConfigError::RotaryHeadDim);
        }
        if self.group_patches == Some(0) {
            return Err(ConfigError::NoGroup);
        }
        Ok(())
    }

    /// A lower bound on the parameters (weight matrices only); see
    /// [`super::config::ModelConfig::parameter_floor`].
    pub fn parameter_floor(&self) -> u64 {
        let w = self.width as u64;
        w * self.input_dim as u64 + self.depth as u64 * (4 * w * w + 2 * w * self.mlp_hidden() as u64)
    }

    fn mlp_hidden(&self) -> usize {
        (self.width as f64 * self.mlp_ratio + 1e-6) as usize
    }

    /// The weights a new encoder starts from (normal, std 0.02; norm weights 1; always the
    /// same): benchmarks' and training's.
    pub fn random_weights(&self) -> Result<HashMap<String, HostTensor>, ModelError> {
        super::weights::random_host(&self.expected_shapes(), 0x51de)
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

pub struct SlideEncoder<B: Backend> {
    pub config: SlideEncoderConfig,
    weights: Weights<B>,
}

/// The slide encoder's outputs.
pub struct SlideOutput {
    /// One tumour logit per token.
    pub token_logits: Vec<f32>,
    pub slide_logit: f32,
}

impl<B: Backend> SlideEncoder<B> {
    /// Takes the tensors named in [`SlideEncoderConfig::expected_shapes`] from `host`, read
    /// from `source`, checking their shapes, and places them on `backend`.
    pub fn new(
        backend: &B,
        config: SlideEncoderConfig,
        host: &HashMap<String, HostTensor>,
        source: &Path,
    ) -> Result<SlideEncoder<B>, ModelError> {
        config.validate()?;
        let weights = Weights::from_host(backend, host, &config.expected_shapes(), source)?;
        Ok(SlideEncoder { config, weights })
    }

    /// An encoder with random weights: for benchmarks.
    pub fn random(backend: &B, config: SlideEncoderConfig) -> Result<SlideEncoder<B>, ModelError> {
        config.validate()?;
        let host = config.random_weights()?;
        let weights = Weights::from_host(
            backend,
            &host,
            &config.expected_shapes(),
            Path::new("random weights"),
        )?;
        Ok(SlideEncoder { config, weights })
    }

    /// Stage-2 tokens of a batch of tiles encoded by stage 1 (`tile` its configuration) at
    /// grid `tile_positions` (row, column): features `[tokens, D]` and each token's position,
    /// in units of tokens.
    pub fn tokens_from_tiles(
        &self,
        tile: &ModelConfig,
        encoded: &Encoded<B::Tensor>,
        tile_positions: &[[u32; 2]],
    ) -> Result<(B::Tensor, Vec<[f32; 2]>), ModelError> {
        let be = &self.weights.backend;
        match self.config.group_patches {
            None => Ok((
                encoded.pooled.clone(),
                tile_positions
                    .iter()
                    .map(|p| [p[0] as f32, p[1] as f32])
                    .collect(),
            )),
            Some(k) => {
                let side = tile.patches_per_side();
                if side % k != 0 {
                    return Err(ModelError::Config(ConfigError::Groups { side, k }));
                }
                let features = be.group_tokens(
                    &encoded.tokens,
                    tile_positions.len(),
                    tile.prefix_tokens(),
                    side,
                    k,
                )?;
                Ok((features, group_positions(tile_positions, side / k)))
            }
        }
    }

    /// Runs the encoder over `features` (`[N, input_dim]`) at grid `positions` (row, column),
    /// as one sequence.
    pub fn forward(&self, features: &B::Tensor, positions: &[[f32; 2]]) -> Result<SlideOutput, ModelError> {
        let be = &self.weights.backend;
        let (token_logits, slide_logit) = self.logits(features, positions)?;
        Ok(SlideOutput {
            token_logits: be.download(&token_logits)?,
            slide_logit: be.download(&slide_logit)?[0],
        })
    }

    /// [`SlideEncoder::forward`]'s logits as tensors, `[N, 1]` per token and `[1, 1]` for the
    /// slide: what training differentiates.
    pub fn logits(
        &self,
        features: &B::Tensor,
        positions: &[[f32; 2]],
    ) -> Result<(B::Tensor, B::Tensor), ModelError> {
        let c = &self.config;
        let (be, w) = (&self.weights.backend, &self.weights);
        let n = positions.len();
        if n == 0 || be.shape(features) != (n, c.input_dim) {
            return Err(ModelError::Input(format!(
                "features {:?} for {n} tokens of {}",
                be.shape(features),
                c.input_dim
            )));
        }
        let (heads, hd) = (c.heads, c.width / c.heads);
        let spec = PositionSpec {
            positions,
            rope_base: Some(c.rope_base),
            alibi: c.alibi,
        };
        let positions = be.prepare_positions(spec, heads, hd)?;
        // Each block's residual add is done with the norm that follows it (the next block's
        // norm1, or the final norm), so `h` is always the normed residual stream.
        let norm_after = |b: usize| match b < c.depth {
            true => format!("slide.blocks.{b}.norm1"),
            false => "slide.norm".into(),
        };
        let mut x = w.dense(features, "slide.proj_in")?;
        let mut h = w.norm(&x, &norm_after(0), c.norm_eps)?;
        for b in 0..c.depth {
            let name = |s: &str| format!("slide.blocks.{b}.{s}");
            let qkv = w.dense(&h, &name("attn.qkv"))?;
            let a = be.attention(&qkv, &[0, n], heads, hd, Some(&positions))?;
            let a = w.dense(&a, &name("attn.proj"))?;
            let (sum, normed) = w.add_norm(&x, &a, None, &name("norm2"), c.norm_eps)?;
            let m = w.dense(&w.dense_gelu(&normed, &name("mlp.fc1"))?, &name("mlp.fc2"))?;
            (x, h) = w.add_norm(&sum, &m, None, &norm_after(b + 1), c.norm_eps)?;
        }
        let x = h;
        let pooled = be.mean_rows(&x, 1, 0, n)?;
        Ok((
            w.dense(&x, "slide.token_head")?,
            w.dense(&pooled, "slide.slide_head")?,
        ))
    }

    pub fn weights(&self) -> &Weights<B> {
        &self.weights
    }
}

/// Positions of the `groups` × `groups` stage-2 tokens of each tile, in raster order within
/// the tile (as the backend's `group_tokens` orders them): the tile's (row, column) times
/// `groups` plus the group's place in the tile.
pub fn group_positions(tile_positions: &[[u32; 2]], groups: usize) -> Vec<[f32; 2]> {
    let mut positions = Vec::with_capacity(tile_positions.len() * groups * groups);
    for pos in tile_positions {
        for gi in 0..groups {
            for gj in 0..groups {
                positions.push([
                    (pos[0] as usize * groups + gi) as f32,
                    (pos[1] as usize * groups + gj) as f32,
                ]);
            }
        }
    }
    positions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    fn random_weights(c: &SlideEncoderConfig, seed: u64) -> HashMap<String, HostTensor> {
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
                (name, HostTensor { data, shape })
            })
            .collect()
    }

    fn encoder(alibi: bool, seed: u64) -> SlideEncoder<CpuBackend> {
        let c = SlideEncoderConfig {
            input_dim: 24,
            width: 32,
            depth: 2,
            heads: 2,
            mlp_ratio: 2.0,
            norm_eps: 1e-6,
            rope_base: 100.0,
            alibi,
            group_patches: None,
        };
        SlideEncoder::new(
            &CpuBackend,
            c.clone(),
            &random_weights(&c, seed),
            Path::new("test"),
        )
        .unwrap()
    }

    fn inputs(n: usize) -> (Vec<f32>, Vec<[f32; 2]>) {
        let features = (0..n * 24)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let positions = (0..n).map(|i| [(i / 7) as f32, (i % 7) as f32]).collect();
        (features, positions)
    }

    fn run(enc: &SlideEncoder<CpuBackend>, features: &[f32], positions: &[[f32; 2]]) -> SlideOutput {
        let x = CpuBackend.upload(features, positions.len(), 24).unwrap();
        enc.forward(&x, positions).unwrap()
    }

    #[test]
    fn positions_matter_only_relative_to_each_other() {
        for alibi in [false, true] {
            let enc = encoder(alibi, 7);
            let (f, p) = inputs(40);
            let a = run(&enc, &f, &p);
            let shifted: Vec<[f32; 2]> = p.iter().map(|q| [q[0] + 13.0, q[1] + 5.0]).collect();
            let b = run(&enc, &f, &shifted);
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
            let c = run(&enc, &f, &swapped);
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
        let tokens = CpuBackend.upload(&data, 2 * t, d).unwrap();
        let f = CpuBackend
            .download(&CpuBackend.group_tokens(&tokens, 2, prefix, side, 2).unwrap())
            .unwrap();
        let p = group_positions(&[[0, 0], [3, 5]], 2);
        assert_eq!((f.len(), p.len()), (8 * d, 8));
        assert_eq!(p[4], [6.0, 10.0], "tile (3, 5), group (0, 0)");
        assert_eq!(p[7], [7.0, 11.0], "tile (3, 5), group (1, 1)");
        // Group (0, 1) of tile 0 averages patches (0,2), (0,3), (1,2), (1,3).
        let patch =
            |tile: usize, r: usize, c: usize, ch: usize| data[(tile * t + prefix + r * side + c) * d + ch];
        let want = (patch(0, 0, 2, 0) + patch(0, 0, 3, 0) + patch(0, 1, 2, 0) + patch(0, 1, 3, 0)) / 4.0;
        assert!((f[d] - want).abs() < 1e-5);
    }

    #[test]
    fn tokens_are_permutation_equivariant_and_one_token_works() {
        let enc = encoder(true, 3);
        let (f, p) = inputs(30);
        let a = run(&enc, &f, &p);
        // Reverse the token order (features and positions together).
        let rev_f: Vec<f32> = f.chunks(24).rev().flatten().copied().collect();
        let rev_p: Vec<[f32; 2]> = p.iter().rev().copied().collect();
        let b = run(&enc, &rev_f, &rev_p);
        for (i, x) in a.token_logits.iter().enumerate() {
            assert!((x - b.token_logits[29 - i]).abs() < 1e-4);
        }
        assert!((a.slide_logit - b.slide_logit).abs() < 1e-4);
        let one = run(&enc, &f[..24], &p[..1]);
        assert_eq!(one.token_logits.len(), 1);
        assert!(one.slide_logit.is_finite());
    }
}
