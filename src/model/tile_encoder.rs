//! Stage 1, the tile encoder: timm's VisionTransformer, weight for weight (timm's tensor
//! names), on the CPU with candle-core; attention through flashslide's tiled kernel.

use super::config::{GlobalPool, MlpKind, ModelConfig};
use super::layers::{packed_attention, resize_bicubic_antialiased, Weights};
use super::ModelError;
use candle_core::{DType, Device, Tensor, D};
use std::collections::HashMap;
use std::path::Path;

pub struct TileEncoder {
    pub config: ModelConfig,
    weights: Weights,
}

/// What the encoder gives for a batch of tiles.
pub struct Encoded {
    /// Every token after the final norm, [B, T, D] (timm's `forward_features`).
    pub tokens: Tensor,
    /// The pooled tile feature, [B, D] (timm's `forward_head(pre_logits=True)`).
    pub pooled: Tensor,
}

impl TileEncoder {
    /// Loads the weights (memory-mapped safetensors with timm's names) and checks every tensor
    /// the configuration needs is there with the right shape.
    pub fn load(config: ModelConfig, weights: &Path) -> Result<TileEncoder, ModelError> {
        config.validate().map_err(ModelError::Config)?;
        let bad = |msg: String| ModelError::Weights {
            path: weights.to_path_buf(),
            msg,
        };
        // SAFETY: the file is mapped read-only; flashslide never writes model files while
        // reading them (a file changed underneath by another program is the caller's risk,
        // as with any memory-mapped read).
        let mmap = unsafe { candle_core::safetensors::MmapedSafetensors::new(weights) }
            .map_err(|e| bad(e.to_string()))?;
        let mut map = HashMap::new();
        for (name, _) in mmap.tensors() {
            let t = mmap
                .load(&name, &Device::Cpu)
                .map_err(|e| bad(e.to_string()))?
                .to_dtype(DType::F32)?;
            map.insert(name, t);
        }
        let encoder = TileEncoder {
            config,
            weights: Weights(map),
        };
        for (name, shape) in encoder.expected_shapes() {
            match encoder.weights.0.get(&name) {
                None => return Err(bad(format!("tensor {name} is missing"))),
                Some(t) if t.dims() != shape.as_slice() => {
                    return Err(bad(format!(
                        "tensor {name} has shape {:?}, expected {shape:?}",
                        t.dims()
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(encoder)
    }

    /// An encoder with random weights (normal, std 0.02; norm weights 1): for benchmarks.
    pub fn random(config: ModelConfig) -> Result<TileEncoder, ModelError> {
        config.validate().map_err(ModelError::Config)?;
        let mut weights = HashMap::new();
        for (name, shape) in expected_shapes(&config) {
            let t = if name.contains("norm") && name.ends_with(".weight") {
                Tensor::ones(shape, DType::F32, &Device::Cpu)?
            } else {
                (Tensor::randn(0f32, 1f32, shape, &Device::Cpu)? * 0.02)?
            };
            weights.insert(name, t);
        }
        Ok(TileEncoder {
            config,
            weights: Weights(weights),
        })
    }

    /// Every tensor the configuration needs, with its shape.
    fn expected_shapes(&self) -> Vec<(String, Vec<usize>)> {
        expected_shapes(&self.config)
    }
}

/// Every tensor a configuration needs, with its shape.
fn expected_shapes(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (d, p) = (c.width, c.patch_size);
    let tokens = c.prefix_tokens() + c.patches_per_side().pow(2);
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

impl TileEncoder {
    /// Encodes `batch` tiles given as RGB bytes, `side`² pixels each, row-major. A side other
    /// than the model's (a multiple of the patch size) resamples the position embedding as
    /// timm does (bicubic, antialiased).
    pub fn forward(&self, rgb: &[u8], batch: usize, side: usize) -> Result<Encoded, ModelError> {
        let c = &self.config;
        let (s, p, d) = (side, c.patch_size, c.width);
        if s == 0 || s % p != 0 {
            return Err(ModelError::Input(format!(
                "tile side {s} is not a multiple of the patch size {p}"
            )));
        }
        if rgb.len() != batch * s * s * 3 {
            return Err(ModelError::Input(format!(
                "{} bytes for {batch} tiles of {s}x{s} RGB",
                rgb.len()
            )));
        }
        // Patch embedding: the conv with stride = kernel = p is a matmul over flattened
        // patches in the weight's (channel, row, column) order.
        let grid = s / p;
        let n = grid * grid;
        let mut patches = vec![0f32; batch * n * 3 * p * p];
        for b in 0..batch {
            for (pi, chunk) in patches[b * n * 3 * p * p..(b + 1) * n * 3 * p * p]
                .chunks_exact_mut(3 * p * p)
                .enumerate()
            {
                let (py, px) = (pi / grid, pi % grid);
                for ch in 0..3 {
                    for ky in 0..p {
                        for kx in 0..p {
                            let (y, x) = (py * p + ky, px * p + kx);
                            let v = rgb[((b * s + y) * s + x) * 3 + ch] as f32 / 255.0;
                            chunk[(ch * p + ky) * p + kx] = (v - c.mean[ch]) / c.std[ch];
                        }
                    }
                }
            }
        }
        let patches = Tensor::from_vec(patches, (batch, n, 3 * p * p), &Device::Cpu)?;
        let w = self
            .weights
            .get("patch_embed.proj.weight")
            .reshape((d, 3 * p * p))?;
        let mut x = patches
            .broadcast_matmul(&w.t()?)?
            .broadcast_add(self.weights.get("patch_embed.proj.bias"))?;
        // Prefix tokens (class, registers), then positions over all tokens.
        let mut parts = Vec::new();
        if c.class_token {
            parts.push(
                self.weights
                    .get("cls_token")
                    .broadcast_as((batch, 1, d))?
                    .contiguous()?,
            );
        }
        if c.register_tokens > 0 {
            parts.push(
                self.weights
                    .get("reg_token")
                    .broadcast_as((batch, c.register_tokens, d))?
                    .contiguous()?,
            );
        }
        parts.push(x);
        x = Tensor::cat(&parts, 1)?.broadcast_add(&self.position_embedding(grid)?)?;
        for b in 0..c.depth {
            x = self.block(b, &x)?;
        }
        let (tokens, pooled) = if c.fc_norm {
            let pooled = self.pool(&x)?;
            (x, self.weights.norm(&pooled, "fc_norm", c.norm_eps)?)
        } else {
            let x = self.weights.norm(&x, "norm", c.norm_eps)?;
            let pooled = self.pool(&x)?;
            (x, pooled)
        };
        Ok(Encoded { tokens, pooled })
    }

    /// The position embedding for a grid of `grid`² patches: the trained one, or its patch
    /// part resampled from the trained grid (prefix tokens keep theirs).
    fn position_embedding(&self, grid: usize) -> Result<Tensor, ModelError> {
        let c = &self.config;
        let trained = self.weights.get("pos_embed");
        let g0 = c.patches_per_side();
        if grid == g0 {
            return Ok(trained.clone());
        }
        let (prefix, d) = (c.prefix_tokens(), c.width);
        let patches = trained
            .narrow(1, prefix, g0 * g0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let resized = resize_bicubic_antialiased(&patches, g0, g0, d, grid, grid);
        let resized = Tensor::from_vec(resized, (1, grid * grid, d), &Device::Cpu)?;
        Ok(Tensor::cat(&[trained.narrow(1, 0, prefix)?, resized], 1)?)
    }

    fn pool(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let c = &self.config;
        Ok(match c.global_pool {
            GlobalPool::Token => x.narrow(1, 0, 1)?.squeeze(1)?,
            GlobalPool::Avg => {
                let t = x.dim(1)?;
                x.narrow(1, c.prefix_tokens(), t - c.prefix_tokens())?.mean(1)?
            }
        })
    }

    /// x + ls1·attn(norm1(x)), then + ls2·mlp(norm2(x)).
    fn block(&self, b: usize, x: &Tensor) -> Result<Tensor, ModelError> {
        let c = &self.config;
        let name = |n: &str| format!("blocks.{b}.{n}");
        let h = self.weights.norm(x, &name("norm1"), c.norm_eps)?;
        let qkv = self.weights.dense(&h, &name("attn.qkv"))?;
        let a = self.attention(&qkv)?;
        let mut a = self.weights.dense(&a, &name("attn.proj"))?;
        if c.layer_scale {
            a = a.broadcast_mul(self.weights.get(&name("ls1.gamma")))?;
        }
        let x = (x + a)?;
        let h = self.weights.norm(&x, &name("norm2"), c.norm_eps)?;
        let h = self.weights.dense(&h, &name("mlp.fc1"))?;
        let h = match c.mlp {
            MlpKind::Gelu => h.gelu_erf()?,
            MlpKind::Swiglu => {
                let half = h.dim(D::Minus1)? / 2;
                (h.narrow(D::Minus1, 0, half)?.silu()? * h.narrow(D::Minus1, half, half)?)?
            }
        };
        let mut m = self.weights.dense(&h, &name("mlp.fc2"))?;
        if c.layer_scale {
            m = m.broadcast_mul(self.weights.get(&name("ls2.gamma")))?;
        }
        Ok((x + m)?)
    }

    /// Multi-head attention of a batch of tiles, each tile one sequence of the packed kernel.
    fn attention(&self, qkv: &Tensor) -> Result<Tensor, ModelError> {
        let c = &self.config;
        let (batch, t, width) = qkv.dims3()?;
        let offsets: Vec<usize> = (0..=batch).map(|b| b * t).collect();
        let flat = qkv.reshape((batch * t, width))?;
        let out = packed_attention(&flat, &offsets, c.heads, c.head_dim(), None, None)?;
        Ok(out.reshape((batch, t, c.width))?)
    }
}
