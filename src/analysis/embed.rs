//! `flashslide embed`: the tile encoder's feature for every tissue tile of a slide (or for
//! one image of the model's input size).

use crate::analysis::pipeline::{
    encode_tiles, plan_slide, PipelineError, PipelineOptions, PlannedSlide, StageSeconds,
};
use crate::analysis::plan::PlanError;
use crate::backend::{Backend, BackendError};
use crate::model::{Model, ModelError};
use crate::slide::{Slide, SlideError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Slide(#[from] SlideError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("{}: {msg}", path.display())]
    Image { path: PathBuf, msg: String },
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
/// (decoding overlapped with encoding, as in `run`); `progress(done, total)` after each batch.
pub fn embed_slide<B: Backend>(
    slide: &Slide,
    mpp: f64,
    model: &Model<B>,
    batch: usize,
    min_tissue: f64,
    progress: &dyn Fn(usize, usize),
) -> Result<SlideEmbedding, EmbedError> {
    let c = &model.config;
    // Features are asked of any slide, fluorescence too: no refusal of dark backgrounds.
    let options = PipelineOptions {
        batch,
        min_tissue,
        allow_dark_background: true,
        ..PipelineOptions::default()
    };
    let PlannedSlide { plan, .. } = plan_slide(slide, mpp, c.mpp, c.image_size as u32, &options, &|_| {})?;
    let mut features = Vec::with_capacity(plan.tiles.len() * c.feature_dim());
    let be = model.tile_encoder.backend();
    let mut seconds = StageSeconds::default();
    encode_tiles(
        slide,
        &plan,
        model,
        batch,
        true,
        &mut seconds,
        progress,
        &mut |_, encoded| {
            features.extend(be.download(&encoded.pooled)?);
            Ok(())
        },
    )?;
    crate::analysis::pipeline::check_finite(&features, "stage 1 (the tile encoder)")?;
    Ok(SlideEmbedding {
        features,
        dim: c.feature_dim(),
        coords: plan.tiles.iter().map(|t| [t.x, t.y]).collect(),
        tile_level0: plan.tile_level0,
        mpp,
    })
}

/// The feature of one ordinary image (PNG, JPEG): square, its side a multiple of the patch
/// size (the model's input size, or another the position embedding is resampled to).
pub fn embed_image<B: Backend>(path: &Path, model: &Model<B>) -> Result<Vec<f32>, EmbedError> {
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
    let encoded = model.tile_encoder.forward(img.as_raw(), 1, w as usize)?;
    let feature = model.tile_encoder.backend().download(&encoded.pooled)?;
    crate::analysis::pipeline::check_finite(&feature, "stage 1 (the tile encoder)")?;
    Ok(feature)
}
