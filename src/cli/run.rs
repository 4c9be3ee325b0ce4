use super::device;
use anyhow::{bail, Context, Result};
use clap::Args;
use flashslide::backend::DeviceChoice;
use flashslide::backend::{open_devices, Backend, DeviceList, Selected};
use flashslide::batch::shard::{in_shard, parse_shard, shard_from_env};
use flashslide::batch::{
    check_output_dir, run_batch_on, unix_time, write_report, BatchOptions, Event, Outcome, SlideReport,
    Worker,
};
use flashslide::slide::discover::{walk, Discovery};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Slides, and directories searched recursively for them
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output directory: one folder per slide, a batch report
    #[arg(long)]
    out: PathBuf,
    /// Model directory (config.json and model.safetensors with a slide encoder); default:
    /// the bundled flashslide-synth-v1 (built into the binary)
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_parser = device::parser(), default_value = "auto")]
    device: DeviceChoice,
    /// Several GPUs: `all`, or their numbers (0,1,...); one worker a GPU, slides handed out
    /// largest first as each worker is ready for another
    #[arg(long, value_parser = DeviceList::parse, conflicts_with = "device")]
    devices: Option<DeviceList>,
    /// Take shard I of N (0 ≤ I < N) of the slides, by a hash of each one's path; default
    /// from SLURM_ARRAY_TASK_ID/_MIN/_COUNT or JOB_COMPLETION_INDEX with FLASHSLIDE_SHARDS
    #[arg(long)]
    shard: Option<String>,
    /// Microns per pixel for slides that do not state it
    #[arg(long, value_parser = super::values::mpp)]
    mpp: Option<f64>,
    /// Microns per pixel of particular slides: a CSV with columns wsi (the file name) and
    /// mpp, as Trident's custom MPP table; over what those slides state
    #[arg(long, value_name = "FILE")]
    mpp_csv: Option<PathBuf>,
    /// Also write each tile's feature (features.safetensors; and features.h5, CLAM/Trident layout, in builds with `--features hdf5`)
    #[arg(long)]
    features: bool,
    /// Analyse only inside these polygons: a GeoJSON file (level-0 pixels, as QuPath
    /// exports), or a directory of <slide file stem>.geojson
    #[arg(long)]
    roi: Option<PathBuf>,
    /// Tumour regions: tokens at or above this probability
    #[arg(long, default_value_t = 0.5, value_parser = super::values::probability)]
    threshold: f32,
    /// Tiles per stage-1 forward pass
    #[arg(long, default_value_t = 64, value_parser = super::values::batch)]
    batch: usize,
    /// Keep tiles with at least this fraction of tissue
    #[arg(long, default_value_t = 0.25, value_parser = super::values::unit_interval)]
    min_tissue: f64,
    /// Analyse slides with a dark background (fluorescence) too, which are refused by default
    #[arg(long)]
    allow_dark_background: bool,
    /// Decode tiles on the CPU even where the GPU's JPEG decoder could (for comparisons)
    #[arg(long)]
    cpu_decoding: bool,
    /// Take over a slide's lock held from another host when its heartbeat is older than this
    /// many seconds (on this host a lock is taken over as soon as its process is gone)
    #[arg(long, default_value_t = 600)]
    stale_lock_seconds: u64,
    /// No progress bars or log lines (errors still print)
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    // Before any thread is started, so that every one inherits the mask.
    let termination = Termination::block();
    let stage: Tally = Arc::new(Mutex::new(Stage::Starting));
    let waiting = stage.clone();
    std::thread::spawn(move || on_signal(termination, waiting));
    // What needs no device first: a usage error or an empty input is said before anything
    // about the GPU.
    let shard = match &args.shard {
        Some(s) => Some(parse_shard(s)?),
        None => shard_from_env(|k| std::env::var(k).ok())?,
    };
    let discovery = walk(&args.inputs)?;
    if discovery.jobs.is_empty() {
        let mut message = format!(
            "no slides found under {}",
            args.inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for note in &discovery.notes {
            message.push_str(&format!("\n  {note}"));
        }
        bail!(message);
    }
    let mpp_table = match &args.mpp_csv {
        Some(path) => flashslide::batch::mpp_table::read_mpp_table(path)?,
        None => Default::default(),
    };
    check_output_dir(&args.out)?;
    let given = Given {
        shard,
        discovery,
        mpp_table,
    };
    if let Some(list) = &args.devices {
        let backends = open_devices(list)?;
        return run_on(args, given, &backends, stage);
    }
    match device::open(args.device, args.quiet)? {
        Selected::Cpu(b) => run_on(args, given, &[b], stage),
        Selected::Cuda(b) => run_on(args, given, &[b], stage),
    }
}

/// SIGINT (Ctrl-C) and SIGTERM (what SLURM and Kubernetes send), blocked in every thread
/// and waited for by one of their own: a signal never stops a thread at a random point, and
/// that thread writes what the batch has so far before the process exits (128 + the
/// signal's number: 130, 143). SIGKILL cannot be caught: the dead lock holder's pid lets the
/// next run take its slides at once.
#[cfg(unix)]
#[derive(Clone, Copy)]
struct Termination(libc::sigset_t);

#[cfg(unix)]
impl Termination {
    fn block() -> Termination {
        // SAFETY: `set` is plain data, initialised by sigemptyset before it is read;
        // pthread_sigmask reads it and changes only this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Termination(set)
        }
    }

    /// Waits for one of the signals; its number and name.
    fn wait(&self) -> (i32, &'static str) {
        let mut signal = 0;
        // SAFETY: the set was initialised by `block`; sigwait writes one int.
        while unsafe { libc::sigwait(&self.0, &mut signal) } != 0 {}
        (
            signal,
            if signal == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            },
        )
    }
}

/// Elsewhere the signals keep their default action.
#[cfg(not(unix))]
#[derive(Clone, Copy)]
struct Termination;

#[cfg(not(unix))]
impl Termination {
    fn block() -> Termination {
        Termination
    }

    fn wait(&self) -> (i32, &'static str) {
        loop {
            std::thread::park();
        }
    }
}

/// Where the batch is, for the thread that waits for signals.
enum Stage {
    /// Nothing locked or written yet (the model loads, the inputs are searched).
    Starting,
    /// Every slide's outcome so far (those without one: interrupted), and where the report
    /// goes.
    Running {
        reports: Vec<SlideReport>,
        out: PathBuf,
        report_name: String,
        notes: Vec<String>,
    },
    /// The final report is written: the process exits by itself.
    Over,
}

type Tally = Arc<Mutex<Stage>>;

/// The report and index.html, from `reports`.
fn write_results(out: &Path, report_name: &str, reports: &[SlideReport], notes: &[String]) -> Result<()> {
    write_report(&out.join(report_name), reports, notes)?;
    flashslide::export::index::write_index(out)?;
    flashslide::export::challenge::write_challenge_folder(out)?;
    Ok(())
}

/// On a signal: the report of the slides finished so far, the others marked interrupted,
/// the locks released, and exit.
fn on_signal(termination: Termination, stage: Tally) {
    let (signal, name) = termination.wait();
    let mut stage = stage.lock().unwrap_or_else(|e| e.into_inner());
    match std::mem::replace(&mut *stage, Stage::Over) {
        Stage::Starting => eprintln!("flashslide: stopped by {name} before any slide was started"),
        Stage::Running {
            mut reports,
            out,
            report_name,
            notes,
        } => {
            let now = unix_time();
            let mut finished = reports.len();
            for r in reports
                .iter_mut()
                .filter(|r| matches!(r.outcome, Outcome::Interrupted))
            {
                r.time = now;
                finished -= 1;
            }
            flashslide::batch::lock::release_all();
            let written = write_results(&out, &report_name, &reports, &notes);
            eprintln!(
                "flashslide: stopped by {name}: {finished} of {} slides had an outcome, the others are marked interrupted; report: {}{}",
                reports.len(),
                out.join(&report_name).display(),
                written.err().map_or(String::new(), |e| format!(" (not written: {e:#})"))
            );
        }
        Stage::Over => return, // the batch is over and its report written
    }
    exit_now(128 + signal);
}

/// Ends the process without its exit handlers: the report is written and the locks are
/// released, and CUDA's handlers tear down the device, which waits for whatever a GPU call
/// in flight is doing. A `run` whose nvJPEG call hung printed its report on SIGTERM and
/// then never exited.
#[cfg(unix)]
fn exit_now(code: i32) -> ! {
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // SAFETY: _exit takes an int and does not return.
    unsafe { libc::_exit(code) }
}

#[cfg(not(unix))]
fn exit_now(code: i32) -> ! {
    std::process::exit(code)
}

/// What `run` read and checked before opening the device.
struct Given {
    shard: Option<(usize, usize)>,
    discovery: Discovery,
    mpp_table: std::collections::BTreeMap<String, f64>,
}

/// The batch on `backends`, one worker each.
fn run_on<B: Backend>(args: RunArgs, given: Given, backends: &[B], stage: Tally) -> Result<ExitCode> {
    let Given {
        shard,
        discovery,
        mpp_table,
    } = given;
    let mut models = Vec::with_capacity(backends.len());
    for backend in backends {
        if !args.cpu_decoding {
            backend.prepare_tile_decoder();
        }
        let model = super::model_choice::load(args.model.as_deref(), backend)?;
        // Before the first slide's clock, as a compiled PyTorch model is warmed: the GPU
        // times its GEMMs' candidates on a shape's first pass.
        if backend.warms_up() {
            model
                .tile_encoder
                .warm_up(args.batch)
                .context("warming the tile encoder up on the device")?;
        }
        models.push(model);
    }
    let workers: Vec<Worker<B>> = models
        .iter()
        .map(|model| Worker {
            model,
            device: model.tile_encoder.backend().describe(),
        })
        .collect();
    let model = &models[0];
    if model.slide_encoder.is_none() {
        bail!(
            "{}: the model has no slide encoder (stage 2), which `run` needs",
            args.model.as_deref().unwrap_or(Path::new("the model")).display()
        );
    }
    if !args.quiet {
        super::model_choice::say_notice(model);
        if args.features && !flashslide::export::features::HDF5 {
            eprintln!(
                "flashslide: note: features.h5 is not written: this flashslide was built without HDF5 \
                 (`cargo build --release --features hdf5`, with libhdf5-dev); features.safetensors is"
            );
        }
    }
    let (mut jobs, notes) = (discovery.jobs, discovery.notes);
    if let Some((i, n)) = shard {
        jobs.retain(|j| in_shard(j, i, n));
    }
    if !args.quiet {
        const SHOWN: usize = 20;
        for note in notes.iter().take(SHOWN) {
            eprintln!("flashslide: note: {note}");
        }
        if notes.len() > SHOWN {
            eprintln!(
                "flashslide: and {} more notes (in the report)",
                notes.len() - SHOWN
            );
        }
    }
    let report_name = match shard {
        Some((i, n)) => format!("batch-report-shard-{i}-of-{n}.json"),
        None => "batch-report.json".into(),
    };
    *stage.lock().unwrap_or_else(|e| e.into_inner()) = Stage::Running {
        reports: jobs.iter().map(SlideReport::interrupted).collect(),
        out: args.out.clone(),
        report_name: report_name.clone(),
        notes: notes.clone(),
    };
    let mut options = BatchOptions::new(args.out.clone());
    options.mpp = args.mpp;
    options.mpp_table = mpp_table;
    options.features = args.features;
    options.roi = args.roi.clone();
    options.threshold = args.threshold;
    options.pipeline.batch = args.batch;
    options.pipeline.min_tissue = args.min_tissue;
    options.pipeline.keep_features = args.features;
    options.pipeline.decode_on_device = !args.cpu_decoding;
    options.pipeline.allow_dark_background = args.allow_dark_background;
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
            workers
                .iter()
                .map(|w| w.device.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // With several workers the tile bar would show whichever slide spoke last: the slide
    // bar and log lines name each slide's device instead.
    let several = workers.len() > 1;
    let reports = run_batch_on(&jobs, &workers, &options, &|event| match event {
        Event::SlideStarted {
            index,
            total,
            job,
            device,
        } => {
            let on = if several {
                format!(" on {}", device.split(' ').next().unwrap_or(device))
            } else {
                String::new()
            };
            slides_bar.set_message(format!("{}{on}", job.relative));
            tiles_bar.set_position(0);
            if log {
                eprintln!("[{}/{total}] {}{on}", index + 1, job.relative);
            }
        }
        Event::Tiles { done, total } => {
            if !several {
                tiles_bar.set_length(total as u64);
                tiles_bar.set_position(done as u64);
            }
        }
        Event::SlideFinished { index, job, report } => {
            if let Stage::Running { reports, .. } = &mut *stage.lock().unwrap_or_else(|e| e.into_inner()) {
                reports[index] = report.clone();
            }
            slides_bar.inc(1);
            let outcome = &report.outcome;
            let line = match outcome {
                Outcome::Done { seconds } => format!("{}: done in {seconds:.1} s", job.relative),
                Outcome::Skipped => format!("{}: already done, skipped", job.relative),
                Outcome::Busy { holder } => {
                    format!("{}: held by another worker ({holder}), left to it", job.relative)
                }
                Outcome::Failed { reason } => format!("{}: FAILED: {reason}", job.relative),
                Outcome::Interrupted => format!("{}: interrupted", job.relative),
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
    {
        // Under the stage's lock, so that a signal now neither writes a report of its own
        // nor cuts this one short.
        let mut stage = stage.lock().unwrap_or_else(|e| e.into_inner());
        write_results(&args.out, &report_name, &reports, &notes)?;
        *stage = Stage::Over;
    }
    let count = |f: fn(&Outcome) -> bool| reports.iter().filter(|r| f(&r.outcome)).count();
    let failed = count(|o| matches!(o, Outcome::Failed { .. }));
    let held: Vec<String> = reports
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Busy { holder } => Some(format!("{} ({holder})", r.slide)),
            _ => None,
        })
        .collect();
    if !args.quiet {
        eprintln!(
            "flashslide: {} analysed, {} already done, {failed} failed, {} held by other live workers{}; report: {}, index: {}",
            count(|o| matches!(o, Outcome::Done { .. })),
            count(|o| matches!(o, Outcome::Skipped)),
            held.len(),
            if held.is_empty() { String::new() } else { format!(" ({})", held.join(", ")) },
            args.out.join(report_name).display(),
            args.out.join("index.html").display()
        );
    }
    // Every slide done, already done, or held by a live worker (the lock rule takes a dead
    // one's at once): 0.
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
