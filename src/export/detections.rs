//! Tumour detections for lesion-level FROC scoring, in CAMELYON16's submission form: one CSV
//! row per detection, `confidence,x,y` (level-0 pixels, no header, as its evaluation script
//! reads it). Detections are the local maxima of the probability grid at or above a floor,
//! then non-maximum suppression: a weaker detection within `radius_um` of a stronger one
//! is dropped.

use super::ProbabilityGrid;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub confidence: f32,
    /// Level-0 pixels (the token's centre).
    pub x: f64,
    pub y: f64,
}

/// `run`'s detection floor and suppression radius unless told otherwise (the radius is
/// CAMELYON16's evaluation margin: two peaks closer than that would hit one lesion twice).
pub const DEFAULT_FLOOR: f32 = 0.05;
pub const DEFAULT_NMS_UM: f64 = 75.0;

pub fn detect(grid: &ProbabilityGrid, floor: f32, radius_um: f64) -> Vec<Detection> {
    let (rows, cols) = (grid.rows as i64, grid.cols as i64);
    let value = |r: i64, c: i64| -> f32 {
        if r < 0 || c < 0 || r >= rows || c >= cols {
            return f32::NEG_INFINITY;
        }
        let v = grid.values[(r * cols + c) as usize];
        if v.is_nan() {
            f32::NEG_INFINITY
        } else {
            v
        }
    };
    let mut peaks = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            let v = value(r, c);
            if v < floor {
                continue;
            }
            // A plateau yields its first cell in raster order.
            let is_peak = (-1..=1).all(|dr| {
                (-1..=1).all(|dc| {
                    let n = value(r + dr, c + dc);
                    let earlier = dr < 0 || (dr == 0 && dc < 0);
                    (dr == 0 && dc == 0) || n < v || (n == v && !earlier)
                })
            });
            if is_peak {
                peaks.push(Detection {
                    confidence: v,
                    x: (c as f64 + 0.5) * grid.cell,
                    y: (r as f64 + 0.5) * grid.cell,
                });
            }
        }
    }
    peaks.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    // Kept detections bucketed by squares of the radius: only the 3 × 3 squares around a
    // peak can hold one within the radius, so suppression is linear in the peaks.
    let radius_px = radius_um / grid.mpp;
    let side = radius_px.max(1.0);
    let bucket = |d: &Detection| ((d.x / side).floor() as i64, (d.y / side).floor() as i64);
    let mut buckets: HashMap<(i64, i64), Vec<Detection>> = HashMap::new();
    let mut kept: Vec<Detection> = Vec::new();
    for p in peaks {
        let (bx, by) = bucket(&p);
        let suppressed = (bx - 1..=bx + 1).any(|x| {
            (by - 1..=by + 1).any(|y| {
                buckets
                    .get(&(x, y))
                    .is_some_and(|near| near.iter().any(|k| (k.x - p.x).hypot(k.y - p.y) <= radius_px))
            })
        });
        if !suppressed {
            buckets.entry((bx, by)).or_default().push(p);
            kept.push(p);
        }
    }
    kept
}

/// Writes `detections` as CSV rows `confidence,x,y`, under a temporary name then renamed.
pub fn write_csv(path: &Path, detections: &[Detection]) -> std::io::Result<()> {
    super::write_atomically(path, |out| {
        for d in detections {
            writeln!(out, "{:.6},{:.0},{:.0}", d.confidence, d.x, d.y)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_then_suppression_within_the_radius() {
        // 1 × 6 tokens of 100 px at 0.5 µm/px (50 µm each).
        let grid = ProbabilityGrid {
            rows: 1,
            cols: 6,
            cell: 100.0,
            values: vec![0.9, 0.5, 0.8, f32::NAN, 0.7, 0.1],
            mpp: 0.5,
        };
        let all = detect(&grid, 0.2, 0.0);
        assert_eq!(
            all.iter().map(|d| d.confidence).collect::<Vec<_>>(),
            vec![0.9, 0.8, 0.7]
        );
        assert_eq!((all[0].x, all[0].y), (50.0, 50.0));
        // 75 µm = 150 px: the 0.8 peak (200 px from 0.9) survives, then 0.7 is 200 px away.
        assert_eq!(detect(&grid, 0.2, 75.0).len(), 3);
        // 120 µm = 240 px: 0.8 is within reach of 0.9; 0.7 is 400 px from 0.9 and stays.
        let kept = detect(&grid, 0.2, 120.0);
        assert_eq!(
            kept.iter().map(|d| d.confidence).collect::<Vec<_>>(),
            vec![0.9, 0.7]
        );
        assert!(detect(&grid, 0.95, 75.0).is_empty());
    }

    #[test]
    fn bucketed_suppression_keeps_what_checking_every_pair_keeps() {
        let (rows, cols) = (40, 50);
        let mut state = 12345u64;
        let values = (0..rows * cols)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect();
        let grid = ProbabilityGrid {
            rows,
            cols,
            cell: 64.0,
            values,
            mpp: 0.5,
        };
        for radius_um in [0.0, 20.0, 75.0, 300.0] {
            let mut everything = detect(&grid, 0.1, 0.0);
            let radius_px = radius_um / grid.mpp;
            let mut expected: Vec<Detection> = Vec::new();
            everything.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
            for p in everything {
                if expected.iter().all(|k| (k.x - p.x).hypot(k.y - p.y) > radius_px) {
                    expected.push(p);
                }
            }
            assert_eq!(detect(&grid, 0.1, radius_um), expected, "radius {radius_um} µm");
        }
    }
}
