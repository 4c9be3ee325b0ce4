//! Training on an annotated cohort (issue 7). Stage 1 (here), on the CPU through the
//! differentiable backend: the tile encoder with a linear head learns each tile's tumour fraction
//! (binary cross-entropy on soft labels), AdamW with warm-up and cosine decay, dihedral
//! augmentation, hard-negative mining (benign tissue that looks like tumour — germinal
//! centres, histiocytes — is what costs false positives, as CAMELYON16's winners found),
//! validation on held-out slides, checkpoints written atomically, the same seed giving the
//! same weights. Stage 2 ([`slide_stage`]): the slide encoder on the tokens of the trained
//! (or a frozen) tile encoder, through the hand-written backward pass of [`backprop`], on
//! the CPU or a GPU.

pub mod backprop;
pub mod data;
mod error;
pub mod feature_reuse;
pub mod lesion_score;
pub mod slide_stage;
pub mod token_cache;
pub mod whole_image;

pub use error::TrainError;

use crate::backend::autodiff::AutodiffBackend;
use crate::eval::auroc::auroc;
use crate::model::config::ModelConfig;
use crate::model::tile_encoder::{expected_shapes, TileEncoder};
use crate::util::rng::Rng;
use candle_core::{DType, Device, Tensor, Var};
use data::{Cohort, TileSet};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct TrainOptions {
    pub out: PathBuf,
    pub config: ModelConfig,
    pub steps: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Validate and write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
    /// Stage 2: the gradients' global norm clipped to this before each step.
    pub max_grad_norm: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Checkpoint {
    pub step: usize,
    /// Mean training loss since the last checkpoint.
    pub train_loss: f64,
    pub validation_loss: Option<f64>,
    /// Tiles at least half tumour against the rest (stage 1); tokens inside a lesion against
    /// the rest (stage 2).
    pub validation_auroc: Option<f64>,
    /// Stage 2: the validation slides' lesion-level FROC, as `evaluate` scores a run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_froc: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TrainLog {
    pub train_slides: Vec<String>,
    pub validation_slides: Vec<String>,
    pub train_tiles: usize,
    pub validation_tiles: usize,
    pub seed: u64,
    pub checkpoints: Vec<Checkpoint>,
}

/// Fractions of training after which every tumour-free training tile is scored and the
/// highest-scoring quarter becomes the hard negatives.
const MINING_AT: [f64; 2] = [0.3, 0.6];
/// Once mined, the share of each batch drawn from the hard negatives.
const HARD_SHARE: f64 = 0.25;

/// The checkpoint of stage 1 in `out`: the tile encoder's tensors (timm names) and the head.
pub const TILE_STAGE_FILE: &str = "tile_stage.safetensors";

/// Trains the tile encoder on `cohort`; `progress(step, loss)` after each step.
pub fn train_tile_encoder(
    cohort: &Cohort,
    o: &TrainOptions,
    progress: &dyn Fn(usize, f64),
) -> Result<TrainLog, TrainError> {
    let be = AutodiffBackend::default();
    let encoder = TileEncoder::random_trainable(&be, o.config.clone())?;
    let width = o.config.width;
    let head_w = Var::zeros((1, width), DType::F32, &Device::Cpu)?;
    let head_b = Var::zeros((1, 1), DType::F32, &Device::Cpu)?;
    let mut params = trainable(encoder.weights().named())?;
    params.push(("tile_head.weight".into(), head_w.clone()));
    params.push(("tile_head.bias".into(), head_b.clone()));
    let mut optimiser = AdamW::new(&params, o.weight_decay)?;
    let shapes: HashMap<String, Vec<usize>> = expected_shapes(&o.config).into_iter().collect();

    let side = o.config.image_size;
    let logits = |pixels: &[u8], n: usize| -> Result<Tensor, TrainError> {
        let pooled = encoder.forward(pixels, n, side)?.pooled;
        Ok(pooled
            .matmul(&head_w.as_tensor().t()?)?
            .broadcast_add(head_b.as_tensor())?)
    };
    let mut rng = Rng::new(o.seed);
    let mut order: Vec<usize> = (0..cohort.train.len()).collect();
    let mut cursor = order.len();
    let mut log = TrainLog {
        train_slides: cohort.train_slides.clone(),
        validation_slides: cohort.validation_slides.clone(),
        train_tiles: cohort.train.len(),
        validation_tiles: cohort.validation.len(),
        seed: o.seed,
        checkpoints: Vec::new(),
    };
    if cohort.train.is_empty() {
        return Err(TrainError::NoTrainingTiles);
    }
    let negatives: Vec<usize> = (0..cohort.train.len())
        .filter(|&i| cohort.train.labels[i] == 0.0)
        .collect();
    let mining_steps: Vec<usize> = MINING_AT
        .iter()
        .map(|f| (f * o.steps as f64).round() as usize)
        .collect();
    let mut hard: Vec<usize> = Vec::new();
    let mut meter = CheckpointMeter::new(o);
    for step in 1..=o.steps {
        if mining_steps.contains(&step) {
            hard = hardest_quarter(&cohort.train, &negatives, &logits)?;
        }
        let mut pixels = Vec::with_capacity(o.batch * side * side * 3);
        let mut labels = Vec::with_capacity(o.batch);
        for _ in 0..o.batch {
            let i = if !hard.is_empty() && rng.chance(HARD_SHARE) {
                hard[rng.int(0, hard.len() as i64 - 1) as usize]
            } else {
                if cursor == order.len() {
                    rng.shuffle(&mut order);
                    cursor = 0;
                }
                cursor += 1;
                order[cursor - 1]
            };
            pixels.extend(dihedral(&cohort.train.tile(i)?, side, 3, rng.int(0, 7) as u8));
            labels.push(cohort.train.labels[i]);
        }
        let z = logits(&pixels, o.batch)?;
        let loss = bce_with_logits(&z, &labels)?;
        let value = step_on_mean(
            &mut optimiser,
            &params,
            vec![loss],
            schedule(o.learning_rate, step, o.steps),
        )?;
        progress(step, value);
        if let Some(train_loss) = meter.record(step, value) {
            let (validation_loss, validation_auroc) = validate(&cohort.validation, &logits)?;
            log.checkpoints.push(Checkpoint {
                step,
                train_loss,
                validation_loss,
                validation_auroc,
                validation_froc: None,
            });
            save(&o.out, &params, &shapes, &log)?;
        }
    }
    Ok(log)
}

/// The mean training loss between checkpoints, and the steps they fall on: every
/// `checkpoint_every` steps and the last.
struct CheckpointMeter {
    sum: f64,
    count: usize,
    every: usize,
    steps: usize,
}

impl CheckpointMeter {
    fn new(o: &TrainOptions) -> CheckpointMeter {
        CheckpointMeter {
            sum: 0.0,
            count: 0,
            every: o.checkpoint_every.max(1),
            steps: o.steps,
        }
    }

    /// Records a step's loss; at a checkpoint, the mean loss since the previous one.
    fn record(&mut self, step: usize, loss: f64) -> Option<f64> {
        self.sum += loss;
        self.count += 1;
        if step % self.every != 0 && step != self.steps {
            return None;
        }
        let mean = self.sum / self.count as f64;
        (self.sum, self.count) = (0.0, 0);
        Some(mean)
    }
}

/// Tiles (RGB bytes, how many) to their head's logits `[n, 1]`.
type Logits<'a> = dyn Fn(&[u8], usize) -> Result<Tensor, TrainError> + 'a;

/// The quarter of `candidates` (indices into `set`) the current weights score highest.
fn hardest_quarter(set: &TileSet, candidates: &[usize], logits: &Logits) -> Result<Vec<usize>, TrainError> {
    let mut scored: Vec<(f32, usize)> = Vec::with_capacity(candidates.len());
    for chunk in candidates.chunks(32) {
        let z = logits(&set.pixels(chunk)?, chunk.len())?
            .detach()
            .flatten_all()?
            .to_vec1::<f32>()?;
        scored.extend(z.into_iter().zip(chunk.iter().copied()));
    }
    // Ties broken by index, so the same seed mines the same tiles.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.truncate(candidates.len().div_ceil(4));
    Ok(scored.into_iter().map(|(_, i)| i).collect())
}

/// Validation loss and AUROC, in batches of 32 tiles.
fn validate(set: &TileSet, logits: &Logits) -> Result<(Option<f64>, Option<f64>), TrainError> {
    if set.is_empty() {
        return Ok((None, None));
    }
    let mut scores = Vec::with_capacity(set.len());
    let mut loss = 0.0;
    for start in (0..set.len()).step_by(32) {
        let end = (start + 32).min(set.len());
        let indices: Vec<usize> = (start..end).collect();
        let z = logits(&set.pixels(&indices)?, end - start)?.detach();
        loss +=
            bce_with_logits(&z, &set.labels[start..end])?.to_scalar::<f32>()? as f64 * (end - start) as f64;
        scores.extend(z.flatten_all()?.to_vec1::<f32>()?);
    }
    let positive: Vec<bool> = set.labels.iter().map(|&l| l >= 0.5).collect();
    Ok((Some(loss / set.len() as f64), auroc(&scores, &positive)))
}

/// Mean binary cross-entropy of logits `z` (`[n, 1]`) against soft labels, in the stable
/// form max(z, 0) − z·y + log(1 + e^−|z|).
fn bce_with_logits(z: &Tensor, labels: &[f32]) -> candle_core::Result<Tensor> {
    let y = Tensor::from_slice(labels, (labels.len(), 1), &Device::Cpu)?;
    let softplus = (z.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    (softplus - (z * y)?)?.mean_all()
}

/// The loss of one sequence of scored tokens: their cross-entropy against their labels plus
/// a tenth of the slide logit's against "any tumour among them".
fn token_and_slide_loss(
    tokens: &Tensor,
    slide_logit: &Tensor,
    labels: &[f32],
) -> candle_core::Result<Tensor> {
    let any = if labels.iter().any(|&l| l > 0.0) { 1.0 } else { 0.0 };
    bce_with_logits(tokens, labels)? + (bce_with_logits(slide_logit, &[any])? * 0.1)?
}

/// One optimiser step at learning rate `lr` on the mean of `losses` (scalars); returns the
/// mean's value.
fn step_on_mean(
    optimiser: &mut AdamW,
    params: &[(String, Var)],
    losses: Vec<Tensor>,
    lr: f64,
) -> Result<f64, TrainError> {
    if losses.is_empty() {
        return Err(TrainError::EmptyBatch);
    }
    let n = losses.len() as f64;
    let mut step = || -> candle_core::Result<f64> {
        let loss = (Tensor::stack(&losses, 0)?.sum_all()? / n)?;
        let grads = loss.backward()?;
        optimiser.step(params, &grads, lr)?;
        Ok(loss.to_scalar::<f32>()? as f64)
    };
    Ok(step()?)
}

/// Learning rate at `step` of `steps`: linear warm-up over the first 5%, then cosine decay
/// to a tenth.
fn schedule(peak: f64, step: usize, steps: usize) -> f64 {
    let warmup = (steps / 20).max(1);
    if step <= warmup {
        return peak * step as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (steps - warmup).max(1) as f64;
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

/// One of the 8 flips and quarter turns (`k` in 0..8) of a square `side` × `side` image of
/// `channels` values per pixel: tissue has no up or left.
fn dihedral<T: Copy + Default>(tile: &[T], side: usize, channels: usize, k: u8) -> Vec<T> {
    let mut out = vec![T::default(); tile.len()];
    for y in 0..side {
        for x in 0..side {
            let (sx, sy) = match k % 4 {
                0 => (x, y),
                1 => (y, side - 1 - x),
                2 => (side - 1 - x, side - 1 - y),
                _ => (side - 1 - y, x),
            };
            let sx = if k >= 4 { side - 1 - sx } else { sx };
            out[(y * side + x) * channels..][..channels]
                .copy_from_slice(&tile[(sy * side + sx) * channels..][..channels]);
        }
    }
    out
}

/// AdamW (decoupled weight decay, on matrices only: not on biases, norms or embeddings'
/// single rows).
struct AdamW {
    moments: Vec<(Tensor, Tensor)>,
    decays: Vec<bool>,
    weight_decay: f64,
    t: i32,
}

impl AdamW {
    const BETAS: (f64, f64) = (0.9, 0.999);
    const EPS: f64 = 1e-8;

    fn new(params: &[(String, Var)], weight_decay: f64) -> candle_core::Result<AdamW> {
        Ok(AdamW {
            moments: params
                .iter()
                .map(|(_, v)| Ok((v.zeros_like()?, v.zeros_like()?)))
                .collect::<candle_core::Result<_>>()?,
            decays: params
                .iter()
                .map(|(name, v)| name.ends_with("weight") && !name.contains("norm") && v.dims()[0] > 1)
                .collect(),
            weight_decay,
            t: 0,
        })
    }

    fn step(
        &mut self,
        params: &[(String, Var)],
        grads: &candle_core::backprop::GradStore,
        lr: f64,
    ) -> candle_core::Result<()> {
        self.t += 1;
        let (b1, b2) = Self::BETAS;
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        for (((_, var), (m, v)), &decay) in params.iter().zip(&mut self.moments).zip(&self.decays) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            *m = ((&*m * b1)? + (g * (1.0 - b1))?)?;
            *v = ((&*v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&*m / c1)? / ((&*v / c2)?.sqrt()? + Self::EPS)?)?;
            let w = var.as_tensor().detach();
            let decayed = if decay {
                (&w * (1.0 - lr * self.weight_decay))?
            } else {
                w
            };
            var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(())
    }
}

/// The weights as variables the optimiser updates, by name.
fn trainable(named: Vec<(&str, &Tensor)>) -> candle_core::Result<Vec<(String, Var)>> {
    named
        .into_iter()
        .map(|(name, t)| Ok((name.to_string(), Var::from_tensor(t)?)))
        .collect()
}

/// Writes `tensors` to `path` under a temporary name, then renames it into place.
fn save_safetensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<(), TrainError> {
    let partial = crate::util::atomic::partial_path(path);
    candle_core::safetensors::save(tensors, &partial).map_err(|source| TrainError::Safetensors {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::rename(&partial, path).map_err(TrainError::write(path))
}

/// Writes the checkpoint and the log, each under a temporary name then renamed.
fn save(
    out: &Path,
    params: &[(String, Var)],
    shapes: &HashMap<String, Vec<usize>>,
    log: &TrainLog,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(out).map_err(TrainError::write(out))?;
    // In the shapes a model directory holds them (weights live as matrices here).
    let tensors: HashMap<String, Tensor> = params
        .iter()
        .map(|(name, v)| {
            let t = v.as_tensor().detach();
            let t = match shapes.get(name) {
                Some(shape) => t.reshape(shape.as_slice())?,
                None => t,
            };
            Ok((name.clone(), t))
        })
        .collect::<candle_core::Result<_>>()?;
    save_safetensors(&tensors, &out.join(TILE_STAGE_FILE))?;
    let text = serde_json::to_vec_pretty(log)?;
    let log_path = out.join("train_log.json");
    crate::util::atomic::write_bytes(&log_path, &text).map_err(TrainError::write(&log_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eight_dihedral_variants_are_distinct_and_invertible() {
        let side = 3;
        let tile: Vec<u8> = (0..side * side * 3).map(|i| i as u8).collect();
        let variants: Vec<Vec<u8>> = (0..8).map(|k| dihedral(&tile, side, 3, k)).collect();
        for (i, a) in variants.iter().enumerate() {
            for b in &variants[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Four quarter turns come back.
        let mut t = tile.clone();
        for _ in 0..4 {
            t = dihedral(&t, side, 3, 1);
        }
        assert_eq!(t, tile);
    }

    #[test]
    fn checkpoints_fall_every_n_steps_and_on_the_last_with_the_mean_loss_since() {
        let mut meter = CheckpointMeter {
            sum: 0.0,
            count: 0,
            every: 2,
            steps: 5,
        };
        let got: Vec<Option<f64>> = (1..=5).map(|step| meter.record(step, step as f64)).collect();
        assert_eq!(got, vec![None, Some(1.5), None, Some(3.5), Some(5.0)]);
    }

    #[test]
    fn schedule_warms_up_then_decays_to_a_tenth() {
        assert!((schedule(1.0, 1, 100) - 0.2).abs() < 1e-12);
        assert!((schedule(1.0, 5, 100) - 1.0).abs() < 1e-12);
        assert!((schedule(1.0, 100, 100) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn bce_matches_its_definition() {
        let z = Tensor::from_slice(&[0.0f32, 2.0, -3.0], (3, 1), &Device::Cpu).unwrap();
        let got = bce_with_logits(&z, &[1.0, 0.0, 0.25])
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let bce = |z: f64, y: f64| {
            let p = 1.0 / (1.0 + (-z).exp());
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        };
        let want = (bce(0.0, 1.0) + bce(2.0, 0.0) + bce(-3.0, 0.25)) / 3.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}
