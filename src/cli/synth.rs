use anyhow::Result;
use clap::Args;
use flashslide::synth::{generate_slide, slide_name, slide_seed, SynthOptions, TumourPlan};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output directory
    #[arg(long)]
    out: PathBuf,
    /// Number of slides
    #[arg(long, default_value_t = 1)]
    slides: usize,
    /// Cohort seed: the same seed and options give byte-identical files
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Width of level 0 in pixels
    #[arg(long, default_value_t = 20_000)]
    width: u64,
    /// Height of level 0 in pixels
    #[arg(long, default_value_t = 16_000)]
    height: u64,
    /// Microns per pixel of level 0
    #[arg(long, default_value_t = 0.5, value_parser = super::values::mpp)]
    mpp: f64,
    /// JPEG quality (default: drawn per slide from the seed, 70–92)
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    jpeg_quality: Option<u8>,
    /// Tumour deposits per slide as ITC,MICRO,MACRO counts (e.g. 0,1,0); default: drawn from
    /// the seed (about a quarter of slides have none)
    #[arg(long, value_parser = parse_plan)]
    lesions: Option<TumourPlan>,
    /// Print nothing but errors
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: SynthArgs) -> Result<ExitCode> {
    let options = SynthOptions {
        width: args.width,
        height: args.height,
        mpp: args.mpp,
        jpeg_quality: args.jpeg_quality,
    };
    for i in 0..args.slides {
        let start = Instant::now();
        let name = slide_name(args.seed, i);
        let s = generate_slide(&args.out, &name, slide_seed(args.seed, i), &options, args.lesions)?;
        if !args.quiet {
            let secs = start.elapsed().as_secs_f64();
            let mp = (args.width * args.height) as f64 / 1e6;
            println!(
                "{}  {} lesion(s)  {:.1} s  {:.1} MP/s",
                s.slide.display(),
                s.lesion_count,
                secs,
                mp / secs
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_plan(text: &str) -> Result<TumourPlan, String> {
    let counts: Vec<usize> = text
        .split(',')
        .map(|v| v.trim().parse().map_err(|_| format!("{v:?} is not a count")))
        .collect::<Result<_, _>>()?;
    match counts[..] {
        [itc, micro, macro_] => Ok(TumourPlan { itc, micro, macro_ }),
        _ => Err("expected three counts: ITC,MICRO,MACRO".into()),
    }
}
