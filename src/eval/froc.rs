//! CAMELYON16's lesion-level FROC, by the rules of its evaluation script: a detection that
//! falls in a lesion's evaluation mask (the lesion dilated by 75 µm) hits it, each lesion
//! counts once with its highest-scoring hit, further hits on it are neither hits nor false
//! positives, detections in isolated-tumour-cell lesions are ignored and ITC lesions are not
//! counted; every other detection is a false positive. The curve is swept over every
//! distinct score (as the script does, without its lowest one, where an unhit lesion's 0
//! usually sits), and the score is the mean sensitivity at 1/4, 1/2, 1, 2, 4 and 8 false
//! positives per slide, interpolated as `numpy.interp` does.

use crate::annotation::lesions::Hit;
use crate::annotation::LesionClass;

/// False positives per slide at which the FROC score averages the sensitivity.
pub const RATES: [f64; 6] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0];

/// One slide's lesions and scored detections.
#[derive(Clone, Debug, Default)]
pub struct SlideDetections {
    pub lesions: Vec<LesionClass>,
    /// (confidence, where it fell).
    pub detections: Vec<(f32, Hit)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Froc {
    /// (false positives per slide, sensitivity), from the lowest threshold to the highest,
    /// ending at (0, 0).
    pub curve: Vec<(f64, f64)>,
    /// Sensitivity at each of [`RATES`].
    pub at_rates: [f64; 6],
    /// Their mean: the FROC score.
    pub score: f64,
    /// At the operating point of at most 1 false positive per slide (the lowest threshold
    /// that keeps to it): sensitivity per class, ITC included (reported on its own), as
    /// (ITC, micro, macro); `None` for a class without lesions.
    pub at_one_fp: [Option<f64>; 3],
    /// Lesions counted (ITC excluded) and slides.
    pub lesions: usize,
    pub slides: usize,
}

/// Scores `slides`; `None` when they hold no lesion but ITCs (sensitivity is undefined).
pub fn froc(slides: &[SlideDetections]) -> Option<Froc> {
    let mut false_positives: Vec<f32> = Vec::new();
    // Each lesion's class and best hit (0 when missed), over all slides.
    let mut lesions: Vec<(LesionClass, f32)> = Vec::new();
    for slide in slides {
        let mut best = vec![0f32; slide.lesions.len()];
        for &(confidence, hit) in &slide.detections {
            match hit {
                Hit::Background => false_positives.push(confidence),
                Hit::Lesion(i) => best[i] = best[i].max(confidence),
            }
        }
        lesions.extend(slide.lesions.iter().copied().zip(best));
    }
    let counted: Vec<f32> = lesions
        .iter()
        .filter(|(class, _)| *class != LesionClass::Itc)
        .map(|&(_, best)| best)
        .collect();
    if counted.is_empty() {
        return None;
    }
    let mut thresholds: Vec<f32> = false_positives.iter().chain(&counted).copied().collect();
    thresholds.sort_by(f32::total_cmp);
    thresholds.dedup();
    let n_slides = slides.len() as f64;
    let at = |t: f32| -> (f64, f64) {
        let fp = false_positives.iter().filter(|&&p| p >= t).count() as f64 / n_slides;
        let tp = counted.iter().filter(|&&p| p >= t).count() as f64 / counted.len() as f64;
        (fp, tp)
    };
    let mut curve: Vec<(f64, f64)> = thresholds.iter().skip(1).map(|&t| at(t)).collect();
    curve.push((0.0, 0.0));

    // numpy.interp over the curve by increasing false positives.
    let ascending: Vec<(f64, f64)> = curve.iter().rev().copied().collect();
    let at_rates = RATES.map(|rate| interp(rate, &ascending));
    let score = at_rates.iter().sum::<f64>() / RATES.len() as f64;

    let operating = thresholds
        .iter()
        .skip(1)
        .copied()
        .find(|&t| at(t).0 <= 1.0)
        .unwrap_or(f32::INFINITY);
    let class_sensitivity = |class: LesionClass| -> Option<f64> {
        let of_class: Vec<f32> = lesions.iter().filter(|l| l.0 == class).map(|l| l.1).collect();
        (!of_class.is_empty()).then(|| {
            of_class.iter().filter(|&&p| p > 0.0 && p >= operating).count() as f64 / of_class.len() as f64
        })
    };
    Some(Froc {
        curve,
        at_rates,
        score,
        at_one_fp: [
            class_sensitivity(LesionClass::Itc),
            class_sensitivity(LesionClass::Micro),
            class_sensitivity(LesionClass::Macro),
        ],
        lesions: counted.len(),
        slides: slides.len(),
    })
}

/// `numpy.interp(x, xp, fp)` for points sorted by xp (not strictly): clamped at the ends,
/// else linear between the last point with xp ≤ x and the next.
fn interp(x: f64, points: &[(f64, f64)]) -> f64 {
    let Some(j) = points.iter().rposition(|p| p.0 <= x) else {
        return points[0].1;
    };
    if j + 1 == points.len() {
        return points[j].1;
    }
    let ((x0, y0), (x1, y1)) = (points[j], points[j + 1]);
    y0 + (y1 - y0) * (x - x0) / (x1 - x0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use LesionClass::{Itc, Macro, Micro};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Worked by hand. Slide A: a macro (hit at 0.9 and again at 0.5), a micro (hit at 0.7),
    /// an ITC (hit at 0.6: ignored), false positives 0.8 and 0.3. Slide B: a micro missed,
    /// false positives 0.95 and 0.4. Counted lesions 3, best hits [0.9, 0.7, 0]; thresholds
    /// 0.3, 0.4, 0.7, 0.8, 0.9, 0.95 (0 skipped) give FP/slide 2, 1.5, 1, 1, 0.5, 0.5 and
    /// sensitivity 2/3, 2/3, 2/3, 1/3, 1/3, 0, then (0, 0). Interpolated at the six rates:
    /// 0, 1/3, 2/3, 2/3, 2/3, 2/3; mean 0.5. At ≤ 1 FP/slide the threshold is 0.7: macro 1/1,
    /// micro 1/2, ITC 0/1.
    #[test]
    fn hand_computed_two_slides() {
        let slides = vec![
            SlideDetections {
                lesions: vec![Macro, Micro, Itc],
                detections: vec![
                    (0.9, Hit::Lesion(0)),
                    (0.8, Hit::Background),
                    (0.7, Hit::Lesion(1)),
                    (0.6, Hit::Lesion(2)),
                    (0.5, Hit::Lesion(0)),
                    (0.3, Hit::Background),
                ],
            },
            SlideDetections {
                lesions: vec![Micro],
                detections: vec![(0.95, Hit::Background), (0.4, Hit::Background)],
            },
        ];
        let f = froc(&slides).unwrap();
        let expected_curve = [
            (2.0, 2.0 / 3.0),
            (1.5, 2.0 / 3.0),
            (1.0, 2.0 / 3.0),
            (1.0, 1.0 / 3.0),
            (0.5, 1.0 / 3.0),
            (0.5, 0.0),
            (0.0, 0.0),
        ];
        assert_eq!(f.curve.len(), expected_curve.len());
        for (got, want) in f.curve.iter().zip(expected_curve) {
            assert!(
                close(got.0, want.0) && close(got.1, want.1),
                "{got:?} vs {want:?}"
            );
        }
        let want = [0.0, 1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0];
        for (got, want) in f.at_rates.iter().zip(want) {
            assert!(close(*got, want), "{:?}", f.at_rates);
        }
        assert!(close(f.score, 0.5));
        assert_eq!(f.at_one_fp, [Some(0.0), Some(0.5), Some(1.0)]);
        assert_eq!((f.lesions, f.slides), (3, 2));
    }

    #[test]
    fn perfect_detection_and_no_lesions() {
        // Every lesion found above every false positive: sensitivity 1 at every rate from
        // 1/4 FP per slide up.
        let slides = vec![SlideDetections {
            lesions: vec![Macro, Micro],
            detections: vec![
                (0.9, Hit::Lesion(0)),
                (0.8, Hit::Lesion(1)),
                (0.1, Hit::Background),
            ],
        }];
        let f = froc(&slides).unwrap();
        assert_eq!(f.at_rates, [1.0; 6]);
        assert_eq!(f.score, 1.0);
        // Only ITCs (or nothing) to find: undefined.
        let itc_only = vec![SlideDetections {
            lesions: vec![Itc],
            detections: vec![],
        }];
        assert!(froc(&itc_only).is_none());
        assert!(froc(&[]).is_none());
    }

    #[test]
    fn interpolation_follows_numpy() {
        let pts = [(0.0, 0.0), (0.5, 0.2), (0.5, 0.4), (2.0, 1.0)];
        assert!(close(interp(-1.0, &pts), 0.0));
        assert!(close(interp(0.25, &pts), 0.1));
        // At a repeated x numpy takes the last point with that x.
        assert!(close(interp(0.5, &pts), 0.4));
        assert!(close(interp(1.25, &pts), 0.7));
        assert!(close(interp(9.0, &pts), 1.0));
    }
}
