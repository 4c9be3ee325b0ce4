//! One slide, stage by stage: tissue mask → tile grid at the model's MPP → tiles decoded in
//! parallel into a bounded queue that feeds stage 1 (decoding overlaps compute) → stage 2
//! over every token of the slide at once → a tumour probability per stage-2 token.

use crate::backend::Backend;
use crate::grid::{plan_tiles, read_tile, GridError, Tile, TilePlan};
use crate::model::tile_encoder::Encoded;
use crate::model::{Model, ModelError};
use crate::slide::{Slide, SlideError};
use crate::tissue::{detect_tissue, TissueMask, TissueOptions};
use rayon::prelude::*;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Slide(#[from] SlideError),
    #[error(transparent)]
    Grid(#[from] GridError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the model has no slide encoder (stage 2), which `run` needs for its tumour probabilities")]
    NoSlideEncoder,
}

#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Tiles per stage-1 forward pass.
    pub batch: usize,
    /// Keep tiles with at least this fraction of tissue.
    pub min_tissue: f64,
    pub tissue: TissueOptions,
    /// Keep each tile's pooled stage-1 feature (for `--features`).
    pub keep_features: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            batch: 64,
            min_tissue: 0.25,
            tissue: TissueOptions::default(),
            keep_features: false,
        }
    }
}

/// Wall seconds of each stage. Reading overlaps stage 1: `read` is the time the decoding
/// thread spent, `stage1` the time the encoder spent (waiting for tiles excluded).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StageSeconds {
    pub tissue: f64,
    pub read: f64,
    pub stage1: f64,
    /// Time stage 1 waited for decoded tiles: decoding starving the encoder.
    pub stage1_waiting: f64,
    pub stage2: f64,
}

/// What the model says about one slide.
pub struct SlideAnalysis {
    pub mpp: f64,
    pub mask: TissueMask,
    pub plan: TilePlan,
    /// Stage-2 tokens per tile side (1: one token per tile).
    pub tokens_per_tile_side: usize,
    /// Each token's grid (row, column), in token units; token (r, c) covers level-0 pixels
    /// [c·s, (c+1)·s) × [r·s, (r+1)·s) with s = `token_level0()`.
    pub token_cells: Vec<[u32; 2]>,
    /// Tumour probability per token.
    pub probabilities: Vec<f32>,
    pub slide_probability: f32,
    /// Pooled stage-1 feature per tile ([tiles, D]), when asked for.
    pub tile_features: Option<Vec<f32>>,
    pub feature_dim: usize,
    pub seconds: StageSeconds,
}

impl SlideAnalysis {
    /// A token's side in level-0 pixels.
    pub fn token_level0(&self) -> f64 {
        self.plan.tile_level0 / self.tokens_per_tile_side as f64
    }

    /// Token rows and columns covering the slide.
    pub fn token_grid(&self) -> (u32, u32) {
        let g = self.tokens_per_tile_side as u32;
        (self.plan.rows * g, self.plan.cols * g)
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// What [`encode_tiles`] does with each batch: its tiles and their encoding.
pub type OnBatch<'a, B> = dyn FnMut(&[Tile], &Encoded<<B as Backend>::Tensor>) -> Result<(), ModelError> + 'a;

/// Stage 1 over every tile of `plan`, `batch` tiles a forward pass: a decoder thread reads
/// the tiles of the coming batches in parallel into a bounded queue (two batches ahead, so
/// memory stays bounded whatever the slide's size) while the encoder works; `on_batch` gets
/// each batch's tiles and their encoding, `progress(done, total)` follows. Adds the decoding,
/// encoding and waiting time to `seconds`.
pub fn encode_tiles<B: Backend>(
    slide: &Slide,
    plan: &TilePlan,
    model: &Model<B>,
    batch: usize,
    seconds: &mut StageSeconds,
    progress: &dyn Fn(usize, usize),
    on_batch: &mut OnBatch<B>,
) -> Result<(), PipelineError> {
    let side = model.config.image_size;
    let chunks: Vec<_> = plan.tiles.chunks(batch.max(1)).collect();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<u8>, SlideError>>(2);
    let mut read_seconds = 0.0;
    std::thread::scope(|scope| -> Result<(), PipelineError> {
        // Owned here, so that an early return drops it and unblocks the decoder.
        let rx = rx;
        let decoder = scope.spawn(|| {
            let mut spent = 0.0;
            for chunk in &chunks {
                let t = Instant::now();
                let pixels = chunk
                    .par_iter()
                    .map(|tile| read_tile(slide, plan, tile))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|tiles| tiles.concat());
                spent += t.elapsed().as_secs_f64();
                let failed = pixels.is_err();
                // A closed channel means the encoder stopped on an error: stop too.
                if tx.send(pixels).is_err() || failed {
                    break;
                }
            }
            drop(tx);
            spent
        });
        let mut done = 0;
        for chunk in &chunks {
            let t = Instant::now();
            let Ok(pixels) = rx.recv() else { break };
            seconds.stage1_waiting += t.elapsed().as_secs_f64();
            let pixels = pixels?;
            let t = Instant::now();
            let encoded = model.tile_encoder.forward(&pixels, chunk.len(), side)?;
            on_batch(chunk, &encoded)?;
            seconds.stage1 += t.elapsed().as_secs_f64();
            done += chunk.len();
            progress(done, plan.tiles.len());
        }
        drop(rx);
        read_seconds = decoder.join().unwrap_or(0.0);
        Ok(())
    })?;
    seconds.read += read_seconds;
    Ok(())
}

/// Runs both stages over `slide` (level-0 pixels of `mpp` µm). `tissue_filter` may edit
/// the tissue mask before tiles are planned (pen ink, regions of interest);
/// `progress(done, total)` after each stage-1 batch.
pub fn analyse_slide<B: Backend>(
    slide: &Slide,
    mpp: f64,
    model: &Model<B>,
    options: &PipelineOptions,
    tissue_filter: &dyn Fn(&mut TissueMask),
    progress: &dyn Fn(usize, usize),
) -> Result<SlideAnalysis, PipelineError> {
    let slide_encoder = model
        .slide_encoder
        .as_ref()
        .ok_or(PipelineError::NoSlideEncoder)?;
    let c = &model.config;
    let mut seconds = StageSeconds::default();
    let t = Instant::now();
    let mut mask = detect_tissue(slide, mpp, &options.tissue)?;
    tissue_filter(&mut mask);
    let plan = plan_tiles(slide, mpp, c.mpp, c.image_size as u32, &mask, options.min_tissue)?;
    seconds.tissue = t.elapsed().as_secs_f64();

    let be = model.tile_encoder.backend();
    let mut features = Vec::new();
    let mut cells = Vec::with_capacity(plan.tiles.len());
    let mut tile_features = options.keep_features.then(Vec::new);
    encode_tiles(
        slide,
        &plan,
        model,
        options.batch,
        &mut seconds,
        progress,
        &mut |chunk, encoded| {
            let positions: Vec<[u32; 2]> = chunk.iter().map(|t| [t.row, t.col]).collect();
            let (f, p) = slide_encoder.tokens_from_tiles(c, encoded, &positions)?;
            if let Some(all) = tile_features.as_mut() {
                all.extend(be.download(&encoded.pooled)?);
            }
            features.push(f);
            cells.extend(p.iter().map(|p| [p[0] as u32, p[1] as u32]));
            Ok(())
        },
    )?;

    let t = Instant::now();
    let (probabilities, slide_probability) = if cells.is_empty() {
        (Vec::new(), 0.0)
    } else {
        let all = be.concat_rows(&features)?;
        drop(features);
        let positions: Vec<[f32; 2]> = cells.iter().map(|c| [c[0] as f32, c[1] as f32]).collect();
        let out = slide_encoder.forward(&all, &positions)?;
        (
            out.token_logits.into_iter().map(sigmoid).collect(),
            sigmoid(out.slide_logit),
        )
    };
    seconds.stage2 = t.elapsed().as_secs_f64();
    Ok(SlideAnalysis {
        mpp,
        mask,
        tokens_per_tile_side: slide_encoder
            .config
            .group_patches
            .map_or(1, |k| c.patches_per_side() / k),
        token_cells: cells,
        probabilities,
        slide_probability,
        tile_features,
        feature_dim: c.width,
        plan,
        seconds,
    })
}
