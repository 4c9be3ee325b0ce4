//! Training tiles from an annotated cohort: every slide with ground truth (see
//! [`crate::eval::lesions`]) is tiled at the model's resolution as `run` tiles it, each tile
//! labelled with the fraction of it inside lesions, and the slides split into training and
//! validation by the seed. Tumour tiles are all kept; tumour-free ones are sampled to match.

use crate::batch::discover::discover;
use crate::eval::lesions::SlideTruth;
use crate::grid::{plan_tiles, read_tile};
use crate::slide::Slide;
use crate::synth::rng::Rng;
use crate::tissue::{detect_tissue, TissueOptions};
use rayon::prelude::*;
use std::path::Path;

/// Decoded tiles (`side`² RGB each, one after another) and their tumour fractions.
#[derive(Default)]
pub struct TileSet {
    pub pixels: Vec<u8>,
    pub labels: Vec<f32>,
    pub side: usize,
}

impl TileSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn tile(&self, i: usize) -> &[u8] {
        let n = self.side * self.side * 3;
        &self.pixels[i * n..(i + 1) * n]
    }
}

pub struct Cohort {
    pub train: TileSet,
    pub validation: TileSet,
    /// Slide file names on each side of the split.
    pub train_slides: Vec<String>,
    pub validation_slides: Vec<String>,
    /// The slides' paths, likewise.
    pub train_paths: Vec<std::path::PathBuf>,
    pub validation_paths: Vec<std::path::PathBuf>,
}

/// Tumour-free tiles kept per tumour tile (at least `MIN_NEGATIVES` a slide).
const NEGATIVES_PER_POSITIVE: usize = 1;
const MIN_NEGATIVES: usize = 32;
/// Points per side of the grid that measures a tile's tumour fraction.
const LABEL_SAMPLES: usize = 8;

/// Reads the cohort in `dir` for a model of `tile_px`-pixel tiles at `model_mpp`; a fifth of
/// the slides (at least one, when there are two or more) go to validation.
pub fn load_cohort(dir: &Path, model_mpp: f64, tile_px: u32, seed: u64) -> Result<Cohort, String> {
    let mut jobs = discover(&[dir.to_path_buf()]).map_err(|e| e.to_string())?;
    jobs.retain(|j| {
        let stem = j
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        SlideTruth::find(j.path.parent().unwrap_or(dir), &stem).is_some()
    });
    if jobs.is_empty() {
        return Err(format!(
            "{}: no slides with ground truth (<stem>.lesions.json, .xml or .geojson)",
            dir.display()
        ));
    }
    let mut rng = Rng::new(seed);
    rng.shuffle(&mut jobs);
    let held_out = if jobs.len() >= 2 {
        (jobs.len() / 5).max(1)
    } else {
        0
    };
    let mut cohort = Cohort {
        train: TileSet {
            side: tile_px as usize,
            ..Default::default()
        },
        validation: TileSet {
            side: tile_px as usize,
            ..Default::default()
        },
        train_slides: Vec::new(),
        validation_slides: Vec::new(),
        train_paths: Vec::new(),
        validation_paths: Vec::new(),
    };
    for (i, job) in jobs.iter().enumerate() {
        let name = job
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (set, names, paths) = if i < held_out {
            (
                &mut cohort.validation,
                &mut cohort.validation_slides,
                &mut cohort.validation_paths,
            )
        } else {
            (
                &mut cohort.train,
                &mut cohort.train_slides,
                &mut cohort.train_paths,
            )
        };
        add_slide(&job.path, model_mpp, tile_px, &mut rng, set)?;
        names.push(name);
        paths.push(job.path.clone());
    }
    Ok(cohort)
}

fn add_slide(
    path: &Path,
    model_mpp: f64,
    tile_px: u32,
    rng: &mut Rng,
    set: &mut TileSet,
) -> Result<(), String> {
    let slide = Slide::open(path).map_err(|e| e.to_string())?;
    let mpp = slide
        .mpp()
        .map(|m| m.x)
        .ok_or_else(|| format!("{}: the slide does not state its pixel size", path.display()))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let truth_path =
        SlideTruth::find(path.parent().unwrap_or(Path::new(".")), &stem).expect("checked when listed");
    let truth = SlideTruth::load(&truth_path, mpp)?;
    let mask = detect_tissue(&slide, mpp, &TissueOptions::default()).map_err(|e| e.to_string())?;
    let plan = plan_tiles(&slide, mpp, model_mpp, tile_px, &mask, 0.25).map_err(|e| e.to_string())?;
    let fraction = |x: f64, y: f64| -> f32 {
        let step = plan.tile_level0 / LABEL_SAMPLES as f64;
        let inside = (0..LABEL_SAMPLES * LABEL_SAMPLES)
            .filter(|i| {
                let (px, py) = (
                    x + (i % LABEL_SAMPLES) as f64 * step + step / 2.0,
                    y + (i / LABEL_SAMPLES) as f64 * step + step / 2.0,
                );
                truth.lesions.iter().any(|l| l.outline.contains(px, py))
            })
            .count();
        inside as f32 / (LABEL_SAMPLES * LABEL_SAMPLES) as f32
    };
    let labelled: Vec<(usize, f32)> = plan
        .tiles
        .iter()
        .enumerate()
        .map(|(i, t)| (i, fraction(t.x as f64, t.y as f64)))
        .collect();
    let mut positives: Vec<(usize, f32)> = labelled.iter().copied().filter(|l| l.1 > 0.0).collect();
    let mut negatives: Vec<(usize, f32)> = labelled.iter().copied().filter(|l| l.1 == 0.0).collect();
    rng.shuffle(&mut negatives);
    negatives.truncate((positives.len() * NEGATIVES_PER_POSITIVE).max(MIN_NEGATIVES));
    positives.append(&mut negatives);
    let pixels: Vec<Vec<u8>> = positives
        .par_iter()
        .map(|&(i, _)| read_tile(&slide, &plan, &plan.tiles[i]))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    for (p, (_, label)) in pixels.into_iter().zip(&positives) {
        set.pixels.extend(p);
        set.labels.push(*label);
    }
    Ok(())
}
