//! Ground-truth lesions and their evaluation masks, as CAMELYON16 scores against them: a
//! detection hits a lesion when it lies inside it or within 75 µm of its outline.

use super::froc::Hit;
use crate::synth::{LesionClass, Polygon};
use serde::Deserialize;
use std::path::Path;

/// CAMELYON16's dilation of a lesion for its evaluation mask.
pub const EVALUATION_MARGIN_UM: f64 = 75.0;

#[derive(Clone, Debug)]
pub struct Lesion {
    pub class: LesionClass,
    /// Outline in level-0 pixels.
    pub outline: Polygon,
}

/// A slide's lesions and its pixel size.
#[derive(Clone, Debug)]
pub struct SlideTruth {
    pub lesions: Vec<Lesion>,
    pub mpp: f64,
}

#[derive(Deserialize)]
struct TruthFile {
    mpp: f64,
    lesions: Vec<LesionEntry>,
}

#[derive(Deserialize)]
struct LesionEntry {
    class: LesionClass,
    polygon: Vec<[f64; 2]>,
}

impl SlideTruth {
    /// Reads the `<slide>.lesions.json` that `flashslide synth` writes beside each slide.
    pub fn load(path: &Path) -> Result<SlideTruth, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: TruthFile =
            serde_json::from_str(&text).map_err(|e| format!("{}: not a lesion file: {e}", path.display()))?;
        let lesions = file
            .lesions
            .into_iter()
            .filter(|l| l.polygon.len() >= 3)
            .map(|l| Lesion {
                class: l.class,
                outline: Polygon {
                    points: l.polygon.iter().map(|p| (p[0], p[1])).collect(),
                },
            })
            .collect();
        Ok(SlideTruth {
            lesions,
            mpp: file.mpp,
        })
    }

    /// Which lesion's evaluation mask holds level-0 point (`x`, `y`): the first one whose
    /// outline holds it or passes within the margin (lesions of a slide do not overlap).
    pub fn hit(&self, x: f64, y: f64) -> Hit {
        let margin = EVALUATION_MARGIN_UM / self.mpp;
        self.lesions
            .iter()
            .position(|l| l.outline.contains(x, y) || l.outline.distance_to_outline(x, y) <= margin)
            .map_or(Hit::Background, Hit::Lesion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_inside_and_within_75_um_of_the_outline() {
        // A 100 × 100 px square at 0.5 µm/px: the margin is 150 px.
        let square = Polygon {
            points: vec![
                (1000.0, 1000.0),
                (1100.0, 1000.0),
                (1100.0, 1100.0),
                (1000.0, 1100.0),
            ],
        };
        let truth = SlideTruth {
            lesions: vec![Lesion {
                class: LesionClass::Micro,
                outline: square,
            }],
            mpp: 0.5,
        };
        assert_eq!(truth.hit(1050.0, 1050.0), Hit::Lesion(0));
        assert_eq!(truth.hit(1249.0, 1050.0), Hit::Lesion(0));
        assert_eq!(truth.hit(1251.0, 1050.0), Hit::Background);
        // Diagonally off a corner: 150 px away along the diagonal is inside the margin.
        assert_eq!(truth.hit(1100.0 + 106.0, 1100.0 + 106.0), Hit::Lesion(0));
        assert_eq!(truth.hit(1100.0 + 107.0, 1100.0 + 107.0), Hit::Background);
    }

    #[test]
    fn reads_what_synth_writes() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/synth-s101-000.lesions.json");
        let truth = SlideTruth::load(&sample).unwrap();
        assert_eq!(truth.mpp, 0.5);
        assert!(!truth.lesions.is_empty());
        let (cx, cy) = truth.lesions[0].outline.centroid();
        assert_eq!(truth.hit(cx, cy), Hit::Lesion(0));
        assert_eq!(truth.hit(-10_000.0, -10_000.0), Hit::Background);
    }
}
