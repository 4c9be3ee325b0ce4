//! A model's configuration (models/NAME/config.json): the tile encoder's architecture in
//! timm's terms, and the resolution and normalisation it expects.

use super::slide_encoder::SlideEncoderConfig;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MlpKind {
    /// Linear, exact (erf) GELU, linear: timm's `Mlp`.
    Gelu,
    /// timm's `SwiGLUPacked`: one linear to twice the hidden width, silu(first half) · second
    /// half, linear.
    Swiglu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GlobalPool {
    /// The class token.
    Token,
    /// The mean of the patch tokens (prefix tokens excluded).
    Avg,
}

/// The tile encoder: a timm VisionTransformer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    /// Always "vit".
    pub architecture: String,
    /// Microns per pixel of the tiles the model was trained on.
    pub mpp: f64,
    /// Tile size in pixels (square), and patch size.
    pub image_size: usize,
    pub patch_size: usize,
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_ratio: f64,
    pub mlp: MlpKind,
    pub norm_eps: f64,
    pub qkv_bias: bool,
    pub class_token: bool,
    pub register_tokens: usize,
    pub layer_scale: bool,
    pub global_pool: GlobalPool,
    /// Normalise the pooled feature (timm's fc_norm; then the final norm is skipped).
    pub fc_norm: bool,
    /// Per-channel input normalisation of 0–1 RGB.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Stage 2, when the model has one (its weights under `slide.` in the same file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide_encoder: Option<SlideEncoderConfig>,
}

impl ModelConfig {
    /// Checks the configuration is one flashslide can run, saying what is wrong if not.
    pub fn validate(&self) -> Result<(), String> {
        if self.architecture != "vit" {
            return Err(format!(
                "architecture {:?} is not supported (only \"vit\")",
                self.architecture
            ));
        }
        if self.patch_size == 0 || self.image_size % self.patch_size != 0 {
            return Err(format!(
                "image size {} is not a multiple of the patch size {}",
                self.image_size, self.patch_size
            ));
        }
        if self.heads == 0 || self.width % self.heads != 0 {
            return Err(format!(
                "width {} does not split into {} heads",
                self.width, self.heads
            ));
        }
        if self.global_pool == GlobalPool::Token && !self.class_token {
            return Err("token pooling needs a class token".into());
        }
        if self.mpp.is_nan() || self.mpp <= 0.0 || self.std.iter().any(|&s| s.is_nan() || s <= 0.0) {
            return Err("mpp and std must be positive".into());
        }
        if let Some(s) = &self.slide_encoder {
            s.validate()?;
            if s.input_dim != self.width {
                return Err(format!(
                    "the slide encoder takes {}-wide features but the tile encoder gives {}",
                    s.input_dim, self.width
                ));
            }
            if let Some(k) = s.group_patches {
                if self.patches_per_side() % k != 0 {
                    return Err(format!(
                        "{0} × {0} patch tokens do not split into groups of {k} × {k}",
                        self.patches_per_side()
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }

    /// Class and register tokens before the patch tokens.
    pub fn prefix_tokens(&self) -> usize {
        self.class_token as usize + self.register_tokens
    }

    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// The MLP's hidden width as timm computes it, int(width · ratio) (for SwiGLU, the packed
    /// width); the epsilon keeps a ratio written as hidden / width from truncating one short.
    pub fn mlp_hidden(&self) -> usize {
        (self.width as f64 * self.mlp_ratio + 1e-6) as usize
    }
}
