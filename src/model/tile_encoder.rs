//! Stage 1, the tile encoder: timm's VisionTransformer, weight for weight (timm's tensor
//! names), written against the backend's operations.

use super::config::{GlobalPool, MlpKind, ModelConfig};
use super::pos_resample::resize_bicubic_antialiased;
use super::weights::{random_host, HostTensor, Weights};
use super::ModelError;
use crate::backend::Backend;
use std::collections::HashMap;
use std::path::Path;

pub struct TileEncoder<B: Backend> {
    pub config: ModelConfig,
    weights: Weights<B>,
    /// The position embedding of every token at the trained grid, prefix tokens included
    /// (zeros for them under `no_embed_class`): what `prepend_and_position` adds.
    position: B::Tensor,
    /// The layer scales multiplied into the layers they scale ([`fold_layer_scale`]), so
    /// the forward does not apply them.
    layer_scale_folded: bool,
}

/// What the encoder gives for a batch of tiles.
pub struct Encoded<T> {
    /// Every token after the final norm, `[B·T, D]`, tile after tile (timm's
    /// `forward_features`).
    pub tokens: T,
    /// The pooled tile feature, `[B, D]` (timm's `forward_head(pre_logits=True)`).
    pub pooled: T,
}

impl<B: Backend> TileEncoder<B> {
    /// Takes the tensors the configuration needs (timm's names) from `host`, read from
    /// `source`, checking their shapes, and places them on `backend`, for inference (layer
    /// scale folded in).
    pub fn new(
        backend: &B,
        config: ModelConfig,
        host: &HashMap<String, HostTensor>,
        source: &Path,
    ) -> Result<TileEncoder<B>, ModelError> {
        config.validate()?;
        let folded = fold_layer_scale(&config, host);
        let expected = expected_shapes(&config);
        let weights = Weights::from_host_replacing(backend, host, &folded, &expected, source)?;
        TileEncoder::with_weights(config, weights, true)
    }

    /// An encoder with random weights, for inference: for benchmarks.
    pub fn random(backend: &B, config: ModelConfig) -> Result<TileEncoder<B>, ModelError> {
        config.validate()?;
        let host = random_host(&expected_shapes(&config), RANDOM_SEED)?;
        TileEncoder::new(backend, config, &host, Path::new("random weights"))
    }

    /// An encoder with random weights to train: every tensor as timm names it, the layer
    /// scales apart from the layers they scale (the same values as [`TileEncoder::random`]).
    pub fn random_trainable(backend: &B, config: ModelConfig) -> Result<TileEncoder<B>, ModelError> {
        config.validate()?;
        let weights = Weights::random(backend, &expected_shapes(&config), RANDOM_SEED)?;
        TileEncoder::with_weights(config, weights, false)
    }

    fn with_weights(
        config: ModelConfig,
        weights: Weights<B>,
        layer_scale_folded: bool,
    ) -> Result<TileEncoder<B>, ModelError> {
        let trained = weights.get("pos_embed");
        let position = if config.no_embed_class {
            let be = &weights.backend;
            let (prefix, d) = (config.prefix_tokens(), config.width);
            let mut all = vec![0.0; prefix * d];
            all.extend(be.download(trained)?);
            be.upload(&all, prefix + config.patches_per_side().pow(2), d)?
        } else {
            trained.clone()
        };
        Ok(TileEncoder {
            config,
            weights,
            position,
            layer_scale_folded,
        })
    }

    pub fn backend(&self) -> &B {
        &self.weights.backend
    }

    pub fn weights(&self) -> &Weights<B> {
        &self.weights
    }

    /// Encodes `batch` tiles given as RGB bytes, `side`² pixels each, row-major. A side other
    /// than the model's (a multiple of the patch size) resamples the position embedding as
    /// timm does (bicubic, antialiased).
    pub fn forward(&self, rgb: &[u8], batch: usize, side: usize) -> Result<Encoded<B::Tensor>, ModelError> {
        let pixels = self.weights.backend.upload_pixels(rgb)?;
        self.forward_pixels(&pixels, batch, side)
    }

    /// One pass over `batch` mid-grey tiles at the model's size, its output dropped: what a
    /// shape's first pass sets up (a GPU's choice of GEMM algorithms, its buffers) done
    /// before the first real tiles.
    pub fn warm_up(&self, batch: usize) -> Result<(), ModelError> {
        let side = self.config.image_size;
        let grey = vec![128u8; batch * side * side * 3];
        self.forward(&grey, batch, side).map(drop)
    }

    /// As [`TileEncoder::forward`], for tiles already where the backend computes (uploaded,
    /// or decoded there).
    pub fn forward_pixels(
        &self,
        rgb: &B::Pixels,
        batch: usize,
        side: usize,
    ) -> Result<Encoded<B::Tensor>, ModelError> {
        let c = &self.config;
        let (be, w) = (&self.weights.backend, &self.weights);
        let (s, p) = (side, c.patch_size);
        if s == 0 || s % p != 0 {
            return Err(ModelError::Input(format!(
                "tile side {s} is not a multiple of the patch size {p}"
            )));
        }
        let bytes = be.pixel_bytes(rgb);
        if batch == 0 || bytes != batch * s * s * 3 {
            return Err(ModelError::Input(format!(
                "{bytes} bytes for {batch} tiles of {s}x{s} RGB"
            )));
        }
        // Patch embedding: the convolution with stride = kernel = p is a matmul over
        // flattened patches.
        let patches = be.patchify(rgb, batch, s, p, c.mean, c.std)?;
        let x = self.weights.dense(&patches, "patch_embed.proj")?;
        let prefix = self.prefix_tokens()?;
        let grid = s / p;
        let x = be.prepend_and_position(&x, batch, prefix.as_ref(), &self.position_embedding(grid)?)?;
        // Each block's residual add is done with the norm that follows it (the next block's
        // norm1, or the final norm), so `h` is the residual stream as the next step reads it:
        // normed, or itself where no norm follows (after the last block under `fc_norm`).
        let mut h = match self.norm_after(0) {
            Some(norm) => w.norm(&x, &norm, c.norm_eps)?,
            None => x.clone(),
        };
        let mut x = x;
        for b in 0..c.depth {
            (x, h) = self.block(b, &x, &h, batch)?;
        }
        let pooled = self.pool(&h, batch)?;
        let (tokens, pooled) = match c.fc_norm {
            true => (h, w.norm(&pooled, "fc_norm", c.norm_eps)?),
            false => (h, pooled),
        };
        Ok(Encoded { tokens, pooled })
    }

    /// The class token then the register tokens, `[P, D]`, if any.
    fn prefix_tokens(&self) -> Result<Option<B::Tensor>, ModelError> {
        let c = &self.config;
        let mut parts = Vec::new();
        if c.class_token {
            parts.push(self.weights.get("cls_token").clone());
        }
        if c.register_tokens > 0 {
            parts.push(self.weights.get("reg_token").clone());
        }
        Ok(match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(self.weights.backend.concat_rows(&parts)?),
        })
    }

    /// The position embedding for a grid of `grid`² patches: the trained one, or its patch
    /// part resampled from the trained grid (prefix tokens keep theirs).
    fn position_embedding(&self, grid: usize) -> Result<B::Tensor, ModelError> {
        let c = &self.config;
        let be = &self.weights.backend;
        let trained = &self.position;
        let g0 = c.patches_per_side();
        if grid == g0 {
            return Ok(trained.clone());
        }
        let (prefix, d) = (c.prefix_tokens(), c.width);
        let host = be.download(trained)?;
        let resized = resize_bicubic_antialiased(&host[prefix * d..], g0, g0, d, grid, grid);
        let mut all = host[..prefix * d].to_vec();
        all.extend(resized);
        Ok(be.upload(&all, prefix + grid * grid, d)?)
    }

    fn pool(&self, x: &B::Tensor, batch: usize) -> Result<B::Tensor, ModelError> {
        let c = &self.config;
        let be = &self.weights.backend;
        let t = be.shape(x).0 / batch;
        let patches = t - c.prefix_tokens();
        Ok(match c.global_pool {
            GlobalPool::Token => be.mean_rows(x, batch, 0, 1)?,
            GlobalPool::Avg => be.mean_rows(x, batch, c.prefix_tokens(), patches)?,
            GlobalPool::TokenAndAvg => be.concat_cols(
                &be.mean_rows(x, batch, 0, 1)?,
                &be.mean_rows(x, batch, c.prefix_tokens(), patches)?,
            )?,
        })
    }

    /// The norm applied to the residual stream after `b` blocks: block `b`'s norm1, the
    /// final norm after the last block, none there under `fc_norm` (the pooled feature is
    /// normed instead).
    fn norm_after(&self, b: usize) -> Option<String> {
        let c = &self.config;
        if b < c.depth {
            Some(format!("blocks.{b}.norm1"))
        } else if c.fc_norm {
            None
        } else {
            Some("norm".into())
        }
    }

    /// Block `b` on the residual stream `x`, given `h` = norm1(x): x + ls1·attn(h), and
    /// then ls2·mlp(norm2(·)) added. Returns the new residual stream and that stream as the
    /// next step reads it (see [`TileEncoder::norm_after`]).
    fn block(
        &self,
        b: usize,
        x: &B::Tensor,
        h: &B::Tensor,
        batch: usize,
    ) -> Result<(B::Tensor, B::Tensor), ModelError> {
        let c = &self.config;
        let (be, w) = (&self.weights.backend, &self.weights);
        let name = |n: &str| format!("blocks.{b}.{n}");
        let qkv = w.dense(h, &name("attn.qkv"))?;
        // Each tile is one sequence of the packed attention.
        let t = be.shape(x).0 / batch;
        let offsets: Vec<usize> = (0..=batch).map(|i| i * t).collect();
        let a = be.attention(&qkv, &offsets, c.heads, c.head_dim(), None)?;
        let (x, h) =
            self.residual_branch(x, &a, &name("attn.proj"), &name("ls1.gamma"), Some(name("norm2")))?;
        let h = match c.mlp {
            MlpKind::Gelu => w.dense_gelu(&h, &name("mlp.fc1"))?,
            MlpKind::Swiglu => be.swiglu(&w.dense(&h, &name("mlp.fc1"))?)?,
        };
        self.residual_branch(
            &x,
            &h,
            &name("mlp.fc2"),
            &name("ls2.gamma"),
            self.norm_after(b + 1),
        )
    }

    /// The residual stream `x` plus the linear layer `layer` of `y` (times the layer scale
    /// `gamma` where the encoder has one it did not fold), and the new stream as the next
    /// step reads it: normed by `norm`, or itself.
    fn residual_branch(
        &self,
        x: &B::Tensor,
        y: &B::Tensor,
        layer: &str,
        gamma: &str,
        norm: Option<String>,
    ) -> Result<(B::Tensor, B::Tensor), ModelError> {
        let (c, w) = (&self.config, &self.weights);
        let be = &w.backend;
        if c.layer_scale && !self.layer_scale_folded {
            let y = w.dense(y, layer)?;
            return Ok(match norm {
                Some(norm) => w.add_norm(x, &y, Some(gamma), &norm, c.norm_eps)?,
                None => {
                    let x = be.add(x, &be.scale_columns(&y, w.get(gamma))?)?;
                    (x.clone(), x)
                }
            });
        }
        let x = w.dense_residual(y, layer, x)?;
        let h = match norm {
            Some(norm) => w.norm(&x, &norm, c.norm_eps)?,
            None => x.clone(),
        };
        Ok((x, h))
    }
}

/// The seed of random encoders' weights.
const RANDOM_SEED: u64 = 0x7105;

/// timm's layer scale, `ls · (x·Wᵀ + b)`, folded into the layer it scales as
/// `x·(diag(ls)·W)ᵀ + ls·b`: the folded tensors of every block (none without layer scale). Folded in f32
/// before the weights are rounded for the device, so that the forward can add each branch's
/// last layer to the residual stream in the GEMM. Tensors missing or of the wrong shape are
/// left for the shape check to name.
fn fold_layer_scale(c: &ModelConfig, host: &HashMap<String, HostTensor>) -> HashMap<String, HostTensor> {
    let mut folded = HashMap::new();
    if !c.layer_scale {
        return folded;
    }
    for b in 0..c.depth {
        for (layer, gamma) in [("attn.proj", "ls1.gamma"), ("mlp.fc2", "ls2.gamma")] {
            let name = |n: &str| format!("blocks.{b}.{layer}.{n}");
            let (Some(ls), Some(w), Some(bias)) = (
                host.get(&format!("blocks.{b}.{gamma}")),
                host.get(&name("weight")),
                host.get(&name("bias")),
            ) else {
                continue;
            };
            let out = ls.data.len();
            if w.shape.len() != 2 || w.shape[0] != out || bias.data.len() != out {
                continue;
            }
            let inner = w.shape[1];
            let weight: Vec<f32> = w
                .data
                .iter()
                .enumerate()
                .map(|(i, v)| v * ls.data[i / inner])
                .collect();
            let bias_data: Vec<f32> = bias.data.iter().zip(&ls.data).map(|(v, g)| v * g).collect();
            folded.insert(
                name("weight"),
                HostTensor {
                    data: weight,
                    shape: w.shape.clone(),
                },
            );
            folded.insert(
                name("bias"),
                HostTensor {
                    data: bias_data,
                    shape: bias.shape.clone(),
                },
            );
        }
    }
    folded
}

/// Every tensor a configuration needs, with its shape.
pub fn expected_shapes(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (d, p) = (c.width, c.patch_size);
    let tokens = c.position_rows();
    let mut v = vec![
        ("patch_embed.proj.weight".to_string(), vec![d, 3, p, p]),
        ("patch_embed.proj.bias".to_string(), vec![d]),
        ("pos_embed".to_string(), vec![1, tokens, d]),
    ];
    if c.class_token {
        v.push(("cls_token".into(), vec![1, 1, d]));
    }
    if c.register_tokens > 0 {
        v.push(("reg_token".into(), vec![1, c.register_tokens, d]));
    }
    let hidden = c.mlp_hidden();
    let fc2_in = if c.mlp == MlpKind::Swiglu {
        hidden / 2
    } else {
        hidden
    };
    for b in 0..c.depth {
        let mut add = |n: &str, s: Vec<usize>| v.push((format!("blocks.{b}.{n}"), s));
        add("norm1.weight", vec![d]);
        add("norm1.bias", vec![d]);
        add("attn.qkv.weight", vec![3 * d, d]);
        if c.qkv_bias {
            add("attn.qkv.bias", vec![3 * d]);
        }
        add("attn.proj.weight", vec![d, d]);
        add("attn.proj.bias", vec![d]);
        add("norm2.weight", vec![d]);
        add("norm2.bias", vec![d]);
        add("mlp.fc1.weight", vec![hidden, d]);
        add("mlp.fc1.bias", vec![hidden]);
        add("mlp.fc2.weight", vec![d, fc2_in]);
        add("mlp.fc2.bias", vec![d]);
        if c.layer_scale {
            add("ls1.gamma", vec![d]);
            add("ls2.gamma", vec![d]);
        }
    }
    let final_norm = if c.fc_norm { "fc_norm" } else { "norm" };
    v.push((format!("{final_norm}.weight"), vec![d]));
    v.push((format!("{final_norm}.bias"), vec![d]));
    v
}
