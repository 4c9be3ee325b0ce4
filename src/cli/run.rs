use super::device::{self, Device};
use anyhow::{bail, Result};
use clap::Args;
use flashslide::backend::{Backend, Selected};
use flashslide::batch::discover::{discover, in_shard, parse_shard, shard_from_env};
use flashslide::batch::{check_output_dir, run_batch, write_report, BatchOptions, Event, Outcome};
use flashslide::model::Model;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Slides, and directories searched recursively for them
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output directory: one folder per slide, a batch report
    #[arg(long)]
    out: PathBuf,
    /// Model directory (config.json and model.safetensors with a slide encoder); default:
    /// the bundled models/flashslide-synth-v1
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
    /// Take shard I of N (0 ≤ I < N) of the slides, by a hash of each one's path; default
    /// from SLURM_ARRAY_TASK_ID/_MIN/_COUNT or JOB_COMPLETION_INDEX with FLASHSLIDE_SHARDS
    #[arg(long)]
    shard: Option<String>,
    /// Microns per pixel for slides that do not state it
    #[arg(long)]
    mpp: Option<f64>,
    /// Also write each tile's feature (features.safetensors; and features.h5, CLAM/Trident layout, in builds with `--features hdf5`)
    #[arg(long)]
    features: bool,
    /// Analyse only inside these polygons: a GeoJSON file (level-0 pixels, as QuPath
    /// exports), or a directory of <slide file stem>.geojson
    #[arg(long)]
    roi: Option<PathBuf>,
    /// Tumour regions: tokens at or above this probability
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Tiles per stage-1 forward pass
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Keep tiles with at least this fraction of tissue
    #[arg(long, default_value_t = 0.25)]
    min_tissue: f64,
    /// Decode tiles on the CPU even where the GPU's JPEG decoder could (for comparisons)
    #[arg(long)]
    cpu_decoding: bool,
    /// Take over a slide's lock when its heartbeat is older than this many seconds
    #[arg(long, default_value_t = 600)]
    stale_lock_seconds: u64,
    /// No progress bars or log lines (errors still print)
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    match device::open(args.device, args.quiet)? {
        Selected::Cpu(b) => run_on(args, &b),
        Selected::Cuda(b) => run_on(args, &b),
    }
}

/// The bundled model's directory, as a path from the working directory or from the
/// checkout the executable was built in (target/<profile>/flashslide).
const BUNDLED_MODEL: &str = "models/flashslide-synth-v1";

fn bundled_model() -> Result<PathBuf> {
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|root| root.join(BUNDLED_MODEL)));
    std::iter::once(PathBuf::from(BUNDLED_MODEL))
        .chain(beside_binary)
        .find(|dir| dir.join("config.json").is_file())
        .ok_or_else(|| {
            anyhow::anyhow!("the bundled model {BUNDLED_MODEL} is not here (run from the flashslide checkout) and no --model was given")
        })
}

fn run_on<B: Backend>(args: RunArgs, backend: &B) -> Result<ExitCode> {
    let shard = match &args.shard {
        Some(s) => Some(parse_shard(s).map_err(anyhow::Error::msg)?),
        None => shard_from_env(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?,
    };
    let model_dir = match &args.model {
        Some(dir) => dir.clone(),
        None => bundled_model()?,
    };
    if !args.cpu_decoding {
        backend.prepare_tile_decoder();
    }
    let model = Model::load(&model_dir, backend)?;
    if model.slide_encoder.is_none() {
        bail!(
            "{}: the model has no slide encoder (stage 2), which `run` needs",
            model_dir.display()
        );
    }
    check_output_dir(&args.out).map_err(anyhow::Error::msg)?;
    let mut jobs = discover(&args.inputs)?;
    if let Some((i, n)) = shard {
        jobs.retain(|j| in_shard(j, i, n));
    }
    let mut options = BatchOptions::new(args.out.clone());
    options.mpp = args.mpp;
    options.features = args.features;
    options.roi = args.roi.clone();
    options.threshold = args.threshold;
    options.pipeline.batch = args.batch;
    options.pipeline.min_tissue = args.min_tissue;
    options.pipeline.keep_features = args.features;
    options.pipeline.decode_on_device = !args.cpu_decoding;
    options.stale_lock = std::time::Duration::from_secs(args.stale_lock_seconds);

    let terminal = !args.quiet && std::io::stderr().is_terminal();
    let log = !args.quiet && !terminal;
    let bars = MultiProgress::new();
    let (slides_bar, tiles_bar) = if terminal {
        let s = bars.add(ProgressBar::new(jobs.len() as u64));
        s.set_style(ProgressStyle::with_template(
            "slides {bar:30} {pos}/{len}  {msg}",
        )?);
        let t = bars.add(ProgressBar::new(0));
        t.set_style(ProgressStyle::with_template(
            "tiles  {bar:30} {pos}/{len}  {per_sec}  eta {eta}",
        )?);
        (s, t)
    } else {
        (ProgressBar::hidden(), ProgressBar::hidden())
    };
    if log {
        eprintln!(
            "flashslide: {} slides{}, model {} on {}",
            jobs.len(),
            shard.map_or(String::new(), |(i, n)| format!(" (shard {i} of {n})")),
            model.config.name,
            backend.describe()
        );
    }
    let reports = run_batch(&jobs, &model, &options, &|event| match event {
        Event::SlideStarted { index, total, job } => {
            slides_bar.set_message(job.relative.clone());
            tiles_bar.set_position(0);
            if log {
                eprintln!("[{}/{total}] {}", index + 1, job.relative);
            }
        }
        Event::Tiles { done, total } => {
            tiles_bar.set_length(total as u64);
            tiles_bar.set_position(done as u64);
        }
        Event::SlideFinished { job, outcome } => {
            slides_bar.inc(1);
            let line = match outcome {
                Outcome::Done { seconds } => format!("{}: done in {seconds:.1} s", job.relative),
                Outcome::Skipped => format!("{}: already done, skipped", job.relative),
                Outcome::Busy => format!("{}: another worker has it, skipped", job.relative),
                Outcome::Failed { reason } => format!("{}: FAILED: {reason}", job.relative),
            };
            if matches!(outcome, Outcome::Failed { .. }) && !log {
                bars.suspend(|| eprintln!("flashslide: {line}"));
            } else if log {
                eprintln!("{line}");
            }
        }
    });
    slides_bar.finish_and_clear();
    tiles_bar.finish_and_clear();
    let report_name = match shard {
        Some((i, n)) => format!("batch-report-shard-{i}-of-{n}.json"),
        None => "batch-report.json".into(),
    };
    write_report(&args.out.join(&report_name), &reports)?;
    flashslide::export::index::write_index(&args.out)?;
    let failed = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
        .count();
    if !args.quiet {
        let done = reports
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Done { .. }))
            .count();
        let skipped = reports.len() - done - failed;
        eprintln!(
            "flashslide: {done} analysed, {skipped} skipped, {failed} failed; report: {}, index: {}",
            args.out.join(report_name).display(),
            args.out.join("index.html").display()
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
