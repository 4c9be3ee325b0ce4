//! Simple polygons in level-0 pixel coordinates: the outlines of tissue and lesions.

use crate::util::rng::{cos, sin, Rng, PI};

#[derive(Clone, Debug, PartialEq)]
pub struct Polygon {
    /// Vertices in order, not repeating the first.
    pub points: Vec<(f64, f64)>,
}

impl Polygon {
    /// A star-shaped outline around (`cx`, `cy`): radius `r` perturbed by random harmonics
    /// 2..=`harmonics` whose amplitudes fall off as 1/k, scaled so the total perturbation
    /// stays within ±`roughness`·r (so the shape stays star-shaped, hence simple).
    pub fn irregular(
        rng: &mut Rng,
        cx: f64,
        cy: f64,
        r: f64,
        roughness: f64,
        harmonics: usize,
        vertices: usize,
    ) -> Polygon {
        let terms: Vec<(f64, f64, f64)> = (2..=harmonics)
            .map(|k| (k as f64, rng.range(0.3, 1.0) / k as f64, rng.range(0.0, 2.0 * PI)))
            .collect();
        let norm: f64 = terms.iter().map(|t| t.1).sum::<f64>().max(1e-9);
        let points = (0..vertices)
            .map(|i| {
                let t = 2.0 * PI * i as f64 / vertices as f64;
                let wobble: f64 = terms.iter().map(|(k, a, p)| a * sin(k * t + p)).sum::<f64>() / norm;
                let radius = r * (1.0 + roughness * wobble);
                (cx + radius * cos(t), cy + radius * sin(t))
            })
            .collect();
        Polygon { points }
    }

    pub fn area(&self) -> f64 {
        let n = self.points.len();
        let twice: f64 = (0..n)
            .map(|i| {
                let (a, b) = (self.points[i], self.points[(i + 1) % n]);
                a.0 * b.1 - b.0 * a.1
            })
            .sum();
        twice.abs() / 2.0
    }

    pub fn centroid(&self) -> (f64, f64) {
        let n = self.points.len() as f64;
        let (sx, sy) = self
            .points
            .iter()
            .fold((0.0, 0.0), |acc, p| (acc.0 + p.0, acc.1 + p.1));
        (sx / n, sy / n)
    }

    /// The largest distance between two vertices.
    pub fn longest_diameter(&self) -> f64 {
        let mut best = 0.0f64;
        for (i, a) in self.points.iter().enumerate() {
            for b in &self.points[i + 1..] {
                best = best.max(((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt());
            }
        }
        best
    }

    pub fn bounds(&self) -> (f64, f64, f64, f64) {
        self.points
            .iter()
            .fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |b, p| {
                (b.0.min(p.0), b.1.min(p.1), b.2.max(p.0), b.3.max(p.1))
            })
    }

    /// Scales about the centroid.
    pub fn scaled(&self, factor: f64) -> Polygon {
        let (cx, cy) = self.centroid();
        Polygon {
            points: self
                .points
                .iter()
                .map(|p| (cx + (p.0 - cx) * factor, cy + (p.1 - cy) * factor))
                .collect(),
        }
    }

    /// Distance from (`x`, `y`) to the nearest point of the outline.
    pub fn distance_to_outline(&self, x: f64, y: f64) -> f64 {
        let n = self.points.len();
        (0..n)
            .map(|i| {
                let ((ax, ay), (bx, by)) = (self.points[i], self.points[(i + 1) % n]);
                let (dx, dy) = (bx - ax, by - ay);
                let length2 = dx * dx + dy * dy;
                let t = if length2 > 0.0 {
                    (((x - ax) * dx + (y - ay) * dy) / length2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                (x - ax - t * dx).hypot(y - ay - t * dy)
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// Even-odd point-in-polygon test.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        let mut inside = false;
        let n = self.points.len();
        let mut j = n - 1;
        for i in 0..n {
            let (xi, yi) = self.points[i];
            let (xj, yj) = self.points[j];
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                inside = !inside;
            }
            j = i;
        }
        inside
    }

    /// The x-intervals of row `y` inside the polygon (even-odd), sorted.
    pub fn row_spans(&self, y: f64) -> Vec<(f64, f64)> {
        let n = self.points.len();
        let mut xs = Vec::new();
        let mut j = n - 1;
        for i in 0..n {
            let (xi, yi) = self.points[i];
            let (xj, yj) = self.points[j];
            if (yi > y) != (yj > y) {
                xs.push((xj - xi) * (y - yi) / (yj - yi) + xi);
            }
            j = i;
        }
        xs.sort_by(f64::total_cmp);
        xs.chunks_exact(2).map(|c| (c[0], c[1])).collect()
    }
}

/// The cells of a row of `count` cells of size `cell` whose centres ((c + 0.5) · cell) lie
/// in the span [a, b).
pub fn cells_centred_in(span: (f64, f64), cell: f64, count: usize) -> std::ops::Range<usize> {
    let first = (span.0 / cell - 0.5).ceil().max(0.0) as usize;
    let end = ((span.1 / cell - 0.5).ceil().max(0.0) as usize).min(count);
    first..end.max(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_measures() {
        let sq = Polygon {
            points: vec![(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)],
        };
        assert_eq!(sq.area(), 100.0);
        assert!((sq.longest_diameter() - 200f64.sqrt()).abs() < 1e-12);
        assert!(sq.contains(5.0, 5.0) && !sq.contains(15.0, 5.0));
        assert_eq!(sq.row_spans(5.0), vec![(0.0, 10.0)]);
    }

    #[test]
    fn irregular_outlines_are_not_discs() {
        let mut rng = Rng::new(3);
        let p = Polygon::irregular(&mut rng, 0.0, 0.0, 100.0, 0.35, 9, 96);
        let radii: Vec<f64> = p.points.iter().map(|q| (q.0 * q.0 + q.1 * q.1).sqrt()).collect();
        let (lo, hi) = radii
            .iter()
            .fold((f64::MAX, 0.0f64), |a, &r| (a.0.min(r), a.1.max(r)));
        assert!(hi / lo > 1.2, "{lo} {hi}");
        assert!(p.contains(0.0, 0.0));
    }
}
