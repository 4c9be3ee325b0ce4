//! Stage 2: the slide encoder learns each stage-2 token's tumour label from the trained tile
//! encoder's tokens. Every tissue tile of every slide is encoded once (as `run` does, on the
//! device asked for); steps then draw crops of a slide's token grid (half of them
//! around a tumour token when the slide has one), and the loss is the tokens'
//! cross-entropy plus a tenth of the crop-level one on the slide head, its gradients from
//! [`super::backprop`] on the CPU or a GPU. Validation runs the current weights over whole
//! held-out slides, as `run` will.

use super::backprop::{crop_gradients, Crop, Grads, Params};
use super::data::{open_annotated, AnnotatedSlide};
use super::feature_reuse::FeatureFiles;
use super::lesion_score::{self, LesionTruth};
use super::token_cache::{self, TokenCache, Tokens};
use super::{save_safetensors, schedule, Checkpoint, CheckpointMeter, TrainError, TrainOptions};
use crate::analysis::pipeline::{encode_tiles, sigmoid, StageSeconds};
use crate::backend::grad::Gradients;
use crate::backend::Backend;
use crate::eval::auroc::auroc;
use crate::model::slide_encoder::SlideEncoder;
use crate::model::tile_encoder::TileEncoder;
use crate::model::weights::HostTensor;
use crate::model::Model;
use crate::slide::fingerprint::fingerprint;
use crate::util::rng::Rng;
use candle_core::{Device, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// One slide's stage-2 tokens: features `[n, dim]`, grid cells (row, column), labels, and
/// the lesions they were labelled from (validation scores detections against them).
pub struct SlideTokens {
    pub features: Vec<f32>,
    pub cells: Vec<[f32; 2]>,
    pub labels: Vec<f32>,
    pub lesions: LesionTruth,
    pub from: TokenSource,
}

/// Where a slide's tokens came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// Kept by an earlier training ([`TokenCache`]).
    Kept,
    /// A features file `run --features` or `embed` wrote ([`FeatureFiles`]).
    FeaturesFile(std::path::PathBuf),
    /// Every tissue tile encoded now.
    Encoded,
}

/// The slide at `path`'s stage-2 tokens, labelled from its annotations: taken from `cache`
/// where it holds them, else from a features file of `reuse` that holds them, else made by
/// encoding every tissue tile; kept in `cache` when not taken from there.
pub fn slide_tokens<B: Backend>(
    path: &Path,
    model: &Model<B>,
    cache: Option<&TokenCache>,
    reuse: &FeatureFiles,
) -> Result<SlideTokens, TrainError> {
    let c = &model.config;
    let slide_encoder = model.slide_encoder.as_ref().expect("built with a slide encoder");
    let AnnotatedSlide {
        slide, truth, plan, ..
    } = open_annotated(path, c.mpp, c.image_size as u32)?;
    let per_side = slide_encoder
        .config
        .group_patches
        .map_or(1, |k| c.patches_per_side() / k);
    let token = plan.tile_level0 / per_side as f64;
    let dim = slide_encoder.config.input_dim;
    let from_file = || -> Option<(Tokens, TokenSource)> {
        let recipe = &cache?.recipe;
        let print = fingerprint(path).ok()?;
        let (tokens, file) = reuse.tokens(&print, &plan, recipe, dim)?;
        Some((tokens, TokenSource::FeaturesFile(file.to_path_buf())))
    };
    let (tokens, from) = match cache.and_then(|cache| cache.read(path)) {
        Some(kept) => (kept, TokenSource::Kept),
        None => {
            let (made, from) = match from_file() {
                Some(found) => found,
                None => (encode_tokens(path, &slide, &plan, model)?, TokenSource::Encoded),
            };
            if let Some(cache) = cache {
                let file = token_cache::cache_file(&cache.dir, path);
                cache.write(path, &made, dim).map_err(TrainError::write(&file))?;
            }
            (made, from)
        }
    };
    let labels = tokens
        .cells
        .iter()
        .map(|cell| {
            let (x, y) = ((cell[1] as f64 + 0.5) * token, (cell[0] as f64 + 0.5) * token);
            let inside = truth.lesions.iter().any(|l| l.outline.contains(x, y));
            if inside {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    Ok(SlideTokens {
        features: tokens.features,
        cells: tokens.cells,
        labels,
        lesions: LesionTruth {
            truth,
            token_level0: token,
        },
        from,
    })
}

/// Every tissue tile of the planned slide through the tile encoder, grouped into stage-2
/// tokens as `run` groups them.
fn encode_tokens<B: Backend>(
    path: &Path,
    slide: &crate::slide::Slide,
    plan: &crate::analysis::plan::TilePlan,
    model: &Model<B>,
) -> Result<Tokens, TrainError> {
    let c = &model.config;
    let slide_encoder = model.slide_encoder.as_ref().expect("built with a slide encoder");
    let be = model.tile_encoder.backend();
    let mut out = Tokens {
        features: Vec::new(),
        cells: Vec::new(),
    };
    let mut seconds = StageSeconds::default();
    encode_tiles(
        slide,
        plan,
        model,
        64,
        // Training data the same on every machine: the CPU's decoder.
        false,
        &mut seconds,
        &|_, _| {},
        &mut |chunk, encoded| {
            let positions: Vec<[u32; 2]> = chunk.iter().map(|t| [t.row, t.col]).collect();
            let (features, cells) = slide_encoder.tokens_from_tiles(c, encoded, &positions)?;
            out.features.extend(be.download(&features)?);
            out.cells.extend(cells);
            Ok(())
        },
    )
    .map_err(|source| TrainError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(out)
}

/// Trains the slide encoder on `backend` (the CPU, or a GPU: the same hand-written backward
/// pass, [`super::backprop`]) on `train` slides' tokens, validating on `validation`'s; writes
/// the model directory (config.json, model.safetensors with both stages) to `o.out`.
pub fn train_slide_encoder<B: Gradients>(
    backend: &B,
    tile_host: &HashMap<String, HostTensor>,
    train: &[SlideTokens],
    validation: &[SlideTokens],
    o: &TrainOptions,
    crop_side: usize,
    progress: &dyn Fn(usize, f64),
) -> Result<Vec<Checkpoint>, TrainError> {
    let config = o.config.slide_encoder.clone().ok_or(TrainError::NoSlideEncoder)?;
    let dim = config.input_dim;
    let mut params = Params::new(backend, &config, &config.random_weights()?)?;
    let usable: Vec<&SlideTokens> = train.iter().filter(|s| !s.labels.is_empty()).collect();
    if usable.is_empty() {
        return Err(TrainError::NoTrainingTokens);
    }
    if o.batch == 0 {
        return Err(TrainError::EmptyBatch);
    }
    // Every slide's features on the device for the whole run where they fit (the backend's
    // feature budget): each crop is then gathered there, not converted and uploaded (1.6 ms
    // of a 65,536-token step's 48 on an H200). The same bf16 values either way.
    let bytes: usize = usable.iter().map(|s| s.features.len() * 2).sum();
    let resident = match backend.feature_budget() {
        Some(budget) if bytes <= budget => Some(
            usable
                .iter()
                .map(|s| backend.upload(&s.features, s.labels.len(), dim))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        _ => None,
    };
    let mut rng = Rng::new(o.seed ^ 0x5EED_0002);
    let mut checkpoints = Vec::new();
    let mut meter = CheckpointMeter::new(o);
    for step in 1..=o.steps {
        // The step's loss is the mean of its crops': each crop's gradients weigh 1/batch.
        let mut grads = Grads::new();
        let mut loss = 0.0;
        for _ in 0..o.batch {
            let chosen = rng.int(0, usable.len() as i64 - 1) as usize;
            let slide = usable[chosen];
            let indices = crop(slide, crop_side, &mut rng);
            let features = match &resident {
                Some(features) => backend.gather_rows(&features[chosen], &indices)?,
                None => {
                    let host: Vec<f32> = indices
                        .iter()
                        .flat_map(|&i| slide.features[i * dim..(i + 1) * dim].iter().copied())
                        .collect();
                    backend.upload(&host, indices.len(), dim)?
                }
            };
            let positions: Vec<[f32; 2]> = indices.iter().map(|&i| slide.cells[i]).collect();
            let labels: Vec<f32> = indices.iter().map(|&i| slide.labels[i]).collect();
            let crop = Crop {
                features: &features,
                positions: &positions,
                labels: &labels,
            };
            loss +=
                crop_gradients(&config, &params, &crop, 1.0 / o.batch as f32, &mut grads)? / o.batch as f64;
        }
        // Diverged (or NaN features): stop before the weights or a checkpoint take it.
        if !loss.is_finite() {
            return Err(TrainError::LossNotFinite { step, loss });
        }
        let lr = schedule(o.learning_rate, step, o.steps);
        params.step(&grads, lr, o.weight_decay, step as i32, o.max_grad_norm)?;
        progress(step, loss);
        if let Some(train_loss) = meter.record(step, loss) {
            let slide_host = params.to_host()?;
            let scores = validate(backend, &config, &slide_host, validation)?;
            checkpoints.push(Checkpoint {
                step,
                train_loss,
                validation_loss: None,
                validation_auroc: scores.token_auroc,
                validation_froc: scores.froc,
            });
            write_model_dir(&o.out, &o.config, tile_host, &slide_host)?;
        }
    }
    Ok(checkpoints)
}

/// Token indices of a `side` × `side` window of the slide's grid, around a tumour token half
/// the time when there is one, else around any token.
fn crop(slide: &SlideTokens, side: usize, rng: &mut Rng) -> Vec<usize> {
    let positives: Vec<usize> = (0..slide.labels.len())
        .filter(|&i| slide.labels[i] > 0.5)
        .collect();
    let centre = if !positives.is_empty() && rng.chance(0.5) {
        positives[rng.int(0, positives.len() as i64 - 1) as usize]
    } else {
        rng.int(0, slide.labels.len() as i64 - 1) as usize
    };
    let [r0, c0] = slide.cells[centre];
    let half = side as f32 / 2.0;
    (0..slide.cells.len())
        .filter(|&i| {
            let [r, c] = slide.cells[i];
            (r - r0).abs() < half && (c - c0).abs() < half
        })
        .collect()
}

/// The variables as host tensors in a model directory's shapes (they live as matrices).
pub(super) fn to_host(
    params: &[(String, Var)],
    shapes: &HashMap<String, Vec<usize>>,
) -> candle_core::Result<HashMap<String, HostTensor>> {
    params
        .iter()
        .map(|(name, v)| {
            let t = v.as_tensor();
            let data = t.flatten_all()?.to_vec1::<f32>()?;
            let shape = shapes.get(name).cloned().unwrap_or_else(|| t.dims().to_vec());
            Ok((name.clone(), HostTensor { data, shape }))
        })
        .collect()
}

/// How the current weights score the whole validation slides.
struct ValidationScores {
    token_auroc: Option<f64>,
    /// Lesion-level FROC, as `evaluate` would score `run`'s detections ([`lesion_score`]).
    froc: Option<f64>,
}

/// Scores the current weights over whole validation slides, on the training's backend (the
/// forward's kernels), as `run` would analyse them.
fn validate<B: Backend>(
    backend: &B,
    config: &crate::model::slide_encoder::SlideEncoderConfig,
    host: &HashMap<String, HostTensor>,
    validation: &[SlideTokens],
) -> Result<ValidationScores, TrainError> {
    let encoder = SlideEncoder::new(backend, config.clone(), host, Path::new("(training)"))?;
    let (mut scores, mut labels, mut detections) = (Vec::new(), Vec::new(), Vec::new());
    for slide in validation {
        if slide.labels.is_empty() {
            // No tissue tokens: its lesions (if any) are missed, as `evaluate` counts them.
            detections.push(lesion_score::slide_detections(&[], &[], &slide.lesions));
            continue;
        }
        let x = backend.upload(&slide.features, slide.labels.len(), config.input_dim)?;
        let out = encoder.forward(&x, &slide.cells)?;
        let probabilities: Vec<f32> = out.token_logits.iter().map(|&z| sigmoid(z)).collect();
        detections.push(lesion_score::slide_detections(
            &slide.cells,
            &probabilities,
            &slide.lesions,
        ));
        scores.extend(out.token_logits);
        labels.extend(slide.labels.iter().map(|&l| l > 0.5));
    }
    Ok(ValidationScores {
        token_auroc: auroc(&scores, &labels),
        froc: lesion_score::froc_score(&detections),
    })
}

/// Writes `out/config.json` and `out/model.safetensors` (both stages; bf16, as shipped
/// models are), each under a temporary name then renamed.
pub(super) fn write_model_dir(
    out: &Path,
    config: &crate::model::config::ModelConfig,
    tile_host: &HashMap<String, HostTensor>,
    slide_host: &HashMap<String, HostTensor>,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(out).map_err(TrainError::write(out))?;
    let mut tensors = HashMap::new();
    for (name, t) in tile_host
        .iter()
        .filter(|(n, _)| !n.starts_with("tile_head."))
        .chain(slide_host)
    {
        let tensor = Tensor::from_slice(&t.data, t.shape.as_slice(), &Device::Cpu)?
            .to_dtype(candle_core::DType::BF16)?;
        tensors.insert(name.clone(), tensor);
    }
    save_safetensors(&tensors, &out.join("model.safetensors"))?;
    let text = serde_json::to_vec_pretty(config)?;
    let config_path = out.join("config.json");
    crate::util::atomic::write_bytes(&config_path, &text).map_err(TrainError::write(&config_path))
}

/// A tile encoder (trained in stage 1, or frozen from a foundation model) with a slide
/// encoder for grouping its tokens (its weights are not used for that), on `backend`.
pub fn token_model<B: Backend>(
    backend: &B,
    config: &crate::model::config::ModelConfig,
    tile_host: &HashMap<String, HostTensor>,
    source: &Path,
) -> Result<Model<B>, TrainError> {
    let slide_config = config.slide_encoder.clone().ok_or(TrainError::NoSlideEncoder)?;
    Ok(Model {
        config: config.clone(),
        tile_encoder: TileEncoder::new(backend, config.clone(), tile_host, source)?,
        slide_encoder: Some(SlideEncoder::random(backend, slide_config)?),
        hash: String::new(),
        tile_encoder_hash: String::new(),
    })
}

/// The labelled tokens of every slide in `paths` through `model` (kept in, or taken from,
/// `cache`, or from `reuse`'s features files).
pub fn cohort_tokens<B: Backend>(
    paths: &[std::path::PathBuf],
    model: &Model<B>,
    cache: &TokenCache,
    reuse: &FeatureFiles,
) -> Result<Vec<SlideTokens>, TrainError> {
    paths
        .iter()
        .map(|p| slide_tokens(p, model, Some(cache), reuse))
        .collect()
}

/// A frozen tile encoder: the model directory `dir` (a converted foundation encoder, or any
/// model's tile encoder) with `head` (a slide encoder's architecture) reading its features,
/// as one configuration; the encoder's own tensors (a slide encoder `dir` may hold is left
/// out); and its weights file, which names it.
pub fn frozen_encoder(
    dir: &Path,
    mut head: crate::model::slide_encoder::SlideEncoderConfig,
) -> Result<FrozenEncoder, TrainError> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|source| crate::model::ModelError::Io {
        path: config_path.clone(),
        source,
    })?;
    let mut config = crate::model::parse_config(&text, &config_path)?;
    // Grouped patch tokens are the encoder's width; pooled features its feature width.
    head.input_dim = match head.group_patches {
        Some(_) => config.width,
        None => config.feature_dim(),
    };
    config.slide_encoder = Some(head);
    // With the head's grouping, which must divide the encoder's patches a side.
    config
        .validate()
        .map_err(|source| crate::model::ModelError::ConfigFile {
            path: config_path.clone(),
            source,
        })?;
    let weights = dir.join("model.safetensors");
    let mut host = crate::model::weights::read_safetensors(&weights)?;
    let names = crate::model::tile_encoder_names(&config);
    let own: std::collections::HashSet<&String> = names.iter().collect();
    host.retain(|name, _| own.contains(name));
    let sha256 = crate::model::weights::file_tensors_sha256(&weights, &names)?;
    Ok(FrozenEncoder {
        config,
        host,
        weights,
        sha256,
    })
}

/// What [`frozen_encoder`] gives.
pub struct FrozenEncoder {
    pub config: crate::model::config::ModelConfig,
    pub host: HashMap<String, HostTensor>,
    pub weights: std::path::PathBuf,
    /// SHA-256 of its tensors ([`crate::model::weights::tensors_sha256`]).
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    use crate::annotation::lesions::{Lesion, SlideTruth};
    use crate::annotation::polygon::Polygon;
    use crate::annotation::LesionClass;

    fn bundled_options(out: &Path) -> TrainOptions {
        let text = include_str!("../../bench/configs/flashslide-synth-v1.json");
        TrainOptions {
            out: out.to_path_buf(),
            config: crate::model::parse_config(text, Path::new("bundled")).unwrap(),
            steps: 2,
            batch: 1,
            learning_rate: 1e-3,
            weight_decay: 0.05,
            seed: 1,
            checkpoint_every: 1,
            max_grad_norm: None,
        }
    }

    /// A `side` × `side` token grid (64 px tokens at 0.5 µm/px) with `lesions`, tokens
    /// labelled by them, features from `seed` with the tumour tokens shifted.
    fn tokens(side: usize, lesions: Vec<Lesion>, dim: usize, seed: u64) -> SlideTokens {
        let cells: Vec<[f32; 2]> = (0..side * side)
            .map(|i| [(i / side) as f32, (i % side) as f32])
            .collect();
        let truth = SlideTruth { lesions, mpp: 0.5 };
        let labels: Vec<f32> = cells
            .iter()
            .map(|c| {
                let (x, y) = ((c[1] as f64 + 0.5) * 64.0, (c[0] as f64 + 0.5) * 64.0);
                f32::from(u8::from(truth.lesions.iter().any(|l| l.outline.contains(x, y))))
            })
            .collect();
        let mut rng = Rng::new(seed);
        let features = labels
            .iter()
            .flat_map(|&l| {
                (0..dim)
                    .map(|_| rng.range(-0.5, 0.5) as f32 + l)
                    .collect::<Vec<_>>()
            })
            .collect();
        SlideTokens {
            features,
            cells,
            labels,
            lesions: LesionTruth {
                truth,
                token_level0: 64.0,
            },
            from: TokenSource::Encoded,
        }
    }

    fn micrometastasis(x0: f64) -> Lesion {
        Lesion {
            class: LesionClass::Micro,
            outline: Polygon {
                points: vec![(x0, 320.0), (x0 + 512.0, 320.0), (x0 + 512.0, 832.0), (x0, 832.0)],
            },
        }
    }

    #[test]
    fn validation_scores_the_lesion_froc_as_evaluate_does() {
        let out = std::env::temp_dir().join(format!("flashslide-froc-{}", std::process::id()));
        let options = bundled_options(&out);
        let dim = options.config.slide_encoder.as_ref().unwrap().input_dim;
        let train = [tokens(16, vec![micrometastasis(256.0)], dim, 1)];
        let validation = [
            tokens(16, vec![micrometastasis(384.0)], dim, 2),
            tokens(16, Vec::new(), dim, 3),
        ];
        let checkpoints = train_slide_encoder(
            &CpuBackend,
            &HashMap::new(),
            &train,
            &validation,
            &options,
            8,
            &|_, _| {},
        )
        .unwrap();
        let froc = checkpoints.last().unwrap().validation_froc;
        assert!(froc.is_some_and(|f| (0.0..=1.0).contains(&f)), "{froc:?}");
        // A validation set without countable lesions has no FROC to report.
        let none = [tokens(16, Vec::new(), dim, 2)];
        let checkpoints = train_slide_encoder(
            &CpuBackend,
            &HashMap::new(),
            &train,
            &none,
            &options,
            8,
            &|_, _| {},
        )
        .unwrap();
        assert_eq!(checkpoints.last().unwrap().validation_froc, None);
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn a_loss_that_is_not_a_number_stops_training_before_any_checkpoint() {
        let out = std::env::temp_dir().join(format!("flashslide-nan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let options = bundled_options(&out);
        let dim = options.config.slide_encoder.as_ref().unwrap().input_dim;
        let mut tokens = tokens(3, Vec::new(), dim, 1);
        // A features file gone bad: every token's first value not a number.
        tokens
            .features
            .iter_mut()
            .step_by(dim)
            .for_each(|x| *x = f32::NAN);
        let result = train_slide_encoder(
            &CpuBackend,
            &HashMap::new(),
            std::slice::from_ref(&tokens),
            &[],
            &options,
            4,
            &|_, _| {},
        );
        assert!(
            matches!(result, Err(TrainError::LossNotFinite { step: 1, .. })),
            "{:?}",
            result.err()
        );
        assert!(!out.join("model.safetensors").exists());
        let _ = std::fs::remove_dir_all(&out);
    }
}
