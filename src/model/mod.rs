//! The two-stage model. Stage 1 (`tile_encoder`) is a timm-compatible ViT; the slide
//! encoder (stage 2) comes next.

pub mod config;
mod layers;
pub mod slide_encoder;
pub mod tile_encoder;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model config: {0}")]
    Config(String),
    #[error("{}: {msg}", path.display())]
    Weights { path: PathBuf, msg: String },
    #[error("input: {0}")]
    Input(String),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}
