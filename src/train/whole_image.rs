//! Arm 3 of the baseline benchmark: the usual shortcut, one downscaled image of the whole
//! slide (at most a given number of pixels on its long side) through a ViT of the same size
//! as flashslide's two stages: the tile encoder's blocks over all the image's patches, then
//! the slide encoder's over the same tokens, each patch scored. The model directory written
//! is an ordinary one (the image is the model's one tile: `image_size` its side,
//! `group_patches` 1, `mpp` such that every slide of the cohort fits), so `run` and `bench
//! baseline` run it as they run the others. Trained end to end: each step a batch of whole
//! slide images, flipped and turned, each patch token's tumour fraction its soft label, plus
//! a tenth of the slide label's loss, as stage 2 weighs it.

use super::data::{open_annotated, open_with_mpp, tumour_fraction, AnnotatedSlide};
use super::slide_stage::{to_host, write_model_dir};
use super::{
    dihedral, schedule, step_on_mean, token_and_slide_loss, trainable, AdamW, Checkpoint, CheckpointMeter,
    TrainError, TrainOptions,
};
use crate::analysis::plan::{read_tile, Tile};
use crate::backend::autodiff::AutodiffBackend;
use crate::eval::auroc::auroc;
use crate::model::config::ModelConfig;
use crate::model::slide_encoder::{group_positions, SlideEncoder};
use crate::model::tile_encoder::{expected_shapes, TileEncoder};
use crate::util::rng::Rng;
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::PathBuf;

/// A slide as one image (`side`² RGB) and each patch token's tumour fraction, row by row.
pub struct SlideImage {
    pub pixels: Vec<u8>,
    pub labels: Vec<f32>,
}

/// The microns per pixel at which the largest slide of `paths` is at most `long_side`
/// pixels on its long side, rounded up to a hundredth of a micron.
pub fn whole_image_mpp(paths: &[PathBuf], long_side: usize) -> Result<f64, TrainError> {
    let mut coarsest: f64 = 0.0;
    for path in paths {
        let (slide, mpp) = open_with_mpp(path)?;
        let (w, h) = slide.dimensions();
        coarsest = coarsest.max(w.max(h) as f64 * mpp / long_side as f64);
    }
    Ok((coarsest * 100.0).ceil() / 100.0)
}

/// `config` made the one-image model: `side`-pixel images at `mpp`, every patch a token of
/// the slide encoder.
pub fn whole_image_config(mut config: ModelConfig, side: usize, mpp: f64) -> Result<ModelConfig, TrainError> {
    config.image_size = side;
    config.mpp = mpp;
    config
        .slide_encoder
        .as_mut()
        .ok_or(TrainError::NoSlideEncoder)?
        .group_patches = Some(1);
    config.validate()?;
    Ok(config)
}

/// Reads the slide at `path` as the one image `config` takes, with its labels.
pub fn slide_image(path: &std::path::Path, config: &ModelConfig) -> Result<SlideImage, TrainError> {
    let AnnotatedSlide {
        slide, truth, plan, ..
    } = open_annotated(path, config.mpp, config.image_size as u32)?;
    if plan.cols > 1 || plan.rows > 1 {
        return Err(TrainError::TooLarge {
            path: path.to_path_buf(),
            side: config.image_size,
            mpp: config.mpp,
        });
    }
    let whole = Tile {
        col: 0,
        row: 0,
        x: 0,
        y: 0,
    };
    let pixels = read_tile(&slide, &plan, &whole)?;
    let g = config.patches_per_side();
    let patch = plan.tile_level0 / g as f64;
    let labels = (0..g * g)
        .map(|i| tumour_fraction(&truth, (i % g) as f64 * patch, (i / g) as f64 * patch, patch))
        .collect();
    Ok(SlideImage { pixels, labels })
}

/// Trains the one-image model on `train`, validating on `validation` (token AUROC, tokens
/// at least half tumour against the rest); writes the model directory to `o.out` at every
/// checkpoint.
pub fn train_whole_image(
    train: &[SlideImage],
    validation: &[SlideImage],
    o: &TrainOptions,
    progress: &dyn Fn(usize, f64),
) -> Result<Vec<Checkpoint>, TrainError> {
    let c = &o.config;
    let slide_config = c.slide_encoder.clone().ok_or(TrainError::NoSlideEncoder)?;
    if train.is_empty() {
        return Err(TrainError::NoTrainingSlides);
    }
    let be = AutodiffBackend::default();
    let tile_encoder = TileEncoder::random_trainable(&be, c.clone())?;
    let slide_encoder = SlideEncoder::random(&be, slide_config.clone())?;
    let mut params = trainable(tile_encoder.weights().named())?;
    params.extend(trainable(slide_encoder.weights().named())?);
    let mut optimiser = AdamW::new(&params, o.weight_decay)?;
    let shapes: HashMap<String, Vec<usize>> = expected_shapes(c)
        .into_iter()
        .chain(slide_config.expected_shapes())
        .collect();
    let (side, g) = (c.image_size, c.patches_per_side());
    let cells = group_positions(&[[0, 0]], g);
    // Per image, the tokens' logits `[g², 1]` and the slide's `[1, 1]`.
    let logits = |pixels: &[u8], n: usize| -> Result<Vec<(Tensor, Tensor)>, TrainError> {
        let encoded = tile_encoder.forward(pixels, n, side)?;
        let (features, _) = slide_encoder.tokens_from_tiles(c, &encoded, &vec![[0, 0]; n])?;
        (0..n)
            .map(|b| {
                let x = features.narrow(0, b * g * g, g * g)?;
                Ok(slide_encoder.logits(&x, &cells)?)
            })
            .collect()
    };
    let mut rng = Rng::new(o.seed ^ 0x5EED_0003);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut cursor = order.len();
    let mut checkpoints = Vec::new();
    let mut meter = CheckpointMeter::new(o);
    for step in 1..=o.steps {
        let mut pixels = Vec::with_capacity(o.batch * side * side * 3);
        let mut labels = Vec::with_capacity(o.batch);
        for _ in 0..o.batch {
            if cursor == order.len() {
                rng.shuffle(&mut order);
                cursor = 0;
            }
            let image = &train[order[cursor]];
            cursor += 1;
            let k = rng.int(0, 7) as u8;
            pixels.extend(dihedral(&image.pixels, side, 3, k));
            labels.push(dihedral(&image.labels, g, 1, k));
        }
        let losses = logits(&pixels, o.batch)?
            .iter()
            .zip(&labels)
            .map(|((tokens, slide_logit), labels)| token_and_slide_loss(tokens, slide_logit, labels))
            .collect::<Result<Vec<_>, _>>()?;
        let value = step_on_mean(
            &mut optimiser,
            &params,
            losses,
            schedule(o.learning_rate, step, o.steps),
        )?;
        progress(step, value);
        if let Some(train_loss) = meter.record(step, value) {
            let (mut scores, mut positive) = (Vec::new(), Vec::new());
            for image in validation {
                let (tokens, _) = &logits(&image.pixels, 1)?[0];
                scores.extend(tokens.detach().flatten_all()?.to_vec1::<f32>()?);
                positive.extend(image.labels.iter().map(|&l| l >= 0.5));
            }
            checkpoints.push(Checkpoint {
                step,
                train_loss,
                validation_loss: None,
                validation_auroc: auroc(&scores, &positive),
                validation_froc: None,
            });
            write_model_dir(&o.out, c, &to_host(&params, &shapes)?, &HashMap::new())?;
        }
    }
    Ok(checkpoints)
}
