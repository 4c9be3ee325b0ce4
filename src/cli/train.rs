use super::device;
use anyhow::{Context, Result};
use clap::Args;
use flashslide::backend::cuda::TRAINING_HEAD_DIMS;
use flashslide::backend::{Backend, DeviceChoice, Selected};
use flashslide::model::config::ModelConfig;
use flashslide::model::tile_encoder_names;
use flashslide::model::weights::HostTensor;
use flashslide::model::weights::{file_tensors_sha256, read_safetensors};
use flashslide::train::data::{load_cohort, Cohort};
use flashslide::train::feature_reuse::FeatureFiles;
use flashslide::train::slide_stage::{
    cohort_tokens, frozen_encoder, token_model, train_slide_encoder, SlideTokens, TokenSource,
};
use flashslide::train::token_cache::{TokenCache, TokenRecipe};
use flashslide::train::whole_image::{slide_image, train_whole_image, whole_image_config, whole_image_mpp};
use flashslide::train::TrainError;
use flashslide::train::{train_tile_encoder, Checkpoint, TrainOptions, TILE_STAGE_FILE};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The bundled architecture, the default.
pub(super) const BUNDLED_CONFIG: &str = include_str!("../../bench/configs/flashslide-synth-v1.json");

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Annotated slides: a folder searched recursively; each slide needs <stem>.lesions.json
    /// (as `synth` writes), <stem>.xml (ASAP/CAMELYON16) or <stem>.geojson (QuPath) beside it
    #[arg(long)]
    cohort: PathBuf,
    /// Where the checkpoint (tile_stage.safetensors) and train_log.json go
    #[arg(long)]
    out: PathBuf,
    /// Architecture: a model config.json (default: the bundled flashslide-synth-v1)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Microns per pixel the model analyses at (default: the configuration's); the same
    /// architecture at 2 or 8 µm/px makes the downscaled baselines
    #[arg(long, value_parser = super::values::mpp)]
    mpp: Option<f64>,
    /// Optimiser steps
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Tiles per step
    #[arg(long, default_value_t = 32, value_parser = super::values::batch)]
    batch: usize,
    /// Peak learning rate (warm-up over the first 5% of steps, then cosine decay to a tenth)
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0.05)]
    weight_decay: f64,
    /// Seed of the validation split, tile sampling, order and augmentation
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Validate and write a checkpoint every this many steps (both stages)
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    /// Stage 2 (the slide encoder) optimiser steps; 0 stops after stage 1
    #[arg(long, default_value_t = 400)]
    slide_steps: usize,
    /// Stage 2: peak learning rate
    #[arg(long, default_value_t = 3e-4)]
    slide_lr: f64,
    /// Stage 2: clip the gradients' global norm to this before each step (off by default)
    #[arg(long, value_name = "NORM")]
    clip_grad_norm: Option<f64>,
    /// Stage 2: crops of a slide's token grid per step
    #[arg(long, default_value_t = 4)]
    crops: usize,
    /// Stage 2: a crop's side, in tokens
    #[arg(long, default_value_t = 32)]
    crop_side: usize,
    /// Skip stage 1: take the tile encoder from this stage-1 checkpoint (a
    /// tile_stage.safetensors of an earlier run) and train only the slide encoder
    #[arg(long)]
    tile_stage: Option<PathBuf>,
    /// Stage 2 only, on a frozen tile encoder: the model directory of a converted foundation
    /// encoder (`flashslide convert`) or of any model. Its features of every tissue tile are
    /// computed once (on --device) and kept in OUT/tokens; the slide encoder (its
    /// architecture from --config) learns from them; the model directory written holds the
    /// encoder's weights and the new head
    #[arg(long, value_name = "DIR", conflicts_with = "tile_stage")]
    tile_encoder: Option<PathBuf>,
    /// Stage 2: take a slide's tokens from a features file that `run --features` (OUT of a
    /// run) or `embed` (a folder of its outputs) wrote into DIR, where it is this slide's as
    /// it is now, made by the same tile encoder at the same resolution over the same tiles,
    /// and the head takes one token a tile (no group_patches); other slides are encoded
    #[arg(long, value_name = "DIR", num_args = 1..)]
    reuse_features: Vec<PathBuf>,
    /// Where stage 2's tokens are computed and the slide encoder trains (on a GPU: the
    /// backward pass and AdamW on the device; stage 1 trains on the CPU); default: auto with
    /// --tile-encoder, else the CPU (a stage-1 encoder's tokens then the same on every
    /// machine)
    #[arg(long, value_parser = super::device::parser())]
    device: Option<DeviceChoice>,
    /// Train instead the one-image baseline (arm 3 of `bench baseline`): each slide as one
    /// image of at most this many pixels on its long side (the µm per pixel chosen so that
    /// every slide of the cohort fits), through the same-size ViT, tile and slide encoder
    /// blocks trained together; --steps, --batch (images per step) and --lr apply
    #[arg(long, value_name = "PIXELS", conflicts_with_all = ["mpp", "tile_stage", "tile_encoder"])]
    whole_slide_image: Option<usize>,
    /// No progress bar
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: TrainArgs) -> Result<ExitCode> {
    let text = match &args.config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => BUNDLED_CONFIG.to_string(),
    };
    let mut config: ModelConfig = serde_json::from_str(&text).context("the model configuration")?;
    // A frozen encoder: its architecture and weights, with --config's slide encoder as the head.
    let frozen = match &args.tile_encoder {
        Some(dir) => {
            let head = config.slide_encoder.clone().ok_or(TrainError::NoSlideEncoder)?;
            let frozen = frozen_encoder(dir, head)?;
            config = frozen.config.clone();
            Some(frozen)
        }
        None => None,
    };
    // A new model: what a notice said of the weights it came with is not said of these.
    config.notice = None;
    if let Some(mpp) = args.mpp {
        config.mpp = mpp;
    }
    // The model is called what its directory is.
    if let Some(name) = args.out.file_name() {
        config.name = name.to_string_lossy().into_owned();
    }
    config.validate()?;
    if let Some(side) = args.whole_slide_image {
        return train_one_image(&args, config, side);
    }
    // With a tile encoder given, only the split is needed, not stage 1's tiles.
    let trains_stage_one = args.tile_stage.is_none() && frozen.is_none();
    let cohort = load_cohort(
        &args.cohort,
        config.mpp,
        config.image_size as u32,
        args.seed,
        trains_stage_one,
    )?;
    if !args.quiet && trains_stage_one {
        eprintln!(
            "stage 1 (tile encoder): {} training tiles from {} slides, {} validation tiles from {}",
            cohort.train.len(),
            cohort.train_slides.len(),
            cohort.validation.len(),
            cohort.validation_slides.len()
        );
    }
    let options = train_options(&args, config);
    let (tile_host, checkpoint, encoder_sha256) = match (frozen, &args.tile_stage) {
        (Some(f), _) => (f.host, f.weights, f.sha256),
        (None, given) => {
            let checkpoint = match given {
                Some(path) => path.clone(),
                None => {
                    train_stage_one(&args, &cohort, &options)?;
                    args.out.join(TILE_STAGE_FILE)
                }
            };
            if args.slide_steps == 0 {
                return Ok(ExitCode::SUCCESS);
            }
            let sha256 = file_tensors_sha256(&checkpoint, &tile_encoder_names(&options.config))?;
            (read_safetensors(&checkpoint)?, checkpoint, sha256)
        }
    };

    // Stage 2 on the tile encoder's tokens, computed once a slide and kept in OUT/tokens.
    let c = &options.config;
    let cache = TokenCache {
        dir: args.out.join("tokens"),
        recipe: TokenRecipe {
            encoder_sha256,
            mpp: c.mpp,
            tile_px: c.image_size as u32,
            group_patches: c.slide_encoder.as_ref().and_then(|s| s.group_patches),
        },
    };
    let default = match args.tile_encoder {
        Some(_) => DeviceChoice::Auto,
        None => DeviceChoice::Cpu,
    };
    let reuse = FeatureFiles::find(&args.reuse_features).context("--reuse-features")?;
    let sources = (&cache, &reuse);
    let selected = device::open(args.device.unwrap_or(default), args.quiet)?;
    if let (Selected::Cuda(_), Some(head)) = (&selected, &options.config.slide_encoder) {
        let head_dim = head.width / head.heads;
        if !TRAINING_HEAD_DIMS.contains(&head_dim) {
            anyhow::bail!(
                "the slide encoder's heads are {head_dim} wide; training on the GPU takes {:?}: \
                 train with --device cpu, or choose width and heads to match",
                TRAINING_HEAD_DIMS
            );
        }
    }
    let (train, validation) = match &selected {
        Selected::Cpu(be) => both_tokens(be, &options, &tile_host, &checkpoint, &cohort, sources)?,
        Selected::Cuda(be) => both_tokens(be, &options, &tile_host, &checkpoint, &cohort, sources)?,
    };
    let count = |s: &[SlideTokens]| s.iter().map(|t| t.labels.len()).sum::<usize>();
    if !args.quiet {
        let all = || train.iter().chain(&validation);
        let from = |f: fn(&TokenSource) -> bool| all().filter(|t| f(&t.from)).count();
        eprintln!(
            "stage 2 (slide encoder): {} training tokens, {} validation tokens; slides' tokens \
             kept from before {}, from features files {} (of {} found), encoded {}",
            count(&train),
            count(&validation),
            from(|f| *f == TokenSource::Kept),
            from(|f| matches!(f, TokenSource::FeaturesFile(_))),
            reuse.len(),
            from(|f| *f == TokenSource::Encoded),
        );
    }
    let bar = progress_bar(args.slide_steps, args.quiet)?;
    let stage2 = TrainOptions {
        steps: args.slide_steps,
        batch: args.crops,
        learning_rate: args.slide_lr,
        ..options
    };
    let (progress, crop_side) = (show(&bar), args.crop_side);
    let checkpoints = match &selected {
        Selected::Cpu(be) => {
            train_slide_encoder(be, &tile_host, &train, &validation, &stage2, crop_side, &progress)
        }
        Selected::Cuda(be) => {
            train_slide_encoder(be, &tile_host, &train, &validation, &stage2, crop_side, &progress)
        }
    }?;
    bar.finish_and_clear();
    write_log(&args, &checkpoints, "train_log_slide.json", "stage 2, ")
}

/// The training and validation slides' tokens through the tile encoder on `backend` (or
/// from the kept tokens and features files).
fn both_tokens<B: Backend>(
    backend: &B,
    options: &TrainOptions,
    tile_host: &HashMap<String, HostTensor>,
    source: &Path,
    cohort: &Cohort,
    (cache, reuse): (&TokenCache, &FeatureFiles),
) -> Result<(Vec<SlideTokens>, Vec<SlideTokens>)> {
    let model = token_model(backend, &options.config, tile_host, source)?;
    Ok((
        cohort_tokens(&cohort.train_paths, &model, cache, reuse)?,
        cohort_tokens(&cohort.validation_paths, &model, cache, reuse)?,
    ))
}

/// Arm 3: the cohort's slides as one image each, the model trained end to end on them.
fn train_one_image(args: &TrainArgs, config: ModelConfig, side: usize) -> Result<ExitCode> {
    let split = load_cohort(
        &args.cohort,
        config.mpp,
        config.image_size as u32,
        args.seed,
        false,
    )?;
    let all: Vec<PathBuf> = split
        .train_paths
        .iter()
        .chain(&split.validation_paths)
        .cloned()
        .collect();
    let mpp = whole_image_mpp(&all, side)?;
    let config = whole_image_config(config, side, mpp)?;
    let images = |paths: &[PathBuf]| -> Result<Vec<_>> {
        paths.par_iter().map(|p| Ok(slide_image(p, &config)?)).collect()
    };
    let (train, validation) = (images(&split.train_paths)?, images(&split.validation_paths)?);
    if !args.quiet {
        eprintln!(
            "one image per slide, {side} px at {mpp} µm/px: {} training slides, {} validation slides",
            train.len(),
            validation.len()
        );
    }
    let options = train_options(args, config);
    let bar = progress_bar(args.steps, args.quiet)?;
    let checkpoints = train_whole_image(&train, &validation, &options, &show(&bar))?;
    bar.finish_and_clear();
    write_log(args, &checkpoints, "train_log.json", "")
}

fn train_stage_one(args: &TrainArgs, cohort: &Cohort, options: &TrainOptions) -> Result<()> {
    let bar = progress_bar(args.steps, args.quiet)?;
    let log = train_tile_encoder(cohort, options, &show(&bar))?;
    bar.finish_and_clear();
    if !args.quiet {
        if let Some(last) = log.checkpoints.last() {
            eprintln!(
                "step {}: training loss {:.4}, validation loss {}, validation AUROC {}; {}",
                last.step,
                last.train_loss,
                last.validation_loss.map_or("–".into(), |v| format!("{v:.4}")),
                last.validation_auroc.map_or("–".into(), |v| format!("{v:.3}")),
                args.out.join(TILE_STAGE_FILE).display()
            );
        }
    }
    Ok(())
}

fn train_options(args: &TrainArgs, config: ModelConfig) -> TrainOptions {
    TrainOptions {
        out: args.out.clone(),
        config,
        steps: args.steps,
        batch: args.batch,
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        max_grad_norm: args.clip_grad_norm,
    }
}

/// Writes the checkpoints to `file` in the output directory and says how the last one scored.
fn write_log(args: &TrainArgs, checkpoints: &[Checkpoint], file: &str, stage: &str) -> Result<ExitCode> {
    let text = serde_json::to_vec_pretty(checkpoints)?;
    flashslide::util::atomic::write_bytes(&args.out.join(file), &text)?;
    if let (false, Some(last)) = (args.quiet, checkpoints.last()) {
        eprintln!(
            "{stage}step {}: training loss {:.4}, validation token AUROC {}{}; model in {}",
            last.step,
            last.train_loss,
            last.validation_auroc.map_or("–".into(), |v| format!("{v:.3}")),
            last.validation_froc
                .map_or(String::new(), |v| format!(", lesion FROC {v:.3}")),
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The training loops' progress callback: the step and the loss on `bar`.
fn show(bar: &ProgressBar) -> impl Fn(usize, f64) + '_ {
    move |step, loss| {
        bar.set_position(step as u64);
        bar.set_message(format!("{loss:.4}"));
    }
}

/// A bar of `steps` with the loss, or a hidden one when quiet or not on a terminal.
fn progress_bar(steps: usize, quiet: bool) -> Result<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return Ok(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} steps  loss {msg}  eta {eta}",
    )?);
    Ok(bar)
}
