//! Synthetic H&E lymph-node slides with known tumour, for tests, training and the benchmark
//! against downscaled analysis (see `render` for what makes tumour tell-able only at full
//! resolution). Every slide is a pure function of its seed and options: byte-identical on
//! any machine and any thread count.

mod render;
mod scene;
mod truth;

pub use scene::{MimicKind, Region, TumourPlan};
pub use truth::{LesionRecord, Truth, MASK_DOWNSAMPLE};

use crate::slide::writer::{PyramidOptions, PyramidWriter};
use crate::slide::SlideError;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub width: u64,
    pub height: u64,
    /// Microns per pixel of level 0.
    pub mpp: f64,
    /// JPEG quality; drawn per slide from the seed (70–92) when `None`.
    pub jpeg_quality: Option<u8>,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            width: 20_000,
            height: 16_000,
            mpp: 0.5,
            jpeg_quality: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Write(#[from] SlideError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("bad options: {0}")]
    Options(String),
}

/// The files of one generated slide.
#[derive(Debug, Clone)]
pub struct SynthSlide {
    pub slide: PathBuf,
    pub lesions_json: PathBuf,
    pub mask: PathBuf,
    pub geojson: PathBuf,
    pub lesion_count: usize,
}

/// The seed of slide `index` of a cohort.
pub fn slide_seed(cohort_seed: u64, index: usize) -> u64 {
    crate::util::rng::hash(cohort_seed, index as i64, 0x5EED, 0)
}

/// The name of slide `index` of a cohort.
pub fn slide_name(cohort_seed: u64, index: usize) -> String {
    format!("synth-s{cohort_seed}-{index:03}")
}

/// Generates one slide named `name` (files `name.svs`, `name.lesions.json`,
/// `name.mask.tiff`, `name.lesions.geojson`); `plan` fixes its tumour deposits, else they
/// are drawn from the seed.
pub fn generate_slide(
    dir: &Path,
    name: &str,
    seed: u64,
    options: &SynthOptions,
    plan: Option<TumourPlan>,
) -> Result<SynthSlide, SynthError> {
    let o = options;
    if o.width < 512 || o.height < 512 || o.width > 1 << 22 || o.height > 1 << 22 {
        return Err(SynthError::Options(format!(
            "size {}x{} outside 512..4194304",
            o.width, o.height
        )));
    }
    if !(0.1..=4.0).contains(&o.mpp) {
        return Err(SynthError::Options(format!("mpp {} outside 0.1..4", o.mpp)));
    }
    std::fs::create_dir_all(dir).map_err(|source| SynthError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let scene = scene::Scene::plan(seed, o.width, o.height, o.mpp, plan);
    let mut look_rng = crate::util::rng::Rng::new(seed ^ 0x100C);
    let look = render::Look::draw(&mut look_rng);
    let quality = o.jpeg_quality.unwrap_or_else(|| look_rng.int(70, 92) as u8);

    let slide = dir.join(format!("{name}.svs"));
    let renderer = render::Renderer::new(&scene, look, seed);
    let layout = PyramidOptions::aperio(o.width, o.height, o.mpp, quality);
    let writer_tile = layout.tile_size;
    let mut writer = PyramidWriter::create(&slide, o.width, o.height, layout)?;
    // Render the next band while the last one is encoded, so neither waits for the other.
    let band_rows = |y: u64| (o.height - y).min(writer_tile as u64) as u32;
    let mut y = 0u64;
    let mut band = renderer.render_band(0, band_rows(0));
    while y < o.height {
        let next_y = y + band_rows(y) as u64;
        let (written, next) = rayon::join(
            || writer.write_band(&band),
            || (next_y < o.height).then(|| renderer.render_band(next_y, band_rows(next_y))),
        );
        written?;
        y = next_y;
        band = next.unwrap_or_default();
    }
    writer.finish()?;

    let mask = dir.join(format!("{name}.mask.tiff"));
    truth::write_mask(&scene, &mask)?;
    let truth = Truth::of(&scene, &format!("{name}.svs"), seed, &format!("{name}.mask.tiff"));
    let lesions_json = dir.join(format!("{name}.lesions.json"));
    write_json(
        &lesions_json,
        &serde_json::to_value(&truth).expect("truth serialises"),
    )?;
    let geojson = dir.join(format!("{name}.lesions.geojson"));
    write_json(&geojson, &truth.geojson())?;
    Ok(SynthSlide {
        slide,
        lesions_json,
        mask,
        geojson,
        lesion_count: truth.lesions.len(),
    })
}

/// Writes JSON under a temporary name, then renames: never a partial file.
fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), SynthError> {
    let io = |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_string_pretty(value).expect("JSON serialises");
    crate::util::atomic::write_bytes(path, text.as_bytes()).map_err(io)
}
