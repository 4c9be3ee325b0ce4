//! Scores what `flashslide run` wrote for a cohort against the cohort's ground truth (for
//! each slide `<stem>.lesions.json` as `flashslide synth` writes, or CAMELYON16's `<stem>.xml`,
//! or QuPath's `<stem>.geojson`; see [`crate::annotation::lesions`]): lesion-level
//! FROC from detections.csv, sensitivity by size class at 1 false positive per slide,
//! token-level AUROC from qupath.geojson's tile objects (a token is tumour when its centre
//! lies in a lesion), slide-level AUROC from each slide's highest probability (a slide is
//! tumour when it holds any lesion), and the cost: seconds per slide, peak host and device
//! memory.

use super::auroc::auroc;
use super::froc::{froc, Froc, SlideDetections, RATES};
use super::EvalError;
use crate::annotation::lesions::SlideTruth;
use crate::annotation::LesionClass;
use crate::export::summary::Summary;
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Serialize)]
pub struct SlideScore {
    pub name: String,
    /// Lesions as (ITC, micro, macro).
    pub lesions: [usize; 3],
    pub detections: usize,
    pub max_probability: f32,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub slides: Vec<SlideScore>,
    /// FROC score and its parts; absent when the cohort holds no lesion but ITCs.
    pub froc: Option<FrocSummary>,
    pub token_auroc: Option<f64>,
    pub slide_auroc: Option<f64>,
    pub seconds_per_slide: f64,
    pub peak_rss_bytes: Option<u64>,
    pub device_memory_bytes: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FrocSummary {
    pub score: f64,
    /// (false positives per slide, sensitivity) at 1/4 … 8.
    pub sensitivity_at: Vec<(f64, f64)>,
    /// At ≤ 1 false positive per slide, by class.
    pub itc_sensitivity: Option<f64>,
    pub micro_sensitivity: Option<f64>,
    pub macro_sensitivity: Option<f64>,
    pub lesions: usize,
    /// The whole curve, for plotting.
    pub curve: Vec<(f64, f64)>,
}

impl From<Froc> for FrocSummary {
    fn from(f: Froc) -> Self {
        FrocSummary {
            score: f.score,
            sensitivity_at: RATES.iter().copied().zip(f.at_rates).collect(),
            itc_sensitivity: f.at_one_fp[0],
            micro_sensitivity: f.at_one_fp[1],
            macro_sensitivity: f.at_one_fp[2],
            lesions: f.lesions,
            curve: f.curve,
        }
    }
}

/// Scores every slide folder of `results` (those holding a summary.json) against the truth
/// files in `truth`. Errors name the file at fault.
pub fn evaluate(results: &Path, truth: &Path) -> Result<Evaluation, EvalError> {
    let mut dirs: Vec<_> = std::fs::read_dir(results)
        .map_err(EvalError::read(results))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("summary.json").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(EvalError::NoResults {
            dir: results.to_path_buf(),
        });
    }
    let mut slides = Vec::new();
    let mut cohort = Vec::new();
    let (mut token_scores, mut token_labels) = (Vec::new(), Vec::new());
    let (mut slide_scores, mut slide_labels) = (Vec::new(), Vec::new());
    let (mut rss, mut device) = (None::<u64>, None::<u64>);
    for dir in &dirs {
        let summary_path = dir.join("summary.json");
        let summary: Summary = read_json(&summary_path)?;
        let stem = Path::new(&summary.slide)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let truth_path = SlideTruth::find(truth, &stem).ok_or_else(|| EvalError::NoTruth {
            dir: truth.to_path_buf(),
            stem: stem.clone(),
        })?;
        let slide_truth = SlideTruth::load(&truth_path, summary.mpp).map_err(EvalError::Truth)?;
        let detections = read_detections(&dir.join("detections.csv"))?;
        let mut counts = [0usize; 3];
        for l in &slide_truth.lesions {
            counts[class_index(l.class)] += 1;
        }
        for (centre, p) in read_tokens(&dir.join("qupath.geojson"))? {
            token_scores.push(p);
            token_labels.push(
                slide_truth
                    .lesions
                    .iter()
                    .any(|l| l.outline.contains(centre.0, centre.1)),
            );
        }
        // A slide without tissue tiles had nothing found in it.
        let max_probability = summary.max_probability.unwrap_or(0.0);
        slide_scores.push(max_probability);
        slide_labels.push(!slide_truth.lesions.is_empty());
        rss = rss.max(summary.peak_rss_bytes);
        device = device.max(summary.device_memory_bytes);
        cohort.push(SlideDetections {
            lesions: slide_truth.lesions.iter().map(|l| l.class).collect(),
            detections: detections
                .iter()
                .map(|&(c, x, y)| (c, slide_truth.hit(x, y)))
                .collect(),
        });
        slides.push(SlideScore {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            lesions: counts,
            detections: detections.len(),
            max_probability,
            seconds: summary.seconds.total,
        });
    }
    let seconds_per_slide = slides.iter().map(|s| s.seconds).sum::<f64>() / slides.len() as f64;
    Ok(Evaluation {
        froc: froc(&cohort).map(FrocSummary::from),
        token_auroc: auroc(&token_scores, &token_labels),
        slide_auroc: auroc(&slide_scores, &slide_labels),
        slides,
        seconds_per_slide,
        peak_rss_bytes: rss,
        device_memory_bytes: device,
    })
}

fn class_index(class: LesionClass) -> usize {
    match class {
        LesionClass::Itc => 0,
        LesionClass::Micro => 1,
        LesionClass::Macro => 2,
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EvalError> {
    let text = std::fs::read_to_string(path).map_err(EvalError::read(path))?;
    serde_json::from_str(&text).map_err(|source| EvalError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// detections.csv rows `confidence,x,y`.
fn read_detections(path: &Path) -> Result<Vec<(f32, f64, f64)>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(EvalError::read(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let bad = || EvalError::BadDetection {
                path: path.to_path_buf(),
                line: i + 1,
            };
            let mut parts = line.split(',').map(|v| v.trim());
            let mut next = || parts.next().ok_or_else(bad);
            let c = next()?.parse::<f32>().map_err(|_| bad())?;
            let x = next()?.parse::<f64>().map_err(|_| bad())?;
            let y = next()?.parse::<f64>().map_err(|_| bad())?;
            Ok((c, x, y))
        })
        .collect()
}

/// A token's centre (level-0 pixels) and probability.
type Token = ((f64, f64), f32);

/// The tile objects of qupath.geojson.
fn read_tokens(path: &Path) -> Result<Vec<Token>, EvalError> {
    let geojson: serde_json::Value = read_json(path)?;
    let features = geojson["features"]
        .as_array()
        .ok_or_else(|| EvalError::NotFeatureCollection {
            path: path.to_path_buf(),
        })?;
    let mut tokens = Vec::new();
    for f in features {
        if f["properties"]["objectType"] != "tile" {
            continue;
        }
        let ring = f["geometry"]["coordinates"][0].as_array();
        let p = f["properties"]["measurements"]["tumor_probability"].as_f64();
        let (Some(ring), Some(p)) = (ring, p) else {
            return Err(EvalError::UnscoredTile {
                path: path.to_path_buf(),
            });
        };
        let corners: Vec<(f64, f64)> = ring
            .iter()
            .take(4)
            .filter_map(|c| Some((c[0].as_f64()?, c[1].as_f64()?)))
            .collect();
        if corners.len() != 4 {
            return Err(EvalError::BadTileOutline {
                path: path.to_path_buf(),
            });
        }
        let centre = (
            corners.iter().map(|c| c.0).sum::<f64>() / 4.0,
            corners.iter().map(|c| c.1).sum::<f64>() / 4.0,
        );
        tokens.push((centre, p as f32));
    }
    Ok(tokens)
}

impl Evaluation {
    /// The headline numbers as a markdown table.
    pub fn markdown(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
        let mut s = String::from("| metric | value |\n|---|---|\n");
        let row = |s: &mut String, k: &str, v: String| s.push_str(&format!("| {k} | {v} |\n"));
        row(&mut s, "slides", self.slides.len().to_string());
        match &self.froc {
            Some(f) => {
                row(&mut s, "lesions (ITC excluded)", f.lesions.to_string());
                row(&mut s, "FROC (CAMELYON16)", format!("{:.3}", f.score));
                for (rate, sens) in &f.sensitivity_at {
                    row(
                        &mut s,
                        &format!("sensitivity at {rate} FP/slide"),
                        format!("{sens:.3}"),
                    );
                }
                row(&mut s, "ITC sensitivity at 1 FP/slide", opt(f.itc_sensitivity));
                row(
                    &mut s,
                    "micrometastasis sensitivity at 1 FP/slide",
                    opt(f.micro_sensitivity),
                );
                row(
                    &mut s,
                    "macrometastasis sensitivity at 1 FP/slide",
                    opt(f.macro_sensitivity),
                );
            }
            None => row(&mut s, "FROC", "– (no lesions but ITCs)".into()),
        }
        row(&mut s, "token AUROC", opt(self.token_auroc));
        row(&mut s, "slide AUROC", opt(self.slide_auroc));
        row(
            &mut s,
            "seconds per slide",
            format!("{:.2}", self.seconds_per_slide),
        );
        let gb = |b: Option<u64>| b.map_or("–".to_string(), |b| format!("{:.2} GB", b as f64 / 1e9));
        row(&mut s, "peak host memory", gb(self.peak_rss_bytes));
        row(&mut s, "peak device memory", gb(self.device_memory_bytes));
        s
    }
}
