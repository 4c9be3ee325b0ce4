//! `flashslide embed`: the tile encoder's feature for every tissue tile of a slide (or for
//! one image of the model's input size).

use crate::grid::{plan_tiles, read_tile, GridError};
use crate::model::config::ModelConfig;
use crate::model::tile_encoder::TileEncoder;
use crate::model::ModelError;
use crate::slide::{Slide, SlideError};
use crate::tissue::{detect_tissue, TissueOptions};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A model directory: config.json and model.safetensors.
pub struct Model {
    pub config: ModelConfig,
    pub encoder: TileEncoder,
    /// SHA-256 of model.safetensors, hex.
    pub hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Slide(#[from] SlideError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Grid(#[from] GridError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: the slide does not state its pixel size; pass --mpp", .0.display())]
    NoMpp(PathBuf),
    #[error("{}: {msg}", path.display())]
    Image { path: PathBuf, msg: String },
}

pub fn load_model(dir: &Path) -> Result<Model, EmbedError> {
    let io = |path: PathBuf| move |source| EmbedError::Io { path, source };
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(io(config_path.clone()))?;
    let config: ModelConfig = serde_json::from_str(&text)
        .map_err(|e| ModelError::Config(format!("{}: {e}", config_path.display())))?;
    let weights = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights).map_err(io(weights.clone()))?;
    let hash = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let encoder = TileEncoder::load(config.clone(), &weights)?;
    Ok(Model {
        config,
        encoder,
        hash,
    })
}

/// Features of a slide's tissue tiles.
pub struct SlideEmbedding {
    /// [N, D], row by row.
    pub features: Vec<f32>,
    pub dim: usize,
    /// Each tile's top-left (x, y) in level-0 pixels.
    pub coords: Vec<[i64; 2]>,
    /// A tile's side in level-0 pixels.
    pub tile_level0: f64,
    pub mpp: f64,
}

/// Encodes every tissue tile of `slide` (level-0 pixels of `mpp` µm), `batch` tiles at a time
/// (tiles of a batch are read in parallel); `progress(done, total)` after each batch.
pub fn embed_slide(
    slide: &Slide,
    mpp: f64,
    model: &Model,
    batch: usize,
    min_tissue: f64,
    progress: &dyn Fn(usize, usize),
) -> Result<SlideEmbedding, EmbedError> {
    let c = &model.config;
    let mask = detect_tissue(slide, mpp, &TissueOptions::default())?;
    let plan = plan_tiles(slide, mpp, c.mpp, c.image_size as u32, &mask, min_tissue)?;
    let mut features = Vec::with_capacity(plan.tiles.len() * c.width);
    for (i, chunk) in plan.tiles.chunks(batch.max(1)).enumerate() {
        let pixels: Vec<Vec<u8>> = chunk
            .par_iter()
            .map(|t| read_tile(slide, &plan, t))
            .collect::<Result<_, _>>()?;
        let encoded = model
            .encoder
            .forward(&pixels.concat(), chunk.len(), c.image_size)?;
        features.extend(
            encoded
                .pooled
                .flatten_all()
                .map_err(ModelError::from)?
                .to_vec1::<f32>()
                .map_err(ModelError::from)?,
        );
        progress(
            (i * batch.max(1) + chunk.len()).min(plan.tiles.len()),
            plan.tiles.len(),
        );
    }
    Ok(SlideEmbedding {
        features,
        dim: c.width,
        coords: plan.tiles.iter().map(|t| [t.x, t.y]).collect(),
        tile_level0: plan.tile_level0,
        mpp,
    })
}

/// The feature of one ordinary image (PNG, JPEG): square, its side a multiple of the patch
/// size (the model's input size, or another the position embedding is resampled to).
pub fn embed_image(path: &Path, model: &Model) -> Result<Vec<f32>, EmbedError> {
    let bad = |msg: String| EmbedError::Image {
        path: path.to_path_buf(),
        msg,
    };
    let img = image::open(path).map_err(|e| bad(e.to_string()))?.to_rgb8();
    let (w, h) = img.dimensions();
    let p = model.config.patch_size as u32;
    if w != h || w % p != 0 {
        return Err(bad(format!(
            "image is {w}x{h}; the model takes square images whose side is a multiple of {p} (trained on {0}x{0})",
            model.config.image_size
        )));
    }
    let encoded = model.encoder.forward(img.as_raw(), 1, w as usize)?;
    Ok(encoded
        .pooled
        .flatten_all()
        .map_err(ModelError::from)?
        .to_vec1::<f32>()
        .map_err(ModelError::from)?)
}
