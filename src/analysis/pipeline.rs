//! One slide, stage by stage: tissue mask → tile grid at the model's MPP → tiles decoded in
//! parallel into a bounded queue that feeds stage 1 (decoding overlaps compute) → stage 2
//! over every token of the slide at once → a tumour probability per stage-2 token.

use crate::analysis::jpeg_tiles::read_jpeg_batch;

use crate::analysis::plan::{plan_tiles, read_tile, PlanError, Tile, TilePlan};
use crate::analysis::tissue::{detect_tissue, TissueMask, TissueOptions};
use crate::backend::{Backend, BackendError, DecoderSeconds, JpegBatch, TileDecoder};
use crate::model::tile_encoder::Encoded;
use crate::model::{Model, ModelError};
use crate::slide::mpp::{check_mpp, ImplausibleMpp};
use crate::slide::{Slide, SlideError};
use rayon::prelude::*;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Slide(#[from] SlideError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("the model has no slide encoder (stage 2), which `run` needs for its tumour probabilities")]
    NoSlideEncoder,
    #[error("{0} gave non-finite values (NaN or infinity): the model's weights or the tiles are broken")]
    NonFinite(&'static str),
    #[error("the slide's background is dark (median brightness {0} of 255): a fluorescence slide, not the brightfield H&E the model reads; pass --allow-dark-background to analyse it anyway")]
    DarkBackground(u8),
}

/// The pixel size (µm) of `slide`'s level 0 and where it came from: `given` (`--mpp`) when
/// there is one, else what the slide states. A slide that states none, or an implausible one
/// (a zero or a typo in its description), is refused with the advice to pass `--mpp`: with
/// a wrong size the tiles would be at the wrong scale, or there would be none.
pub fn slide_mpp(slide: &Slide, given: Option<f64>) -> Result<(f64, String), MppError> {
    if let Some(m) = given {
        return Ok((check_mpp(m).map_err(MppError::Given)?, "--mpp".to_string()));
    }
    // The reader reports only plausible sizes, and says why it dropped one.
    match (slide.mpp(), slide.mpp_problem()) {
        (Some(m), _) => Ok((m.x, m.source.clone())),
        (None, Some(problem)) => Err(MppError::Implausible(problem.to_string())),
        (None, None) => Err(MppError::Unstated),
    }
}

/// Why a slide's pixel size is not known.
#[derive(Debug, thiserror::Error)]
pub enum MppError {
    #[error("--mpp: {0}")]
    Given(ImplausibleMpp),
    /// The slide states one the reader does not believe (it says why).
    #[error("{0}; pass --mpp")]
    Implausible(String),
    #[error("the slide does not state its pixel size; pass --mpp")]
    Unstated,
}

/// `values` with nothing NaN or infinite, or which stage broke: checked once per stage.
pub fn check_finite(values: &[f32], stage: &'static str) -> Result<(), PipelineError> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(PipelineError::NonFinite(stage))
    }
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
    /// Decode JPEG tiles on the backend's device where it can (the GPU's JPEG decoder).
    pub decode_on_device: bool,
    /// Analyse slides whose background is dark (fluorescence) too; by default they are
    /// refused, since an H&E model says nothing meaningful about them.
    pub allow_dark_background: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            batch: 64,
            min_tissue: 0.25,
            tissue: TissueOptions::default(),
            keep_features: false,
            decode_on_device: true,
            allow_dark_background: false,
        }
    }
}

/// Where stage 1's tiles were decoded.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TileDecoding {
    /// The device's decoder, when there was one.
    pub device: Option<String>,
    pub tiles_on_device: usize,
    pub tiles: usize,
}

impl std::fmt::Display for TileDecoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.device {
            Some(d) if self.tiles_on_device == self.tiles && self.tiles > 0 => {
                write!(f, "{d}: all {} tiles", self.tiles)
            }
            Some(d) if self.tiles_on_device > 0 => {
                write!(
                    f,
                    "{d}: {} of {} tiles, the rest on the CPU",
                    self.tiles_on_device, self.tiles
                )
            }
            _ => write!(f, "CPU"),
        }
    }
}

/// Wall seconds of each stage. Reading overlaps stage 1: `read` is the time the reading
/// thread spent (reading stored tiles, and decoding them where the CPU does), `decode` the
/// time the placing threads spent decoding on the device or uploading (summed: they run at
/// once), `stage1` the time the encoder spent (waiting for tiles excluded).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StageSeconds {
    pub tissue: f64,
    pub read: f64,
    pub decode: f64,
    pub stage1: f64,
    /// Time stage 1's thread waited for decoded tiles (the device may meanwhile still be
    /// encoding the batches before).
    pub stage1_waiting: f64,
    /// Time the device sat idle between stage 1's batches: decoding starving the encoder.
    pub stage1_device_idle: f64,
    /// Of `decode`, on the device's decoders: in the decoding library's calls, and waiting
    /// for the device to finish their batches.
    pub decode_submit: f64,
    pub decode_device_wait: f64,
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
    pub tile_decoding: TileDecoding,
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

/// A logit as a probability.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// What [`encode_tiles`] does with each batch: its tiles and their encoding.
pub type OnBatch<'a, B> = dyn FnMut(&[Tile], &Encoded<<B as Backend>::Tensor>) -> Result<(), ModelError> + 'a;

/// A batch of tiles as the reading thread leaves it: stored JPEG tiles for the device's
/// decoder, or pixels the CPU decoded.
enum ReadBatch {
    Stored(JpegBatch),
    Decoded(Vec<u8>),
}

/// Reads a batch: its stored JPEG tiles when the device will decode them and the level
/// allows, else its pixels decoded by the CPU, in parallel.
fn read_batch(
    slide: &Slide,
    plan: &TilePlan,
    tiles: &[Tile],
    for_device: bool,
) -> Result<ReadBatch, SlideError> {
    if for_device {
        if let Some(batch) = read_jpeg_batch(slide, plan, tiles)? {
            return Ok(ReadBatch::Stored(batch));
        }
    }
    decode_on_cpu(slide, plan, tiles).map(ReadBatch::Decoded)
}

/// A batch's pixels, decoded by the CPU in parallel.
fn decode_on_cpu(slide: &Slide, plan: &TilePlan, tiles: &[Tile]) -> Result<Vec<u8>, SlideError> {
    let rgb = tiles
        .par_iter()
        .map(|tile| read_tile(slide, plan, tile))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rgb.concat())
}

/// Stage 1 over every tile of `plan`, `batch` tiles a forward pass, in threads passing each
/// batch on through queues one batch deep (so memory stays bounded whatever the slide's
/// size): one reads (stored JPEG tiles for the device's decoders when `decode_on_device` and
/// the backend has them, else pixels decoded by the CPU in parallel); one per device decoder
/// (or one, uploading) takes every n-th batch and places its pixels on the device; this one
/// encodes the batches in order. `on_batch` gets each batch's tiles and their encoding,
/// `progress(done, total)` follows. A batch the device does not decode (its decoder still
/// starting, or failing on the batch) is decoded by the CPU, which names any bad tile. Adds
/// the reading, decoding, encoding and waiting time to `seconds`; says where tiles were
/// decoded.
#[allow(clippy::too_many_arguments)]
pub fn encode_tiles<B: Backend>(
    slide: &Slide,
    plan: &TilePlan,
    model: &Model<B>,
    batch: usize,
    decode_on_device: bool,
    seconds: &mut StageSeconds,
    progress: &dyn Fn(usize, usize),
    on_batch: &mut OnBatch<B>,
) -> Result<TileDecoding, PipelineError> {
    use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
    let side = model.config.image_size;
    let backend = model.tile_encoder.backend();
    let chunks: &Vec<_> = &plan.tiles.chunks(batch.max(1)).collect();
    let decoders = if decode_on_device {
        backend.tile_decoders()
    } else {
        Vec::new()
    };
    let for_device = !decoders.is_empty();
    let device = decoders.first().map(|d| d.describe());
    // One placing thread per decoder, or one that uploads.
    let mut placers: Vec<Option<Box<dyn TileDecoder<B::Pixels>>>> = decoders.into_iter().map(Some).collect();
    if placers.is_empty() {
        placers.push(None);
    }
    let lanes = placers.len();
    type Lane<T> = (SyncSender<T>, Receiver<T>);
    let reads: Vec<Lane<Result<ReadBatch, SlideError>>> = (0..lanes).map(|_| sync_channel(1)).collect();
    let pixels: Vec<Lane<Result<B::Pixels, PipelineError>>> = (0..lanes).map(|_| sync_channel(1)).collect();
    let (read_txs, read_rxs): (Vec<_>, Vec<_>) = reads.into_iter().unzip();
    let (pixel_txs, pixel_rxs): (Vec<_>, Vec<_>) = pixels.into_iter().unzip();
    let mut decoding = TileDecoding {
        device,
        tiles_on_device: 0,
        tiles: plan.tiles.len(),
    };
    let (mut read_seconds, mut decode_seconds) = (0.0, 0.0);
    std::thread::scope(|scope| -> Result<(), PipelineError> {
        // Each receiver is owned by the thread reading it, so that a thread that stops early
        // drops it and unblocks the one feeding it.
        let reader = scope.spawn(move || {
            let mut spent = 0.0;
            for (i, chunk) in chunks.iter().enumerate() {
                let t = Instant::now();
                let read = read_batch(slide, plan, chunk, for_device);
                spent += t.elapsed().as_secs_f64();
                let failed = read.is_err();
                if read_txs[i % lanes].send(read).is_err() || failed {
                    break;
                }
            }
            spent
        });
        let workers: Vec<_> = placers
            .into_iter()
            .zip(read_rxs)
            .zip(pixel_txs)
            .enumerate()
            .map(|(lane, ((mut decoder, read_rx), pixel_tx))| {
                scope.spawn(move || {
                    let (mut spent, mut on_device) = (0.0, 0);
                    let mut lane_seconds = DecoderSeconds::default();
                    for chunk in chunks.iter().skip(lane).step_by(lanes) {
                        let Ok(read) = read_rx.recv() else { break };
                        let t = Instant::now();
                        let placed = place_batch(slide, plan, chunk, backend, read, decoder.as_deref_mut());
                        spent += t.elapsed().as_secs_f64();
                        let placed = placed.map(|(pixels, device)| {
                            on_device += if device { chunk.len() } else { 0 };
                            pixels
                        });
                        let failed = placed.is_err();
                        // A closed channel means the encoder stopped on an error: stop too.
                        if pixel_tx.send(placed).is_err() || failed {
                            break;
                        }
                    }
                    if let Some(decoder) = &decoder {
                        lane_seconds = decoder.seconds();
                    }
                    (spent, on_device, lane_seconds)
                })
            })
            .collect();
        let mut done = 0;
        let mut result = Ok(());
        for (i, chunk) in chunks.iter().enumerate() {
            let t = Instant::now();
            let Ok(pixels) = pixel_rxs[i % lanes].recv() else {
                break;
            };
            seconds.stage1_waiting += t.elapsed().as_secs_f64();
            let t = Instant::now();
            backend.mark_batch(true);
            let encoded =
                pixels.and_then(|p| Ok(model.tile_encoder.forward_pixels(&p, chunk.len(), side)?));
            if let Err(e) = encoded.and_then(|encoded| Ok(on_batch(chunk, &encoded)?)) {
                result = Err(e);
                break;
            }
            backend.mark_batch(false);
            seconds.stage1 += t.elapsed().as_secs_f64();
            done += chunk.len();
            progress(done, plan.tiles.len());
        }
        drop(pixel_rxs);
        seconds.stage1_device_idle += backend.idle_seconds();
        for worker in workers {
            let (spent, on_device, lane) = worker.join().unwrap_or_default();
            decode_seconds += spent;
            decoding.tiles_on_device += on_device;
            seconds.decode_submit += lane.submit;
            seconds.decode_device_wait += lane.device;
        }
        read_seconds = reader.join().unwrap_or(0.0);
        result
    })?;
    seconds.read += read_seconds;
    seconds.decode += decode_seconds;
    Ok(decoding)
}

/// A read batch's pixels where the backend computes: decoded by the device's `decoder`
/// (says so), else by the CPU and uploaded.
fn place_batch<B: Backend>(
    slide: &Slide,
    plan: &TilePlan,
    tiles: &[Tile],
    backend: &B,
    read: Result<ReadBatch, SlideError>,
    decoder: Option<&mut (dyn TileDecoder<B::Pixels> + 'static)>,
) -> Result<(B::Pixels, bool), PipelineError> {
    let stored = match (read?, decoder) {
        (ReadBatch::Decoded(rgb), _) => return Ok((backend.upload_pixels(&rgb)?, false)),
        (ReadBatch::Stored(batch), Some(decoder)) => decoder.decode(&batch).ok(),
        (ReadBatch::Stored(_), None) => None,
    };
    if let Some(pixels) = stored {
        return Ok((pixels, true));
    }
    let rgb = decode_on_cpu(slide, plan, tiles)?;
    Ok((backend.upload_pixels(&rgb)?, false))
}

/// A slide's tissue mask and tile grid: the CPU's work before the model runs, done for
/// the next slide of a batch while the GPU works on this one.
pub struct PlannedSlide {
    pub mpp: f64,
    pub mask: TissueMask,
    pub plan: TilePlan,
    /// Seconds spent on the mask and the grid.
    pub seconds: f64,
}

/// Median brightness below which a slide is taken for fluorescence: H&E tissue itself is
/// rarely darker than 100 on average, and brightfield slides are mostly glass.
const DARK_BACKGROUND: u8 = 80;

/// Finds `slide`'s tissue (level-0 pixels of `mpp` µm) and plans its tiles for a model
/// reading `tile_px`-px tiles of `model_mpp` µm: what `run`, `embed` and `train` all start
/// from. `tissue_filter` may edit the mask before tiles are planned (pen ink, regions of
/// interest). The tiles come in batch order for `options.batch` (raster order for 1).
pub fn plan_slide(
    slide: &Slide,
    mpp: f64,
    model_mpp: f64,
    tile_px: u32,
    options: &PipelineOptions,
    tissue_filter: &dyn Fn(&mut TissueMask),
) -> Result<PlannedSlide, PipelineError> {
    let t = Instant::now();
    let mut mask = detect_tissue(slide, mpp, &options.tissue)?;
    // Brightfield glass is near 240; a fluorescence slide's background near black.
    if mask.median_brightness < DARK_BACKGROUND && !options.allow_dark_background {
        return Err(PipelineError::DarkBackground(mask.median_brightness));
    }
    tissue_filter(&mut mask);
    let plan =
        plan_tiles(slide, mpp, model_mpp, tile_px, &mask, options.min_tissue)?.in_batch_order(options.batch);
    Ok(PlannedSlide {
        mpp,
        mask,
        plan,
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// Runs both stages over the tiles planned for `slide`; `progress(done, total)` after each
/// stage-1 batch.
pub fn analyse_planned<B: Backend>(
    slide: &Slide,
    planned: PlannedSlide,
    model: &Model<B>,
    options: &PipelineOptions,
    progress: &dyn Fn(usize, usize),
) -> Result<SlideAnalysis, PipelineError> {
    let slide_encoder = model
        .slide_encoder
        .as_ref()
        .ok_or(PipelineError::NoSlideEncoder)?;
    let c = &model.config;
    let PlannedSlide { mpp, mask, plan, .. } = planned;
    let mut seconds = StageSeconds {
        tissue: planned.seconds,
        ..Default::default()
    };

    let be = model.tile_encoder.backend();
    let mut features = Vec::new();
    let mut cells = Vec::with_capacity(plan.tiles.len());
    let mut tile_features = options.keep_features.then(Vec::new);
    let tile_decoding = encode_tiles(
        slide,
        &plan,
        model,
        options.batch,
        options.decode_on_device,
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
        // Stage 1's tokens: their mean is finite exactly when every one is (or nearly: a sum
        // overflowing f32 is as broken).
        check_finite(
            &be.download(&be.mean_rows(&all, 1, 0, cells.len())?)?,
            "stage 1 (the tile encoder)",
        )?;
        let positions: Vec<[f32; 2]> = cells.iter().map(|c| [c[0] as f32, c[1] as f32]).collect();
        let out = slide_encoder.forward(&all, &positions)?;
        (
            out.token_logits.into_iter().map(sigmoid).collect(),
            sigmoid(out.slide_logit),
        )
    };
    check_finite(&probabilities, "stage 2 (the slide encoder)")?;
    check_finite(&[slide_probability], "stage 2 (the slide encoder)")?;
    if let Some(features) = &tile_features {
        check_finite(features, "stage 1 (the tile encoder)")?;
    }
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
        feature_dim: c.feature_dim(),
        plan,
        seconds,
        tile_decoding,
    })
}
