//! The two-stage model: stage 1 (`tile_encoder`), a timm-compatible ViT over each tile's
//! patches; stage 2 (`slide_encoder`), a transformer over all tiles of a slide at once. Both
//! are written against [`crate::backend::Backend`].
//!
//! A model directory holds `config.json` ([`config::ModelConfig`]) and `model.safetensors`
//! (the tile encoder's tensors under timm's names, the slide encoder's under `slide.`).

pub mod check;
pub mod config;
pub mod convert;
mod pos_resample;
pub mod slide_encoder;
pub mod tile_encoder;
pub mod weights;

use crate::backend::{Backend, BackendError};
use config::{ConfigError, ModelConfig};
use sha2::{Digest, Sha256};
use slide_encoder::SlideEncoder;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tile_encoder::TileEncoder;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model config: {0}")]
    Config(#[from] ConfigError),
    #[error("{}: {source}", path.display())]
    ConfigFile { path: PathBuf, source: ConfigError },
    #[error("{}: {source}", path.display())]
    ConfigJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: the configuration needs at least {floor} parameters, but {} holds only {bytes} bytes", config.display(), weights.display())]
    TooFewParameters {
        config: PathBuf,
        weights: PathBuf,
        floor: u64,
        bytes: u64,
    },
    #[error("{0} random parameters asked for, more than {max}", max = weights::MAX_RANDOM_PARAMETERS)]
    TooManyRandomParameters(usize),
    #[error("{}: {msg}", path.display())]
    Weights { path: PathBuf, msg: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("input: {0}")]
    Input(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A model directory, loaded onto a backend.
pub struct Model<B: Backend> {
    pub config: ModelConfig,
    pub tile_encoder: TileEncoder<B>,
    pub slide_encoder: Option<SlideEncoder<B>>,
    /// SHA-256 of model.safetensors, hex: names exactly which weights made a result.
    pub hash: String,
    /// SHA-256 of the tile encoder's tensors alone ([`weights::tensors_sha256`]): the same
    /// for every model sharing the encoder, so their tile features are the same features.
    pub tile_encoder_hash: String,
}

impl<B: Backend> Model<B> {
    /// The model in `dir` (config.json, model.safetensors).
    pub fn load(dir: &Path, backend: &B) -> Result<Model<B>, ModelError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ModelError::Io { path, source }
        };
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
        let config = parse_config(&text, &config_path)?;
        let weights_path = dir.join("model.safetensors");
        let file_bytes = std::fs::metadata(&weights_path).map_err(io(&weights_path))?.len();
        check_size(&config, &config_path, file_bytes, &weights_path)?;
        let hash = file_sha256(&weights_path).map_err(io(&weights_path))?;
        let tile_encoder_hash = weights::file_tensors_sha256(&weights_path, &tile_encoder_names(&config))?;
        let host = weights::read_safetensors(&weights_path)?;
        Self::assemble(config, &host, [hash, tile_encoder_hash], &weights_path, backend)
    }

    /// A model held in memory (one built into the binary): its config.json text and its
    /// model.safetensors bytes; `dir` names it in errors.
    pub fn from_bytes(
        config_json: &str,
        weights: &[u8],
        dir: &Path,
        backend: &B,
    ) -> Result<Model<B>, ModelError> {
        let (config_path, weights_path) = (dir.join("config.json"), dir.join("model.safetensors"));
        let config = parse_config(config_json, &config_path)?;
        check_size(&config, &config_path, weights.len() as u64, &weights_path)?;
        let host = weights::parse_safetensors(weights, &weights_path)?;
        let tile_encoder_hash =
            weights::tensors_sha256(weights, &tile_encoder_names(&config), &weights_path)?;
        Self::assemble(
            config,
            &host,
            [hex(Sha256::new_with_prefix(weights)), tile_encoder_hash],
            &weights_path,
            backend,
        )
    }

    fn assemble(
        config: ModelConfig,
        host: &HashMap<String, weights::HostTensor>,
        [hash, tile_encoder_hash]: [String; 2],
        source: &Path,
        backend: &B,
    ) -> Result<Model<B>, ModelError> {
        let tile_encoder = TileEncoder::new(backend, config.clone(), host, source)?;
        let slide_encoder = match &config.slide_encoder {
            Some(c) => Some(SlideEncoder::new(backend, c.clone(), host, source)?),
            None => None,
        };
        Ok(Model {
            config,
            tile_encoder,
            slide_encoder,
            hash,
            tile_encoder_hash,
        })
    }
}

/// The names of a configuration's tile-encoder tensors.
pub fn tile_encoder_names(config: &ModelConfig) -> Vec<String> {
    tile_encoder::expected_shapes(config)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// A model's config.json text, parsed and validated; `path` names it in errors.
pub fn parse_config(text: &str, path: &Path) -> Result<ModelConfig, ModelError> {
    let config: ModelConfig = serde_json::from_str(text).map_err(|source| ModelError::ConfigJson {
        path: path.to_path_buf(),
        source,
    })?;
    config.validate().map_err(|source| ModelError::ConfigFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(config)
}

/// A config that asks for more parameters than the weight file has bytes is refused before
/// anything is allocated for them (a depth of 10^3 over a small file).
fn check_size(
    config: &ModelConfig,
    config_path: &Path,
    weight_bytes: u64,
    weights_path: &Path,
) -> Result<(), ModelError> {
    let floor = config.parameter_floor();
    if floor > weight_bytes {
        return Err(ModelError::TooFewParameters {
            config: config_path.to_path_buf(),
            weights: weights_path.to_path_buf(),
            floor,
            bytes: weight_bytes,
        });
    }
    Ok(())
}

/// A file's SHA-256, hex, streamed (a foundation model's weights can be gigabytes).
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex(hasher))
}

fn hex(hasher: Sha256) -> String {
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
