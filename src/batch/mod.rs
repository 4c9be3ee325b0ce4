//! Many slides: each analysed into `OUT/<name>/` with every output written under a temporary
//! name and renamed, summary.json last (the mark of a finished slide) and a previous
//! summary.json removed before any output is replaced; a slide whose summary matches its
//! input fingerprint, model and settings is skipped (resume); a lock file keeps concurrent
//! workers apart; a failure — an error or a panic anywhere in the slide's work — is recorded
//! with its reason and the batch goes on.

pub mod lock;
pub mod mpp_table;
pub mod report;
pub mod shard;

use crate::analysis::pipeline::{analyse_planned, plan_slide, PipelineOptions, PlannedSlide, SlideAnalysis};
use crate::analysis::roi::Roi;
use crate::backend::Backend;
use crate::export::slide_outputs::{write_slide_outputs, ExportOptions, ModelRecord, SlideResult};
use crate::export::summary::{Summary, SUMMARY_FILE};
use crate::model::config::ModelConfig;
use crate::model::Model;
use crate::slide::discover::SlideJob;
use crate::slide::fingerprint::{fingerprint, slide_bytes, Fingerprint};
use crate::slide::Slide;
use lock::{Acquired, SlideLock};
pub use report::{unix_time, write_report, Outcome, SlideReport};
use sha2::Digest;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct BatchOptions {
    pub out: PathBuf,
    /// Microns per pixel for slides that do not state it.
    pub mpp: Option<f64>,
    /// Microns per pixel of particular slides, by file name (`--mpp-csv`, Trident's
    /// `wsi,mpp` table), over what they state.
    pub mpp_table: BTreeMap<String, f64>,
    /// Also write each tile's stage-1 feature (features.safetensors).
    pub features: bool,
    /// Tokens at or above this probability form the tumour regions.
    pub threshold: f32,
    /// Detections: local maxima at or above this, suppressed within `nms_um`.
    pub detection_floor: f32,
    pub nms_um: f64,
    /// Long side of heatmap.png in pixels.
    pub heatmap_px: u64,
    /// Regions of interest: a GeoJSON file for every slide, or a directory holding
    /// `<slide file stem>.geojson` for the slides that have one.
    pub roi: Option<PathBuf>,
    pub pipeline: PipelineOptions,
    /// A lock whose heartbeat is older than this is taken over.
    pub stale_lock: Duration,
    pub heartbeat: Duration,
}

impl BatchOptions {
    pub fn new(out: PathBuf) -> BatchOptions {
        BatchOptions {
            out,
            mpp: None,
            mpp_table: BTreeMap::new(),
            features: false,
            threshold: 0.5,
            detection_floor: crate::export::detections::DEFAULT_FLOOR,
            nms_um: crate::export::detections::DEFAULT_NMS_UM,
            heatmap_px: 1600,
            roi: None,
            pipeline: PipelineOptions::default(),
            stale_lock: Duration::from_secs(600),
            heartbeat: Duration::from_secs(30),
        }
    }

    /// How the outputs are drawn.
    fn export(&self) -> ExportOptions {
        ExportOptions {
            threshold: self.threshold,
            detection_floor: self.detection_floor,
            nms_um: self.nms_um,
            heatmap_px: self.heatmap_px,
            min_tissue: self.pipeline.min_tissue,
        }
    }

    /// What, besides the slide and the model, decides the outputs: a finished slide is
    /// reused only under the same settings. Every value reads back as itself from
    /// summary.json: no null (an absent `--mpp` is an absent key), no NaN.
    fn settings(&self) -> serde_json::Value {
        let mut settings = serde_json::json!({
            "features": self.features,
            "threshold": number(self.threshold),
            "detection_floor": number(self.detection_floor),
            "nms_um": number(self.nms_um),
            "heatmap_px": self.heatmap_px,
            "min_tissue": number(self.pipeline.min_tissue),
            "tissue_mask_um": number(self.pipeline.tissue.mask_um),
        });
        if let Some(mpp) = self.mpp {
            settings["mpp_override"] = number(mpp);
        }
        settings
    }
}

/// A setting as JSON: the number as written (0.6, not the f32's 0.6000000238418579), or
/// for NaN and the infinities, which JSON numbers cannot hold (serde writes them as null,
/// equal to an absent setting), their text, so that they still compare as themselves.
fn number(v: impl Into<f64> + std::fmt::Display) -> serde_json::Value {
    let text = v.to_string();
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::String(text), serde_json::Value::Number)
}

/// A slide's time in a batch: since its work began, less what it spent waiting, ready for
/// its next step, while the slide before it held that step.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    waited: Duration,
    ready: Instant,
}

impl Clock {
    fn start() -> Clock {
        let now = Instant::now();
        Clock {
            start: now,
            waited: Duration::ZERO,
            ready: now,
        }
    }

    /// The slide is ready for its next step.
    fn ready(mut self) -> Clock {
        self.ready = Instant::now();
        self
    }

    /// Its next step takes it: the time since it was ready was spent waiting.
    fn taken(mut self) -> Clock {
        self.waited += self.ready.elapsed();
        self
    }

    fn working_seconds(&self) -> f64 {
        self.start.elapsed().saturating_sub(self.waited).as_secs_f64()
    }
}

/// Progress, for the command line to show.
pub enum Event<'a> {
    SlideStarted {
        index: usize,
        total: usize,
        job: &'a SlideJob,
        /// The device it goes through (a worker's name).
        device: &'a str,
    },
    Tiles {
        done: usize,
        total: usize,
    },
    SlideFinished {
        index: usize,
        job: &'a SlideJob,
        report: &'a SlideReport,
    },
}

/// An output folder that cannot hold results.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot write results there: {source}", path.display())]
pub struct OutputDirError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Checks that `out` can hold results (created if missing, a file written and removed), so
/// an unwritable or full destination stops the batch before any work.
pub fn check_output_dir(out: &Path) -> Result<(), OutputDirError> {
    let fail = |source| OutputDirError {
        path: out.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(out).map_err(fail)?;
    let probe = out.join(format!(".flashslide-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
}

/// One device's share of a batch: the model on that device, and the name the reports and
/// summaries give the device.
pub struct Worker<'a, B: Backend> {
    pub model: &'a Model<B>,
    pub device: String,
}

/// Analyses every job on `model`'s device; returns one report per job, in their order (see
/// [`run_batch_on`]).
pub fn run_batch<B: Backend>(
    jobs: &[SlideJob],
    model: &Model<B>,
    options: &BatchOptions,
    on_event: &(dyn Fn(Event) + Sync),
) -> Vec<SlideReport> {
    let worker = Worker {
        model,
        device: model.tile_encoder.backend().describe(),
    };
    run_batch_on(jobs, std::slice::from_ref(&worker), options, on_event)
}

/// Analyses every job, each on one of `workers` (one a device, all with the same model);
/// returns one report per job, in their order. The workers take slides from one queue as
/// they are ready for another: in the jobs' order with one worker, largest first with
/// several, so that no device is left with a large slide at the end. A worker has three
/// slides in flight at once: the next one's tissue and tiles are planned (CPU) while this
/// one goes through the model (its device) and the last one's outputs are written (CPU),
/// so that the device does not wait on the CPU's part of each slide.
pub fn run_batch_on<B: Backend>(
    jobs: &[SlideJob],
    workers: &[Worker<B>],
    options: &BatchOptions,
    on_event: &(dyn Fn(Event) + Sync),
) -> Vec<SlideReport> {
    let queue = Queue {
        order: hand_out_order(jobs, workers.len()),
        next: AtomicUsize::new(0),
    };
    let mut reports: Vec<Option<SlideReport>> = vec![None; jobs.len()];
    let done: Vec<(usize, SlideReport)> = match workers {
        // One worker computes in this thread, where its model was made.
        [worker] => run_worker(jobs, &queue, worker, options, on_event),
        _ => std::thread::scope(|scope| {
            let running: Vec<_> = workers
                .iter()
                .map(|worker| {
                    let queue = &queue;
                    scope.spawn(move || run_worker(jobs, queue, worker, options, on_event))
                })
                .collect();
            running
                .into_iter()
                .flat_map(|worker| worker.join().expect("a worker's threads do not panic"))
                .collect()
        }),
    };
    for (index, report) in done {
        reports[index] = Some(report);
    }
    reports
        .into_iter()
        .zip(jobs)
        .map(|(report, job)| report.unwrap_or_else(|| SlideReport::interrupted(job)))
        .collect()
}

/// The order slides are handed out in: the jobs' own with one worker; with several, the
/// largest (in bytes, all of a slide's files) first, ties in the jobs' order.
pub fn hand_out_order(jobs: &[SlideJob], workers: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    if workers > 1 {
        let bytes: Vec<u64> = jobs.iter().map(|j| slide_bytes(&j.path)).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(bytes[i]));
    }
    order
}

/// The jobs left to hand out.
struct Queue {
    /// Job indices, in the order they are handed out.
    order: Vec<usize>,
    next: AtomicUsize,
}

impl Queue {
    /// The next job's index, or None when all are taken.
    fn take(&self) -> Option<usize> {
        self.order.get(self.next.fetch_add(1, Ordering::Relaxed)).copied()
    }
}

/// One worker's pipeline over the slides it takes from `queue`; each one's report with its
/// job index.
fn run_worker<B: Backend>(
    jobs: &[SlideJob],
    queue: &Queue,
    worker: &Worker<B>,
    options: &BatchOptions,
    on_event: &(dyn Fn(Event) + Sync),
) -> Vec<(usize, SlideReport)> {
    use std::sync::mpsc::sync_channel;
    type Step<T> = (usize, Clock, Result<T, NotDone>);
    let model = worker.model;
    let (config, hash) = (&model.config, model.hash.as_str());
    let tile_encoder_hash = model.tile_encoder_hash.as_str();
    let device = worker.device.as_str();
    std::thread::scope(|scope| {
        // Rendezvous channels: one slide planned ahead, one handed to the writer.
        let (prepared_tx, prepared_rx) = sync_channel::<Step<Prepared>>(0);
        let (analysed_tx, analysed_rx) = sync_channel::<Step<Analysed>>(0);
        scope.spawn(move || {
            while let Some(index) = queue.take() {
                let clock = Clock::start();
                let prepared = contained(&jobs[index].path, || prepare(&jobs[index], config, hash, options));
                if prepared_tx.send((index, clock.ready(), prepared)).is_err() {
                    break;
                }
            }
        });
        let writer = scope.spawn(move || {
            let mut reports = Vec::new();
            for (index, clock, analysed) in analysed_rx {
                let (job, clock) = (&jobs[index], clock.taken());
                let mut by = None;
                let written = analysed.and_then(|a| {
                    by = Some(a.device.clone());
                    contained(&job.path, || {
                        write_outputs(a, job, config, [hash, tile_encoder_hash], options, clock)
                    })
                });
                let (outcome, time) = match written {
                    Ok(()) => (
                        Outcome::Done {
                            seconds: clock.working_seconds(),
                        },
                        unix_time(),
                    ),
                    Err(NotDone::Busy { holder, seen }) => (Outcome::Busy { holder }, seen),
                    Err(NotDone::Skipped) => (Outcome::Skipped, unix_time()),
                    Err(NotDone::Failed(reason)) => (Outcome::Failed { reason }, unix_time()),
                };
                let report = SlideReport {
                    slide: job.path.display().to_string(),
                    name: job.name.clone(),
                    outcome,
                    time,
                    device: by,
                };
                on_event(Event::SlideFinished {
                    index,
                    job,
                    report: &report,
                });
                reports.push((index, report));
            }
            reports
        });
        for (index, clock, prepared) in prepared_rx {
            let clock = clock.taken();
            on_event(Event::SlideStarted {
                index,
                total: jobs.len(),
                job: &jobs[index],
                device,
            });
            let analysed = prepared
                .and_then(|p| contained(&jobs[index].path, || analyse(p, model, device, options, on_event)));
            if analysed_tx.send((index, clock.ready(), analysed)).is_err() {
                break;
            }
        }
        drop(analysed_tx);
        writer.join().expect("the writing thread does not panic")
    })
}

/// Why a slide's work stopped short of its outputs.
enum NotDone {
    Skipped,
    /// Another live worker holds the slide (seen at `seen`, seconds since the epoch).
    Busy {
        holder: String,
        seen: f64,
    },
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> NotDone {
    NotDone::Failed(e.to_string())
}

/// `work`, with a panic anywhere in it (a reader's bug on a hostile file, say) made the
/// slide's failure instead of the batch's end.
fn contained<T>(slide: &Path, work: impl FnOnce() -> Result<T, NotDone>) -> Result<T, NotDone> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(NotDone::Failed(format!(
            "{}: internal error (a panic: {message})",
            slide.display()
        )))
    })
}

/// Whether `dir` holds a finished result for this input, model and settings.
fn finished(dir: &Path, print: &Fingerprint, model_sha256: &str, settings: &serde_json::Value) -> bool {
    std::fs::read_to_string(dir.join(SUMMARY_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<Summary>(&t).ok())
        .is_some_and(|s| &s.fingerprint == print && s.model_sha256 == model_sha256 && &s.settings == settings)
}

/// A slide being worked on: its lock held, its reader open.
struct InProgress {
    dir: PathBuf,
    _lock: SlideLock,
    print: Fingerprint,
    settings: serde_json::Value,
    slide: Slide,
    mpp_source: String,
}

/// A slide ready for the model: tissue found, tiles planned.
struct Prepared {
    slide: InProgress,
    planned: PlannedSlide,
}

/// A slide the model has been through, for its outputs to be written.
struct Analysed {
    slide: InProgress,
    analysis: SlideAnalysis,
    device: String,
    device_memory_bytes: Option<u64>,
}

/// Locks, opens and plans a slide.
fn prepare(
    job: &SlideJob,
    config: &ModelConfig,
    hash: &str,
    options: &BatchOptions,
) -> Result<Prepared, NotDone> {
    let dir = options.out.join(&job.name);
    let roi_path = roi_for(job, options.roi.as_deref());
    let mut settings = options.settings();
    let from_table = job
        .path
        .file_name()
        .and_then(|n| options.mpp_table.get(n.to_string_lossy().as_ref()))
        .copied();
    if let Some(mpp) = from_table {
        settings["mpp_override"] = number(mpp);
    }
    // The region of interest decides the outputs too: its content, not just its name.
    if let Some(p) = &roi_path {
        let bytes = std::fs::read(p).map_err(|e| failed(format!("{}: {e}", p.display())))?;
        settings["roi_sha256"] = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into();
    }
    let print = fingerprint(&job.path).map_err(|e| failed(format!("{}: {e}", job.path.display())))?;
    if finished(&dir, &print, hash, &settings) {
        return Err(NotDone::Skipped);
    }
    std::fs::create_dir_all(&dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    let lock = match SlideLock::acquire(&dir.join(".lock"), options.stale_lock, options.heartbeat)
        .map_err(|e| failed(format!("{}: {e}", dir.display())))?
    {
        Acquired::Locked(lock) => lock,
        Acquired::Held(holder) => {
            return Err(NotDone::Busy {
                holder,
                seen: unix_time(),
            })
        }
    };
    // Another worker may have finished it between the check and the lock.
    if finished(&dir, &print, hash, &settings) {
        return Err(NotDone::Skipped);
    }
    // The folder stops counting as finished before any of its outputs is replaced: a run
    // killed half-way through leaves no summary over outputs of other settings.
    let summary = dir.join(SUMMARY_FILE);
    crate::util::atomic::remove_durably(&summary)
        .map_err(|e| failed(format!("{}: {e}", summary.display())))?;
    crate::util::atomic::remove_partials(&dir);
    let roi = roi_path.as_deref().map(Roi::load).transpose().map_err(failed)?;
    let slide = Slide::open(&job.path).map_err(failed)?;
    let (mpp, mut mpp_source) = crate::analysis::pipeline::slide_mpp(&slide, from_table.or(options.mpp))
        .map_err(|e| failed(format!("{}: {e}", job.path.display())))?;
    if from_table.is_some() {
        mpp_source = "--mpp-csv".into();
    }
    let restrict = |mask: &mut crate::analysis::tissue::TissueMask| {
        if let Some(roi) = &roi {
            roi.restrict(mask)
        }
    };
    let planned = plan_slide(
        &slide,
        mpp,
        config.mpp,
        config.image_size as u32,
        &options.pipeline,
        &restrict,
    )
    .map_err(failed)?;
    Ok(Prepared {
        slide: InProgress {
            dir,
            _lock: lock,
            print,
            settings,
            slide,
            mpp_source,
        },
        planned,
    })
}

/// Both stages of the model over a prepared slide, on `device` (the worker's name for it).
fn analyse<B: Backend>(
    prepared: Prepared,
    model: &Model<B>,
    device: &str,
    options: &BatchOptions,
    on_event: &dyn Fn(Event),
) -> Result<Analysed, NotDone> {
    let Prepared { slide, planned } = prepared;
    let analysis = analyse_planned(&slide.slide, planned, model, &options.pipeline, &|done, total| {
        on_event(Event::Tiles { done, total })
    })
    .map_err(failed)?;
    let be = model.tile_encoder.backend();
    Ok(Analysed {
        slide,
        analysis,
        device: device.to_string(),
        device_memory_bytes: be.memory_in_use(),
    })
}

/// Writes a slide's outputs, summary.json last.
fn write_outputs(
    analysed: Analysed,
    job: &SlideJob,
    config: &ModelConfig,
    [hash, tile_encoder_hash]: [&str; 2],
    options: &BatchOptions,
    clock: Clock,
) -> Result<(), NotDone> {
    let Analysed {
        slide: in_progress,
        analysis,
        device,
        device_memory_bytes,
    } = analysed;
    let result = SlideResult {
        slide_path: &job.path,
        slide: &in_progress.slide,
        fingerprint: in_progress.print.clone(),
        analysis: &analysis,
        model: ModelRecord {
            name: &config.name,
            sha256: hash,
            tile_encoder_sha256: tile_encoder_hash,
            notice: config.notice.as_deref(),
            mpp: config.mpp,
        },
        mpp_source: in_progress.mpp_source.clone(),
        settings: in_progress.settings.clone(),
        device,
        device_memory_bytes,
    };
    write_slide_outputs(&in_progress.dir, result, &options.export(), &|| {
        clock.working_seconds()
    })
    .map_err(failed)?;
    Ok(())
}

/// The region-of-interest file for `job`: `roi` itself when it is a file, else
/// `roi/<stem>.geojson` when that exists.
fn roi_for(job: &SlideJob, roi: Option<&Path>) -> Option<PathBuf> {
    let roi = roi?;
    if !roi.is_dir() {
        return Some(roi.to_path_buf());
    }
    let stem = job.path.file_stem()?.to_string_lossy().into_owned();
    Some(roi.join(format!("{stem}.geojson"))).filter(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_slides_work_is_that_slides_failure() {
        let outcome = contained(Path::new("/slides/x.svs"), || -> Result<(), NotDone> {
            panic!("index out of bounds")
        });
        match outcome {
            Err(NotDone::Failed(reason)) => assert_eq!(
                reason,
                "/slides/x.svs: internal error (a panic: index out of bounds)"
            ),
            _ => panic!("not a failure"),
        }
    }

    #[test]
    fn settings_read_back_as_themselves() {
        let mut options = BatchOptions::new("out".into());
        options.threshold = 0.6;
        let plain = options.settings();
        assert_eq!(plain["threshold"], 0.6);
        assert!(plain.get("mpp_override").is_none(), "no --mpp, no key: {plain}");
        options.mpp = Some(f64::NAN);
        let nan = options.settings();
        assert_eq!(nan["mpp_override"], "NaN");
        for s in [plain.clone(), nan.clone()] {
            let back: serde_json::Value = serde_json::from_str(&s.to_string()).unwrap();
            assert_eq!(back, s);
        }
        assert_ne!(plain, nan);
    }
}
