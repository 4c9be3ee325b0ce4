//! The batch report (OUT/batch-report.json): each slide's outcome, and what discovery
//! skipped; shared by the runs that write into one output folder.

use super::lock::{Acquired, SlideLock};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How one slide went.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    Done {
        seconds: f64,
    },
    /// Finished by an earlier run with the same input, model and settings.
    Skipped,
    /// Another live worker holds its lock.
    Busy {
        holder: String,
    },
    Failed {
        reason: String,
    },
    /// The run was stopped (a signal) before the slide was finished.
    Interrupted,
}

#[derive(Clone, Debug, Serialize)]
pub struct SlideReport {
    pub slide: String,
    pub name: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// When the outcome was reached, in seconds since the epoch: of two runs' reports on
    /// one slide, the newer one stands.
    pub time: f64,
    /// The device the slide went through, when it reached one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl SlideReport {
    /// A slide not yet finished: what a report says of it when the run stops first.
    pub fn interrupted(job: &crate::slide::discover::SlideJob) -> SlideReport {
        SlideReport {
            slide: job.path.display().to_string(),
            name: job.name.clone(),
            outcome: Outcome::Interrupted,
            time: 0.0,
            device: None,
        }
    }
}

/// Seconds since the epoch.
pub fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Writes the batch report at `path`: every slide's outcome (failures with their reasons,
/// busy slides with their holder) and `notes` on what discovery skipped. Runs sharing an
/// output folder merge their views: under a short lock (`.NAME.lock` beside it), the report
/// there is read, and for each slide (by folder name) the newer outcome kept.
pub fn write_report(path: &Path, reports: &[SlideReport], notes: &[String]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let _lock = report_lock(&path.with_file_name(format!(".{name}.lock")));
    let earlier: serde_json::Value = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut slides: BTreeMap<String, serde_json::Value> = earlier["slides"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["name"].as_str()?.to_string(), s.clone())))
        .collect();
    for report in reports {
        let report = serde_json::to_value(report).map_err(std::io::Error::other)?;
        let name = report["name"].as_str().unwrap_or_default().to_string();
        let older = |s: &serde_json::Value| {
            s["time"].as_f64().unwrap_or(0.0) <= report["time"].as_f64().unwrap_or(0.0)
        };
        if slides.get(&name).is_none_or(older) {
            slides.insert(name, report);
        }
    }
    let text = serde_json::to_string_pretty(&serde_json::json!({
        "software": format!("flashslide {}", env!("CARGO_PKG_VERSION")),
        "slides": slides.into_values().collect::<Vec<_>>(),
        "skipped_files": notes,
    }))
    .map_err(std::io::Error::other)?;
    crate::util::atomic::write_bytes(path, text.as_bytes())
}

/// The report's lock, waited for up to half a minute (a report is written in milliseconds;
/// a dead writer's lock is taken over as any slide's), else None: the report is then
/// written without it rather than not at all.
fn report_lock(path: &Path) -> Option<SlideLock> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match SlideLock::acquire(path, Duration::from_secs(30), Duration::from_secs(5)) {
            Ok(Acquired::Locked(lock)) => return Some(lock),
            Ok(Acquired::Held(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => return None,
        }
    }
}
