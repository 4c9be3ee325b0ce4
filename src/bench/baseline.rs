//! The benchmark the project exists for: one held-out cohort analysed by the same pipeline
//! at full resolution and on downscaled pixels (each arm a model of the same architecture
//! trained at its own resolution with the same budget), each arm scored by CAMELYON16's
//! lesion-level FROC and the rest of [`crate::eval::results`]. Writes, in its output folder,
//! one `run` output folder per arm, `baseline.md`, `baseline.json` and `froc.png`.

use crate::backend::Backend;
use crate::batch::{check_output_dir, run_batch, BatchOptions, Outcome, OutputDirError};
use crate::eval::froc::RATES;
use crate::eval::results::{evaluate, Evaluation};
use crate::eval::EvalError;
use crate::export::font::{draw_text, text_width};
use crate::model::Model;
use crate::slide::discover::discover;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One arm's model and what it scored.
#[derive(Clone, Debug, Serialize)]
pub struct ArmResult {
    /// The model's name (its directory's).
    pub name: String,
    pub model_dir: PathBuf,
    /// Microns per pixel the model analyses at.
    pub mpp: f64,
    /// Slides the pipeline could not analyse (they are left out of the scores).
    pub failed: Vec<String>,
    pub evaluation: Evaluation,
}

/// Why an arm could not be run or scored, or the outputs written.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error(transparent)]
    OutputDir(#[from] OutputDirError),
    #[error(transparent)]
    Discover(#[from] std::io::Error),
    #[error("{}: no slides", .0.display())]
    NoSlides(PathBuf),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("{}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
}

/// Runs `model` over the slides in `cohort` into `out/<model name>/` (finished slides of an
/// earlier run are kept, as `run` keeps them) and scores the results against the cohort's
/// ground truth. `progress(done, total)` after each slide.
pub fn run_arm<B: Backend>(
    model: &Model<B>,
    model_dir: &Path,
    cohort: &Path,
    out: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ArmResult, BaselineError> {
    let name = model.config.name.clone();
    let arm_out = out.join(&name);
    check_output_dir(&arm_out)?;
    let jobs = discover(&[cohort.to_path_buf()])?;
    if jobs.is_empty() {
        return Err(BaselineError::NoSlides(cohort.to_path_buf()));
    }
    let total = jobs.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let reports = run_batch(&jobs, model, &BatchOptions::new(arm_out.clone()), &|event| {
        if let crate::batch::Event::SlideFinished { .. } = event {
            progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
        }
    });
    let failed = reports
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed { reason } => Some(format!("{}: {reason}", r.slide)),
            _ => None,
        })
        .collect();
    Ok(ArmResult {
        name,
        model_dir: model_dir.to_path_buf(),
        mpp: model.config.mpp,
        failed,
        evaluation: evaluate(&arm_out, cohort)?,
    })
}

/// The arms side by side, one row each, as a markdown table.
pub fn markdown(arms: &[ArmResult]) -> String {
    let opt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
    let gb = |b: Option<u64>| b.map_or("–".to_string(), |b| format!("{:.2}", b as f64 / 1e9));
    let mut s = String::from(
        "| arm | µm/px | FROC | sens. @1 FP: ITC | micro | macro | token AUROC | slide AUROC | s/slide | host GB | device GB |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for a in arms {
        let e = &a.evaluation;
        let f = e.froc.as_ref();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} |\n",
            a.name,
            a.mpp,
            f.map_or("–".into(), |f| format!("{:.3}", f.score)),
            opt(f.and_then(|f| f.itc_sensitivity)),
            opt(f.and_then(|f| f.micro_sensitivity)),
            opt(f.and_then(|f| f.macro_sensitivity)),
            opt(e.token_auroc),
            opt(e.slide_auroc),
            e.seconds_per_slide,
            gb(e.peak_rss_bytes),
            gb(e.device_memory_bytes),
        ));
    }
    s
}

/// Cap heights of the plot's labels and of its title, in pixels.
const LABEL: f32 = 10.0;
const HEADING: f32 = 16.0;

/// Okabe–Ito colours: told apart with every common colour-vision deficiency.
const PALETTE: [[u8; 3]; 6] = [
    [0, 114, 178],
    [213, 94, 0],
    [0, 158, 115],
    [204, 121, 167],
    [230, 159, 0],
    [86, 180, 233],
];

/// The arms' FROC curves on one plot: sensitivity against false positives per slide on a
/// log axis from 1/8 to 8 (the six rates the score averages marked), as RGB pixels.
pub fn plot(arms: &[ArmResult]) -> (Vec<u8>, usize, usize) {
    let (width, height) = (900usize, 560usize);
    let (left, right, top, bottom) = (80usize, 30usize, 50usize, 70usize);
    let (plot_w, plot_h) = (width - left - right, height - top - bottom);
    let mut img = vec![255u8; width * height * 3];
    let (lo, hi) = ((0.125f64).log2(), 8f64.log2());
    let x_of = |fp: f64| left as f64 + (fp.max(0.125).log2() - lo) / (hi - lo) * plot_w as f64;
    let y_of = |s: f64| top as f64 + (1.0 - s) * plot_h as f64;
    let grey = [210, 210, 210];
    let black = [0, 0, 0];
    for rate in RATES {
        let x = x_of(rate);
        line(
            &mut img,
            width,
            (x, top as f64),
            (x, (top + plot_h) as f64),
            grey,
            1,
        );
        let label = format!("{rate}");
        draw_text(
            &mut img,
            width,
            (x as usize).saturating_sub(text_width(&label, LABEL) / 2),
            top + plot_h + 8,
            &label,
            LABEL,
            black,
        );
    }
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = y_of(tick);
        line(
            &mut img,
            width,
            (left as f64, y),
            ((left + plot_w) as f64, y),
            grey,
            1,
        );
        let label = format!("{tick:.2}");
        draw_text(
            &mut img,
            width,
            left - 8 - text_width(&label, LABEL),
            y as usize - 5,
            &label,
            LABEL,
            black,
        );
    }
    // The frame.
    let (x0, y0, x1, y1) = (
        left as f64,
        top as f64,
        (left + plot_w) as f64,
        (top + plot_h) as f64,
    );
    for (a, b) in [
        ((x0, y0), (x1, y0)),
        ((x1, y0), (x1, y1)),
        ((x1, y1), (x0, y1)),
        ((x0, y1), (x0, y0)),
    ] {
        line(&mut img, width, a, b, black, 1);
    }
    let title = "FROC, CAMELYON16 rules";
    draw_text(
        &mut img,
        width,
        (width - text_width(title, HEADING)) / 2,
        14,
        title,
        HEADING,
        black,
    );
    let axis = "average false positives per slide";
    draw_text(
        &mut img,
        width,
        left + (plot_w - text_width(axis, LABEL)) / 2,
        height - 40,
        axis,
        LABEL,
        black,
    );
    draw_text(&mut img, width, 8, top - 20, "sensitivity", LABEL, black);

    for (i, arm) in arms.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        if let Some(f) = &arm.evaluation.froc {
            // Steps: sensitivity holds until the next threshold's false-positive rate.
            let mut points: Vec<(f64, f64)> = f.curve.iter().copied().filter(|p| p.0 <= 8.0).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            let mut previous: Option<(f64, f64)> = None;
            for &(fp, s) in &points {
                let here = (x_of(fp), y_of(s));
                if let Some(p) = previous {
                    line(&mut img, width, p, (here.0, p.1), colour, 3);
                    line(&mut img, width, (here.0, p.1), here, colour, 3);
                }
                previous = Some(here);
            }
            if let Some(p) = previous {
                line(&mut img, width, p, (x1, p.1), colour, 3);
            }
        }
        // The legend, bottom right inside the plot.
        let label = format!(
            "{} ({} µm/px) FROC {}",
            arm.name,
            arm.mpp,
            arm.evaluation
                .froc
                .as_ref()
                .map_or("-".into(), |f| format!("{:.3}", f.score))
        );
        let row_y = top + plot_h - 20 - (arms.len() - 1 - i) * 20;
        let lx = left + plot_w - 16 - text_width(&label, LABEL) - 30;
        line(
            &mut img,
            width,
            (lx as f64, row_y as f64 + 5.0),
            (lx as f64 + 22.0, row_y as f64 + 5.0),
            colour,
            3,
        );
        draw_text(&mut img, width, lx + 30, row_y, &label, LABEL, black);
    }
    (img, width, height)
}

/// A straight line `thickness` pixels wide, by steps of at most half a pixel.
fn line(img: &mut [u8], width: usize, a: (f64, f64), b: (f64, f64), colour: [u8; 3], thickness: usize) {
    let height = img.len() / (3 * width);
    let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()) * 2.0).ceil().max(1.0) as usize;
    let half = thickness as i64 / 2;
    for i in 0..=steps {
        let t = i as f64 / steps as f64;
        let (x, y) = (
            (a.0 + (b.0 - a.0) * t).round() as i64,
            (a.1 + (b.1 - a.1) * t).round() as i64,
        );
        for dy in -half..=half {
            for dx in -half..=half {
                let (px, py) = (x + dx, y + dy);
                if px >= 0 && py >= 0 && (px as usize) < width && (py as usize) < height {
                    img[(py as usize * width + px as usize) * 3..][..3].copy_from_slice(&colour);
                }
            }
        }
    }
}

/// Writes baseline.md, baseline.json and froc.png into `out`, each atomically.
pub fn write_outputs(out: &Path, arms: &[ArmResult], cohort: &Path) -> Result<(), BaselineError> {
    let fail = |p: &Path, e: &dyn std::fmt::Display| BaselineError::Write {
        path: p.to_path_buf(),
        reason: e.to_string(),
    };
    let slides = arms.first().map_or(0, |a| a.evaluation.slides.len());
    let lesions = arms
        .first()
        .and_then(|a| a.evaluation.froc.as_ref())
        .map_or(0, |f| f.lesions);
    let text = format!(
        "# Full resolution against downscaled analysis\n\nCohort: {} ({slides} slides, {lesions} lesions besides isolated tumour cells). \
         FROC is CAMELYON16's (mean sensitivity at 1/4, 1/2, 1, 2, 4 and 8 false positives per slide); \
         sensitivities by class at ≤ 1 false positive per slide.\n\n{}",
        cohort.display(),
        markdown(arms)
    );
    let md = out.join("baseline.md");
    crate::util::atomic::write_bytes(&md, text.as_bytes()).map_err(|e| fail(&md, &e))?;
    let json = out.join("baseline.json");
    let bytes = serde_json::to_vec_pretty(arms).map_err(|e| fail(&json, &e))?;
    crate::util::atomic::write_bytes(&json, &bytes).map_err(|e| fail(&json, &e))?;
    let (pixels, w, h) = plot(arms);
    let png = out.join("froc.png");
    let mut encoded = Vec::new();
    image::RgbImage::from_raw(w as u32, h as u32, pixels)
        .expect("the plot has its size")
        .write_to(&mut std::io::Cursor::new(&mut encoded), image::ImageFormat::Png)
        .map_err(|e| fail(&png, &e))?;
    crate::util::atomic::write_bytes(&png, &encoded).map_err(|e| fail(&png, &e))
}
