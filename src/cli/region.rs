use anyhow::{Context, Result};
use clap::Args;
use flashslide::slide::{Slide, DEFAULT_MAX_REGION_PIXELS};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct RegionArgs {
    /// The slide file
    slide: PathBuf,
    /// Pyramid level (0 is full resolution)
    #[arg(long, default_value_t = 0)]
    level: usize,
    /// Left edge, in level-0 pixels
    #[arg(long, allow_hyphen_values = true)]
    x: i64,
    /// Top edge, in level-0 pixels
    #[arg(long, allow_hyphen_values = true)]
    y: i64,
    /// Width, in pixels of the level
    #[arg(long)]
    width: u32,
    /// Height, in pixels of the level
    #[arg(long)]
    height: u32,
    /// Output PNG file (RGBA)
    #[arg(short, long)]
    output: PathBuf,
    /// Refuse regions larger than this many pixels
    #[arg(long, default_value_t = DEFAULT_MAX_REGION_PIXELS)]
    max_pixels: u64,
}

pub fn run(args: RegionArgs) -> Result<ExitCode> {
    let mut slide = Slide::open(&args.slide)?;
    slide.set_max_region_pixels(args.max_pixels);
    let img = slide.read_region(args.level, args.x, args.y, args.width, args.height)?;
    let buf = image::RgbaImage::from_raw(img.width, img.height, img.data)
        .context("region buffer has the wrong size")?;
    buf.save_with_format(&args.output, image::ImageFormat::Png)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}
