//! A model's configuration (models/NAME/config.json): the tile encoder's architecture in
//! timm's terms, and the resolution and normalisation it expects.

use super::slide_encoder::SlideEncoderConfig;
use crate::slide::mpp::{check_mpp, ImplausibleMpp};
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
    /// The class token then the mean of the patch tokens, side by side (`[2D]`, Virchow's
    /// tile embedding).
    #[serde(rename = "token_and_avg")]
    TokenAndAvg,
}

/// Largest tile side a model may take (the reader's largest tile, too).
const MAX_IMAGE_SIZE: usize = 4096;
/// Widths and depths beyond the largest vision transformers (ViT-22B: 6,144 wide, 48 deep).
pub(crate) const MAX_WIDTH: usize = 16384;
pub(crate) const MAX_DEPTH: usize = 1024;
const MAX_REGISTERS: usize = 256;

/// What makes a configuration one flashslide cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("architecture {0:?} is not supported (only \"vit\")")]
    Architecture(String),
    #[error("image size {image} is not a multiple of the patch size {patch}")]
    Patches { image: usize, patch: usize },
    #[error("{what} {width} does not split into {heads} heads")]
    Heads {
        what: &'static str,
        width: usize,
        heads: usize,
    },
    #[error("pooling by the class token needs a class token")]
    TokenPoolingWithoutClassToken,
    #[error("fc_norm normalises a width-wide feature; token_and_avg pooling gives twice that")]
    FcNormOfTwoFeatures,
    #[error("{name} {value} is outside {min}..={max}")]
    OutOfRange {
        name: &'static str,
        value: usize,
        min: usize,
        max: usize,
    },
    #[error("mlp_ratio {0} is outside (0, 16]")]
    MlpRatio(f64),
    #[error("norm_eps {0} is outside (0, 1)")]
    NormEps(f64),
    #[error("mpp: {0}")]
    Mpp(ImplausibleMpp),
    #[error("mean must be finite and std finite and positive")]
    Normalisation,
    #[error("the slide encoder takes {takes}-wide features but the tile encoder gives {gives}")]
    FeatureWidth { takes: usize, gives: usize },
    #[error("{side} × {side} patch tokens do not split into groups of {k} × {k}")]
    Groups { side: usize, k: usize },
    #[error("rope_base {0} must be finite and above 1")]
    RopeBase(f64),
    #[error("slide encoder head dim must be a multiple of 4 (2D rotary embedding)")]
    RotaryHeadDim,
    #[error("group_patches must be at least 1")]
    NoGroup,
}

/// `value` within `min..=max`.
pub(crate) fn check_size(
    name: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            name,
            value,
            min,
            max,
        })
    }
}

/// An MLP ratio is finite, positive and at most 16 (timm's largest is 8).
pub(crate) fn check_mlp_ratio(ratio: f64) -> Result<(), ConfigError> {
    if ratio > 0.0 && ratio <= 16.0 {
        Ok(())
    } else {
        Err(ConfigError::MlpRatio(ratio))
    }
}

/// A layer norm's epsilon is finite and in (0, 1): zero or negative values make NaN of
/// constant rows.
pub(crate) fn check_norm_eps(eps: f64) -> Result<(), ConfigError> {
    if eps > 0.0 && eps < 1.0 {
        Ok(())
    } else {
        Err(ConfigError::NormEps(eps))
    }
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
    /// The position embedding covers the patch tokens only; class and register tokens get
    /// none (timm's `no_embed_class`: UNI2-h, H-optimus).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_embed_class: bool,
    pub layer_scale: bool,
    pub global_pool: GlobalPool,
    /// Normalise the pooled feature (timm's fc_norm; then the final norm is skipped).
    pub fc_norm: bool,
    /// Per-channel input normalisation of 0–1 RGB.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// What every result of this model must say about it (the bundled models: trained on
    /// synthetic slides only); shown by `run`, recorded in summary.json and index.html.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// Stage 2, when the model has one (its weights under `slide.` in the same file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide_encoder: Option<SlideEncoderConfig>,
    /// Where a converted model's weights came from (`flashslide convert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ModelSource>,
}

/// The checkpoint a model was converted from, and what of it was left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    /// The checkpoint's file name.
    pub checkpoint: String,
    /// SHA-256 of the checkpoint file, hex.
    pub sha256: String,
    /// What the architecture was built from (a timm name and arguments, or a config file).
    pub architecture: String,
    /// Tensors of the checkpoint the tile encoder does not use, by group (a classifier
    /// head, a CLIP model's text tower).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

impl ModelConfig {
    /// Checks the configuration is one flashslide can run, saying what is wrong if not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.architecture != "vit" {
            return Err(ConfigError::Architecture(self.architecture.clone()));
        }
        if self.patch_size == 0 || self.image_size % self.patch_size != 0 {
            return Err(ConfigError::Patches {
                image: self.image_size,
                patch: self.patch_size,
            });
        }
        if self.heads == 0 || self.width % self.heads != 0 {
            return Err(ConfigError::Heads {
                what: "width",
                width: self.width,
                heads: self.heads,
            });
        }
        if matches!(self.global_pool, GlobalPool::Token | GlobalPool::TokenAndAvg) && !self.class_token {
            return Err(ConfigError::TokenPoolingWithoutClassToken);
        }
        if self.fc_norm && self.global_pool == GlobalPool::TokenAndAvg {
            return Err(ConfigError::FcNormOfTwoFeatures);
        }
        check_size("image_size", self.image_size, 1, MAX_IMAGE_SIZE)?;
        check_size("width", self.width, 1, MAX_WIDTH)?;
        check_size("depth", self.depth, 0, MAX_DEPTH)?;
        check_size("register_tokens", self.register_tokens, 0, MAX_REGISTERS)?;
        check_mlp_ratio(self.mlp_ratio)?;
        check_norm_eps(self.norm_eps)?;
        check_mpp(self.mpp).map_err(ConfigError::Mpp)?;
        if self.mean.iter().any(|m| !m.is_finite()) || self.std.iter().any(|&s| !(s.is_finite() && s > 0.0)) {
            return Err(ConfigError::Normalisation);
        }
        if let Some(s) = &self.slide_encoder {
            s.validate()?;
            // Grouped patch tokens are the model's width; pooled features its feature width.
            let gives = if s.group_patches.is_some() {
                self.width
            } else {
                self.feature_dim()
            };
            if s.input_dim != gives {
                return Err(ConfigError::FeatureWidth {
                    takes: s.input_dim,
                    gives,
                });
            }
            if let Some(k) = s.group_patches {
                if self.patches_per_side() % k != 0 {
                    return Err(ConfigError::Groups {
                        side: self.patches_per_side(),
                        k,
                    });
                }
            }
        }
        Ok(())
    }

    /// A lower bound on the parameters this configuration needs, both stages (their weight
    /// matrices and the position embedding): what its weight file must hold at least a byte
    /// of each, checked before anything is allocated for them. Within the limits `validate`
    /// sets it cannot overflow.
    pub fn parameter_floor(&self) -> u64 {
        let (w, p) = (self.width as u64, self.patch_size as u64);
        let block = 4 * w * w + w * self.mlp_hidden() as u64;
        let tokens = (self.patches_per_side() as u64).pow(2);
        let tile = self.depth as u64 * block + 3 * p * p * w + tokens * w;
        tile + self.slide_encoder.as_ref().map_or(0, |s| s.parameter_floor())
    }

    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }

    /// Class and register tokens before the patch tokens.
    pub fn prefix_tokens(&self) -> usize {
        self.class_token as usize + self.register_tokens
    }

    /// Rows of the position embedding: the patch tokens, and the prefix tokens unless
    /// `no_embed_class`.
    pub fn position_rows(&self) -> usize {
        let prefix = if self.no_embed_class {
            0
        } else {
            self.prefix_tokens()
        };
        prefix + self.patches_per_side().pow(2)
    }

    /// Width of the pooled tile feature: the model's width, twice it for `token_and_avg`.
    pub fn feature_dim(&self) -> usize {
        match self.global_pool {
            GlobalPool::TokenAndAvg => 2 * self.width,
            GlobalPool::Token | GlobalPool::Avg => self.width,
        }
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
