//! Validation scored as `evaluate` scores a finished run: each held-out slide's token
//! probabilities turned into detections exactly as `run` writes detections.csv (local maxima
//! at or above the floor, suppressed within the radius), each detection matched against the
//! slide's lesions by CAMELYON16's rules, and the lesion-level FROC over the slides.

use crate::annotation::lesions::SlideTruth;
use crate::eval::froc::{froc, SlideDetections};
use crate::export::detections::{detect, DEFAULT_FLOOR, DEFAULT_NMS_UM};
use crate::export::ProbabilityGrid;

/// What scoring a validation slide's tokens needs besides them: its lesions (level-0 pixels)
/// and a token's side in level-0 pixels.
#[derive(Clone, Debug)]
pub struct LesionTruth {
    pub truth: SlideTruth,
    pub token_level0: f64,
}

/// One slide's detections from its tokens' probabilities (`cells`: grid row and column of
/// each), matched against its lesions.
pub fn slide_detections(cells: &[[f32; 2]], probabilities: &[f32], t: &LesionTruth) -> SlideDetections {
    let rows = cells.iter().map(|c| c[0] as usize + 1).max().unwrap_or(0);
    let cols = cells.iter().map(|c| c[1] as usize + 1).max().unwrap_or(0);
    // Cells without a token stay NaN: no detection there, as in `run`'s grid.
    let mut values = vec![f32::NAN; rows * cols];
    for (cell, &p) in cells.iter().zip(probabilities) {
        values[cell[0] as usize * cols + cell[1] as usize] = p;
    }
    let grid = ProbabilityGrid {
        rows,
        cols,
        cell: t.token_level0,
        values,
        mpp: t.truth.mpp,
    };
    SlideDetections {
        lesions: t.truth.lesions.iter().map(|l| l.class).collect(),
        detections: detect(&grid, DEFAULT_FLOOR, DEFAULT_NMS_UM)
            .into_iter()
            .map(|d| (d.confidence, t.truth.hit(d.x, d.y)))
            .collect(),
    }
}

/// The lesion-level FROC score of `slides`; `None` where they hold no countable lesion.
pub fn froc_score(slides: &[SlideDetections]) -> Option<f64> {
    froc(slides).map(|f| f.score)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotation::lesions::Lesion;
    use crate::annotation::polygon::Polygon;
    use crate::annotation::LesionClass;

    /// A 40 × 40 token grid (tokens 64 px at 0.5 µm/px) with one 0.4 mm micrometastasis.
    fn slide() -> (Vec<[f32; 2]>, LesionTruth, Vec<f32>) {
        let cells: Vec<[f32; 2]> = (0..1600).map(|i| [(i / 40) as f32, (i % 40) as f32]).collect();
        let square = |x0: f64, y0: f64, side: f64| Polygon {
            points: vec![(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side)],
        };
        let truth = SlideTruth {
            lesions: vec![Lesion {
                class: LesionClass::Micro,
                outline: square(640.0, 640.0, 560.0),
            }],
            mpp: 0.5,
        };
        let t = LesionTruth {
            truth,
            token_level0: 64.0,
        };
        // Tokens whose centre lies in the lesion.
        let labels = cells
            .iter()
            .map(|c| {
                let (x, y) = ((c[1] as f64 + 0.5) * 64.0, (c[0] as f64 + 0.5) * 64.0);
                if t.truth.lesions[0].outline.contains(x, y) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        (cells, t, labels)
    }

    #[test]
    fn a_peak_on_the_lesion_finds_it_and_a_peak_away_from_it_is_a_false_positive() {
        let (cells, t, labels) = slide();
        // The lesion's tokens high, a bump in the middle; one strong false peak far away.
        let mut p: Vec<f32> = labels.iter().map(|&l| if l > 0.5 { 0.8 } else { 0.01 }).collect();
        p[14 * 40 + 14] = 0.95;
        // A faint false peak: CAMELYON16's sweep skips the lowest score, which this is.
        p[2 * 40 + 2] = 0.06;
        let found = slide_detections(&cells, &p, &t);
        assert_eq!(froc_score(std::slice::from_ref(&found)), Some(1.0));
        p[35 * 40 + 35] = 0.99;
        let with_false = slide_detections(&cells, &p, &t);
        let background = |d: &SlideDetections| {
            d.detections
                .iter()
                .filter(|&&(_, hit)| hit == crate::annotation::lesions::Hit::Background)
                .count()
        };
        assert_eq!((background(&found), background(&with_false)), (1, 2));
        // A false positive above the lesion's score on the one slide: the lesion is found only
        // from 1 false positive a slide on, so 4 of the 6 rates.
        let score = froc_score(&[with_false]).unwrap();
        assert!((score - 4.0 / 6.0).abs() < 1e-9, "{score}");
    }

    #[test]
    fn nothing_above_the_floor_finds_nothing() {
        let (cells, t, _) = slide();
        let none = slide_detections(&cells, &vec![0.01; cells.len()], &t);
        assert!(none.detections.is_empty());
        assert_eq!(froc_score(&[none]), Some(0.0));
    }
}
