//! Training tiles from an annotated cohort: every slide with ground truth (see
//! [`crate::annotation::lesions`]) is tiled at the model's resolution as `run` tiles it, each tile
//! labelled with the fraction of it inside lesions, and the slides split into training and
//! validation by the seed. Tumour tiles are all kept, with copies half a tile off the grid;
//! tumour-free ones are sampled six to one. Tiles are read from their slides when a step,
//! the hard-negative mining or the validation needs them, never held all at once (29,744
//! tiles of 256 px were 5.8 GB of memory).

use super::TrainError;
use crate::analysis::pipeline::{plan_slide, PipelineOptions, PlannedSlide};
use crate::analysis::plan::{read_tile, Tile, TilePlan};
use crate::analysis::tissue::TissueMask;
use crate::annotation::lesions::SlideTruth;
use crate::slide::discover::discover;
use crate::slide::Slide;
use crate::util::rng::Rng;
use rayon::prelude::*;
use std::path::Path;

/// Tiles of some slides (where they are, read when asked for) and their tumour fractions.
#[derive(Default)]
pub struct TileSet {
    /// Each slide open, with its tile grid.
    slides: Vec<(Slide, TilePlan)>,
    /// Each tile: its slide's index in `slides`, and where it is.
    tiles: Vec<(usize, Tile)>,
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

    /// Tile `i`'s pixels (`side`² RGB), read from its slide.
    pub fn tile(&self, i: usize) -> Result<Vec<u8>, TrainError> {
        let (s, tile) = &self.tiles[i];
        let (slide, plan) = &self.slides[*s];
        Ok(read_tile(slide, plan, tile)?)
    }

    /// The pixels of tiles `indices`, one after another, read in parallel.
    pub fn pixels(&self, indices: &[usize]) -> Result<Vec<u8>, TrainError> {
        let tiles: Vec<Vec<u8>> = indices
            .par_iter()
            .map(|&i| self.tile(i))
            .collect::<Result<_, _>>()?;
        Ok(tiles.concat())
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

/// Tumour-free tiles kept per tumour tile of the grid (at least `MIN_NEGATIVES` a slide):
/// most of a node is benign, and its mimics (germinal centres, histiocytes) must be among
/// them for hard-negative mining to find.
const NEGATIVES_PER_POSITIVE: usize = 6;
const MIN_NEGATIVES: usize = 128;
/// Points per side of the grid that measures a tile's tumour fraction.
const LABEL_SAMPLES: usize = 8;
/// Tiles with less tissue are not analysed by `run` either (its default `--min-tissue`).
const MIN_TISSUE: f64 = 0.25;
/// Tumour tiles are also taken half a tile off the grid, right, down and both: four views
/// of every lesion edge, and small lesions not always cut in four.
const HALF_TILE_SHIFTS: [(f64, f64); 3] = [(0.5, 0.0), (0.0, 0.5), (0.5, 0.5)];

/// Reads the cohort in `dir` for a model of `tile_px`-pixel tiles at `model_mpp`; a fifth of
/// the slides (at least one, when there are two or more) go to validation.
pub fn load_cohort(
    dir: &Path,
    model_mpp: f64,
    tile_px: u32,
    seed: u64,
    read_tiles: bool,
) -> Result<Cohort, TrainError> {
    let mut jobs = discover(&[dir.to_path_buf()]).map_err(TrainError::Discover)?;
    jobs.retain(|j| {
        let stem = j
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        SlideTruth::find(j.path.parent().unwrap_or(dir), &stem).is_some()
    });
    if jobs.is_empty() {
        return Err(TrainError::NoAnnotatedSlides {
            dir: dir.to_path_buf(),
        });
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
        if read_tiles {
            add_slide(&job.path, model_mpp, tile_px, &mut rng, set)?;
        }
        names.push(name);
        paths.push(job.path.clone());
    }
    Ok(cohort)
}

/// A slide with its ground truth and its tile grid for a model of `tile_px`-pixel tiles at
/// `model_mpp`, as `run` tiles it.
pub struct AnnotatedSlide {
    pub slide: Slide,
    pub truth: SlideTruth,
    pub mask: TissueMask,
    pub plan: TilePlan,
}

/// Opens the slide at `path` with the microns per pixel of its level 0; errors name the file.
pub fn open_with_mpp(path: &Path) -> Result<(Slide, f64), TrainError> {
    let slide = Slide::open(path)?;
    let (mpp, _) = crate::analysis::pipeline::slide_mpp(&slide, None).map_err(|source| TrainError::Mpp {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((slide, mpp))
}

/// Opens the slide at `path` and the ground truth beside it; errors name the file.
pub fn open_annotated(path: &Path, model_mpp: f64, tile_px: u32) -> Result<AnnotatedSlide, TrainError> {
    let (slide, mpp) = open_with_mpp(path)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let truth_path = SlideTruth::find(path.parent().unwrap_or(Path::new(".")), &stem).ok_or_else(|| {
        TrainError::NoTruth {
            path: path.to_path_buf(),
        }
    })?;
    let truth = SlideTruth::load(&truth_path, mpp).map_err(TrainError::Truth)?;
    // As `run` plans (raster order: batches are drawn at random), fluorescence not refused:
    // the truth says what the tissue is.
    let options = PipelineOptions {
        batch: 1,
        min_tissue: MIN_TISSUE,
        allow_dark_background: true,
        ..PipelineOptions::default()
    };
    let PlannedSlide { mask, plan, .. } = plan_slide(&slide, mpp, model_mpp, tile_px, &options, &|_| {})
        .map_err(|source| TrainError::Plan {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(AnnotatedSlide {
        slide,
        truth,
        mask,
        plan,
    })
}

/// The fraction of the `side` × `side` square at (`x`, `y`) (level-0 pixels) inside a lesion,
/// measured on a grid of points.
pub fn tumour_fraction(truth: &SlideTruth, x: f64, y: f64, side: f64) -> f32 {
    let step = side / LABEL_SAMPLES as f64;
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
}

fn add_slide(
    path: &Path,
    model_mpp: f64,
    tile_px: u32,
    rng: &mut Rng,
    set: &mut TileSet,
) -> Result<(), TrainError> {
    let AnnotatedSlide {
        slide,
        truth,
        mask,
        plan,
    } = open_annotated(path, model_mpp, tile_px)?;
    let fraction = |x: f64, y: f64| tumour_fraction(&truth, x, y, plan.tile_level0);
    let labelled: Vec<(Tile, f32)> = plan
        .tiles
        .iter()
        .map(|t| (*t, fraction(t.x as f64, t.y as f64)))
        .collect();
    let mut positives: Vec<(Tile, f32)> = labelled.iter().copied().filter(|l| l.1 > 0.0).collect();
    let mut negatives: Vec<(Tile, f32)> = labelled.iter().copied().filter(|l| l.1 == 0.0).collect();
    rng.shuffle(&mut negatives);
    negatives.truncate((positives.len() * NEGATIVES_PER_POSITIVE).max(MIN_NEGATIVES));
    let shifted: Vec<(Tile, f32)> = positives
        .iter()
        .flat_map(|(t, _)| {
            HALF_TILE_SHIFTS.iter().map(move |(dx, dy)| Tile {
                x: t.x + (dx * plan.tile_level0).round() as i64,
                y: t.y + (dy * plan.tile_level0).round() as i64,
                ..*t
            })
        })
        .map(|t| (t, fraction(t.x as f64, t.y as f64)))
        .filter(|(t, f)| {
            *f > 0.0
                && mask.fraction(t.x as f64, t.y as f64, plan.tile_level0, plan.tile_level0) >= MIN_TISSUE
        })
        .collect();
    positives.extend(shifted);
    positives.append(&mut negatives);
    let index = set.slides.len();
    set.slides.push((slide, plan));
    for (tile, label) in positives {
        set.tiles.push((index, tile));
        set.labels.push(label);
    }
    Ok(())
}
