use super::device;
use anyhow::{bail, Context, Result};
use clap::Args;
use flashslide::analysis::embed::{embed_image, embed_slide};
use flashslide::backend::DeviceChoice;
use flashslide::backend::{Backend, Selected};
use flashslide::export::features::{
    metadata, write_features, write_features_h5, Provenance, TileGeometry, HDF5,
};
use flashslide::slide::fingerprint::fingerprint;
use flashslide::slide::{Slide, SlideErrorKind};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// A slide, or an ordinary PNG/JPEG image of the model's input size
    input: PathBuf,
    /// Model directory (config.json, model.safetensors); default: the bundled
    /// flashslide-synth-v1 (built into the binary)
    #[arg(long)]
    model: Option<PathBuf>,
    /// Output file: safetensors, or HDF5 (CLAM/Trident layout) when it ends in .h5 (builds
    /// with `--features hdf5`)
    #[arg(short, long)]
    output: PathBuf,
    /// Microns per pixel of the slide, when the file does not say (or to override it)
    #[arg(long, value_parser = super::values::mpp)]
    mpp: Option<f64>,
    /// Tiles per forward pass
    #[arg(long, default_value_t = 32, value_parser = super::values::batch)]
    batch: usize,
    /// Keep tiles with at least this fraction of tissue
    #[arg(long, default_value_t = 0.25, value_parser = super::values::unit_interval)]
    min_tissue: f64,
    /// Where to run the model
    #[arg(long, value_parser = device::parser(), default_value = "auto")]
    device: DeviceChoice,
    /// No progress bar
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: EmbedArgs) -> Result<ExitCode> {
    // A missing input is said before anything about the device.
    std::fs::metadata(&args.input).with_context(|| format!("{}", args.input.display()))?;
    match device::open(args.device, args.quiet)? {
        Selected::Cpu(b) => run_on(args, &b),
        Selected::Cuda(b) => run_on(args, &b),
    }
}

fn run_on<B: Backend>(args: EmbedArgs, backend: &B) -> Result<ExitCode> {
    if is_hdf5(&args.output) && !HDF5 {
        bail!(
            "{}: this flashslide was built without HDF5; build it with `cargo build --release --features hdf5` \
             (needs libhdf5-dev), or write .safetensors",
            args.output.display()
        );
    }
    let model = super::model_choice::load(args.model.as_deref(), backend)?;
    if !args.quiet {
        super::model_choice::say_notice(&model);
    }
    let (device, input) = (backend.describe(), args.input.display().to_string());
    let print = fingerprint(&args.input).with_context(|| args.input.display().to_string())?;
    let provenance = |mpp_source| Provenance {
        model: &model.config.name,
        model_sha256: &model.hash,
        tile_encoder_sha256: &model.tile_encoder_hash,
        model_mpp: model.config.mpp,
        device: &device,
        slide: &input,
        fingerprint: &print,
        mpp_source,
    };
    let slide = match Slide::open(&args.input) {
        Ok(s) => Some(s),
        // Not a slide: an ordinary image of the model's input size.
        Err(e) if matches!(e.kind, SlideErrorKind::UnknownFormat(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let Some(slide) = slide else {
        let feature = embed_image(&args.input, &model)?;
        let geometry = TileGeometry {
            tile_px: model.config.image_size as u32,
            tile_level0: model.config.image_size as f64,
            slide_mpp: model.config.mpp,
        };
        // An image is taken to be at the model's resolution.
        let meta = metadata(&provenance("the model's (an image)"), geometry);
        write_output(&args.output, &feature, feature.len(), &[[0, 0]], geometry, &meta)?;
        return Ok(ExitCode::SUCCESS);
    };
    let (mpp, source) = flashslide::analysis::pipeline::slide_mpp(&slide, args.mpp)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.input.display()))?;
    let bar = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(0);
        b.set_style(ProgressStyle::with_template(
            "{msg} {bar:40} {pos}/{len} tiles  {per_sec}  eta {eta}",
        )?);
        b.set_message("embedding");
        b
    };
    let e = embed_slide(
        &slide,
        mpp,
        &model,
        args.batch,
        args.min_tissue,
        &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    let geometry = TileGeometry {
        tile_px: model.config.image_size as u32,
        tile_level0: e.tile_level0,
        slide_mpp: mpp,
    };
    let meta = metadata(&provenance(&source), geometry);
    write_output(&args.output, &e.features, e.dim, &e.coords, geometry, &meta)?;
    if !args.quiet {
        eprintln!(
            "{} tiles, {} features each: {}",
            e.coords.len(),
            e.dim,
            args.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn is_hdf5(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("h5") || e.eq_ignore_ascii_case("hdf5"))
}

/// Writes the features in the format the output's extension names.
fn write_output(
    path: &Path,
    features: &[f32],
    dim: usize,
    coords: &[[i64; 2]],
    geometry: TileGeometry,
    meta: &BTreeMap<String, String>,
) -> Result<()> {
    let written = if is_hdf5(path) {
        write_features_h5(path, features, dim, coords, geometry, meta)
    } else {
        write_features(path, features, dim, coords, meta)
    };
    written.with_context(|| format!("cannot write {}", path.display()))
}
