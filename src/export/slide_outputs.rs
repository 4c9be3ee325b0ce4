//! Every file of a slide's output folder, written from its analysis: heatmap.png,
//! probability.tiff, qupath.geojson, tissue.geojson, detections.csv, the features when asked
//! for, and summary.json last (its presence means the folder is complete).

use super::summary::{RunInfo, Seconds, Summary, SUMMARY_FILE};
use super::{detections, features, geojson, heatmap, probability_tiff, write_atomically, ProbabilityGrid};
use crate::analysis::pipeline::SlideAnalysis;
use crate::slide::fingerprint::Fingerprint;
use crate::slide::{Slide, SlideError};
use crate::util::process;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The image outputs (heatmap.png, probability.tiff) read the slide as they write.
    #[error(transparent)]
    Slide(#[from] SlideError),
    #[error("summary.json: {0}")]
    Json(#[from] serde_json::Error),
}

/// The model a slide was analysed with, as its outputs record it.
#[derive(Clone, Copy, Debug)]
pub struct ModelRecord<'a> {
    pub name: &'a str,
    pub sha256: &'a str,
    /// Of the tile encoder's tensors alone (`Model::tile_encoder_hash`).
    pub tile_encoder_sha256: &'a str,
    /// The model's notice (the bundled models: trained on synthetic slides only).
    pub notice: Option<&'a str>,
    /// Microns per pixel of the model's input.
    pub mpp: f64,
}

/// What the outputs are drawn with (the `run` options of the same names).
#[derive(Clone, Copy, Debug)]
pub struct ExportOptions {
    pub threshold: f32,
    pub detection_floor: f32,
    pub nms_um: f64,
    pub heatmap_px: u64,
    /// The pipeline's least tissue fraction of a tile, quoted when no tile had enough.
    pub min_tissue: f64,
}

/// A slide's analysis and what its summary records besides.
pub struct SlideResult<'a> {
    pub slide_path: &'a Path,
    pub slide: &'a Slide,
    pub fingerprint: Fingerprint,
    pub analysis: &'a SlideAnalysis,
    pub model: ModelRecord<'a>,
    pub mpp_source: String,
    /// What decides the outputs besides the slide and model (compared when resuming).
    pub settings: serde_json::Value,
    pub device: String,
    pub device_memory_bytes: Option<u64>,
}

/// Writes every output of `result` into `dir`, side by side, then summary.json, whose
/// `seconds.total` is `working_seconds()` as it is written.
pub fn write_slide_outputs(
    dir: &Path,
    result: SlideResult,
    options: &ExportOptions,
    working_seconds: &dyn Fn() -> f64,
) -> Result<Summary, ExportError> {
    let SlideResult {
        slide_path,
        slide,
        fingerprint,
        analysis,
        model,
        mpp_source,
        settings,
        device,
        device_memory_bytes,
    } = result;
    let mpp = analysis.mpp;
    let export_start = Instant::now();
    let grid = ProbabilityGrid::from_analysis(analysis);
    let io = |what: &str| {
        let path = dir.join(what);
        move |source| ExportError::Io { path, source }
    };
    let coords: Vec<[i64; 2]> = analysis.plan.tiles.iter().map(|t| [t.x, t.y]).collect();
    let geometry = features::TileGeometry {
        tile_px: analysis.plan.tile_px,
        tile_level0: analysis.plan.tile_level0,
        slide_mpp: mpp,
    };
    let slide_name = slide_path.display().to_string();
    let feature_metadata = features::metadata(
        &features::Provenance {
            model: model.name,
            model_sha256: model.sha256,
            tile_encoder_sha256: model.tile_encoder_sha256,
            model_mpp: model.mpp,
            device: &device,
            slide: &slide_name,
            fingerprint: &fingerprint,
            mpp_source: &mpp_source,
        },
        geometry,
    );
    let extent = [slide.dimensions().0, slide.dimensions().1];
    let ids = geojson::FeatureIds::new(&fingerprint.head_tail_sha256, fingerprint.size, model.sha256);
    // The outputs are independent: written side by side, each with the seconds it took.
    let regions = OnceLock::new();
    let found = OnceLock::new();
    type Write<'a> = Box<dyn Fn() -> Result<(), ExportError> + Sync + 'a>;
    let mut writes: Vec<(&str, Write)> = vec![
        (
            "heatmap.png",
            Box::new(|| {
                heatmap::write_heatmap(
                    &dir.join("heatmap.png"),
                    slide,
                    &grid,
                    &analysis.mask,
                    options.threshold,
                    options.heatmap_px,
                )
                .map_err(ExportError::from)
            }),
        ),
        (
            "probability.tiff",
            Box::new(|| {
                probability_tiff::write_probability_tiff(&dir.join("probability.tiff"), slide, &grid)
                    .map_err(ExportError::from)
            }),
        ),
        (
            "qupath.geojson",
            Box::new(|| {
                let regions =
                    regions.get_or_init(|| geojson::tumour_regions(&grid, options.threshold, extent));
                geojson::write_qupath(&dir.join("qupath.geojson"), &grid, regions, extent, ids)
                    .map_err(io("qupath.geojson"))
            }),
        ),
        (
            "tissue.geojson",
            Box::new(|| {
                geojson::write_tissue(&dir.join("tissue.geojson"), &analysis.mask, extent, ids)
                    .map_err(io("tissue.geojson"))
            }),
        ),
        (
            "detections.csv",
            Box::new(|| {
                let found =
                    found.get_or_init(|| detections::detect(&grid, options.detection_floor, options.nms_um));
                detections::write_csv(&dir.join("detections.csv"), found).map_err(io("detections.csv"))
            }),
        ),
    ];
    if let Some(tile_features) = &analysis.tile_features {
        let (io, coords, metadata) = (&io, &coords, &feature_metadata);
        writes.push((
            "features.safetensors",
            Box::new(move || {
                features::write_features(
                    &dir.join("features.safetensors"),
                    tile_features,
                    analysis.feature_dim,
                    coords,
                    metadata,
                )
                .map_err(io("features.safetensors"))
            }),
        ));
        if features::HDF5 {
            writes.push((
                "features.h5",
                Box::new(move || {
                    features::write_features_h5(
                        &dir.join("features.h5"),
                        tile_features,
                        analysis.feature_dim,
                        coords,
                        geometry,
                        metadata,
                    )
                    .map_err(io("features.h5"))
                }),
            ));
        }
    }
    let outputs: Vec<(String, f64)> = writes
        .par_iter()
        .map(|(name, write)| {
            let t = Instant::now();
            write()?;
            Ok((name.to_string(), t.elapsed().as_secs_f64()))
        })
        .collect::<Result<_, ExportError>>()?;
    drop(writes);
    let regions = regions.into_inner().expect("qupath.geojson traced them");
    let found = found.into_inner().expect("detections.csv found them");
    let export_seconds = export_start.elapsed().as_secs_f64();

    let analysed = !analysis.probabilities.is_empty();
    let summary = Summary {
        software: format!("flashslide {}", env!("CARGO_PKG_VERSION")),
        slide: slide_name,
        fingerprint,
        model: model.name.to_string(),
        model_sha256: model.sha256.to_string(),
        model_notice: model.notice.map(str::to_string),
        settings,
        device,
        tile_decoding: analysis.tile_decoding.to_string(),
        mpp,
        mpp_source,
        dimensions: extent,
        tissue_tiles: analysis.plan.tiles.len(),
        tokens: analysis.probabilities.len(),
        token_um: analysis.token_level0() * mpp,
        seconds: Seconds::from_stages(&analysis.seconds, export_seconds, working_seconds()),
        peak_rss_bytes: process::peak_rss(),
        device_memory_bytes,
        slide_probability: analysed.then_some(analysis.slide_probability),
        max_probability: analysed.then(|| analysis.probabilities.iter().cloned().fold(0.0, f32::max)),
        no_tissue: (!analysed).then(|| {
            format!(
                "no tile had tissue at the model's {} µm/px (at least {} of a tile): nothing was analysed",
                model.mpp, options.min_tissue
            )
        }),
        // A fold from +0: an empty sum of f64 is -0, which reads "-0.000 mm²".
        tumour_area_mm2: regions.iter().fold(0.0, |sum, r| sum + r.area_mm2),
        tumour_regions: regions.len(),
        detections: found.len(),
        outputs: outputs.iter().map(|(name, _)| name.clone()).collect(),
        export_seconds: outputs.into_iter().collect(),
        run: RunInfo {
            finished: process::utc_now(),
            host: process::host(),
            command: std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        },
    };
    let text = serde_json::to_string_pretty(&summary)?;
    write_atomically(&dir.join(SUMMARY_FILE), |out| {
        std::io::Write::write_all(out, text.as_bytes())
    })
    .map_err(io(SUMMARY_FILE))?;
    Ok(summary)
}
