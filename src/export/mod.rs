//! What a run writes for a slide, from its probabilities: the heatmap PNG, the registered
//! probability TIFF, QuPath GeoJSON (tiles and tumour regions; the tissue mask), and
//! CAMELYON16-style detections. Exports take scores and geometry, not models.

pub mod challenge;
pub mod colormap;
pub mod contours;
pub mod detections;
pub mod features;
pub mod font;
pub mod geojson;
pub mod heatmap;
pub mod index;
pub mod probability_tiff;
pub mod slide_outputs;
pub mod summary;

use crate::analysis::pipeline::SlideAnalysis;
pub use crate::util::atomic::write_atomically;

/// The probabilities on their grid: token (r, c) covers level-0 pixels
/// [c·s, (c+1)·s) × [r·s, (r+1)·s); NaN where no token (no tissue).
#[derive(Clone, Debug)]
pub struct ProbabilityGrid {
    pub rows: usize,
    pub cols: usize,
    /// A token's side in level-0 pixels.
    pub cell: f64,
    pub values: Vec<f32>,
    /// Microns per level-0 pixel.
    pub mpp: f64,
}

impl ProbabilityGrid {
    pub fn from_analysis(a: &SlideAnalysis) -> ProbabilityGrid {
        let (rows, cols) = a.token_grid();
        let (rows, cols) = (rows as usize, cols as usize);
        let mut values = vec![f32::NAN; rows * cols];
        for (cell, &p) in a.token_cells.iter().zip(&a.probabilities) {
            values[cell[0] as usize * cols + cell[1] as usize] = p;
        }
        ProbabilityGrid {
            rows,
            cols,
            cell: a.token_level0(),
            values,
            mpp: a.mpp,
        }
    }

    /// The probability at level-0 pixel (x, y), if a token covers it.
    pub fn at(&self, x: f64, y: f64) -> Option<f32> {
        let (c, r) = ((x / self.cell).floor(), (y / self.cell).floor());
        if c < 0.0 || r < 0.0 || c as usize >= self.cols || r as usize >= self.rows {
            return None;
        }
        let v = self.values[r as usize * self.cols + c as usize];
        (!v.is_nan()).then_some(v)
    }

    /// Cells at or above `threshold`.
    pub fn above(&self, threshold: f32) -> Vec<bool> {
        self.values.iter().map(|&v| v >= threshold).collect()
    }
}
