//! Polygons from GeoJSON (QuPath's export; level-0 pixel coordinates): regions of interest,
//! to which the analysis is restricted (holes respected, even–odd rule), and the reading of
//! classified annotations that ground truth uses.

use crate::analysis::tissue::TissueMask;
use crate::annotation::geojson::{geojson_polygons, GeoJsonError};
use std::path::{Path, PathBuf};

/// Polygons as rings of (x, y) level-0 points: each polygon's exterior then its holes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Roi {
    pub polygons: Vec<Vec<Vec<[f64; 2]>>>,
}

/// A region-of-interest file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RoiError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    GeoJson { path: PathBuf, source: GeoJsonError },
    #[error("{}: holds no Polygon or MultiPolygon", path.display())]
    Empty { path: PathBuf },
}

impl Roi {
    /// Every Polygon and MultiPolygon of a GeoJSON file (a FeatureCollection, a Feature or a
    /// bare geometry); other geometries (points, lines) are ignored.
    pub fn load(path: &Path) -> Result<Roi, RoiError> {
        let path_buf = || path.to_path_buf();
        let geojson = |source| RoiError::GeoJson {
            path: path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(|source| RoiError::Io {
            path: path_buf(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| geojson(GeoJsonError::NotJson(e)))?;
        let roi = Roi {
            polygons: geojson_polygons(&value, &|_| true).map_err(geojson)?,
        };
        if roi.polygons.is_empty() {
            return Err(RoiError::Empty { path: path_buf() });
        }
        Ok(roi)
    }

    /// Whether level-0 point (x, y) is inside a polygon (and outside its holes).
    pub fn contains(&self, x: f64, y: f64) -> bool {
        self.polygons
            .iter()
            .any(|rings| rings.iter().filter(|r| crosses(r, x, y)).count() % 2 == 1)
    }

    /// Clears every mask pixel whose centre is outside the region: the same even–odd rule as
    /// [`Roi::contains`], by scanlines (each edge added to the rows it crosses, each row's
    /// crossings sorted), so a polygon of 10^5 vertices costs its edges plus the mask, not
    /// their product.
    pub fn restrict(&self, mask: &mut TissueMask) {
        let (w, h, d) = (mask.width, mask.height, mask.downsample);
        let centre = |r: usize| (r as f64 + 0.5) * d;
        let mut inside = vec![false; w * h];
        let mut rows: Vec<Vec<f64>> = vec![Vec::new(); h];
        for rings in &self.polygons {
            rows.iter_mut().for_each(Vec::clear);
            for ring in rings {
                for (i, a) in ring.iter().enumerate() {
                    let b = ring[(i + 1) % ring.len()];
                    // The rows whose centre y is in [min, max) of the edge, one row of slack
                    // each side for rounding; the test itself is `crosses`'s.
                    let (lo, hi) = (a[1].min(b[1]), a[1].max(b[1]));
                    let first = ((lo / d - 1.5).floor().max(0.0) as usize).min(h);
                    let end = ((hi / d + 1.5).ceil().max(0.0) as usize).min(h);
                    for (r, row) in rows.iter_mut().enumerate().take(end).skip(first) {
                        let y = centre(r);
                        if (a[1] > y) != (b[1] > y) {
                            row.push(a[0] + (y - a[1]) * (b[0] - a[0]) / (b[1] - a[1]));
                        }
                    }
                }
            }
            for (r, row) in rows.iter_mut().enumerate() {
                row.sort_by(f64::total_cmp);
                // A centre x is inside when an odd number of crossings lie right of it, that
                // is between crossings 2k and 2k+1 (from the left; their count is even).
                for span in row.chunks_exact(2) {
                    let first_in = first_at_or_after(w, span[0], d);
                    let end_in = first_at_or_after(w, span[1], d);
                    for c in first_in..end_in.max(first_in) {
                        inside[r * w + c] = true;
                    }
                }
            }
        }
        for (t, inside) in mask.tissue.iter_mut().zip(inside) {
            *t &= inside;
        }
    }
}

/// The first of `n` pixel columns (of side `d`) whose centre is at or right of `x`: from
/// the closed form, then stepped to agree with the comparison exactly.
fn first_at_or_after(n: usize, x: f64, d: f64) -> usize {
    let at_or_after = |c: usize| (c as f64 + 0.5) * d >= x;
    let mut c = ((x / d - 0.5).ceil().max(0.0) as usize).min(n);
    while c > 0 && at_or_after(c - 1) {
        c -= 1;
    }
    while c < n && !at_or_after(c) {
        c += 1;
    }
    c
}

/// Even–odd test: whether a ray from (x, y) to the right crosses `ring` an odd number of times.
fn crosses(ring: &[[f64; 2]], x: f64, y: f64) -> bool {
    let mut inside = false;
    for (i, a) in ring.iter().enumerate() {
        let b = ring[(i + 1) % ring.len()];
        if (a[1] > y) != (b[1] > y) && x < a[0] + (y - a[1]) * (b[0] - a[0]) / (b[1] - a[1]) {
            inside = !inside;
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygons_with_holes_from_qupath_geojson() {
        let dir = std::env::temp_dir().join(format!("flashslide-roi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("roi.geojson");
        std::fs::write(
            &path,
            r#"{"type":"FeatureCollection","features":[
              {"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[0,0],[100,0],[100,100],[0,100],[0,0]],[[40,40],[60,40],[60,60],[40,60],[40,40]]]},"properties":{}},
              {"type":"Feature","geometry":{"type":"Point","coordinates":[5,5]},"properties":{}},
              {"type":"Feature","geometry":{"type":"MultiPolygon","coordinates":[[[[200,200],[300,200],[250,300],[200,200]]]]},"properties":{}}]}"#,
        )
        .unwrap();
        let roi = Roi::load(&path).unwrap();
        assert_eq!(roi.polygons.len(), 2);
        assert!(roi.contains(10.0, 10.0) && !roi.contains(50.0, 50.0) && !roi.contains(150.0, 50.0));
        assert!(roi.contains(250.0, 220.0) && !roi.contains(205.0, 290.0));
        let mut mask = TissueMask {
            width: 4,
            height: 1,
            downsample: 50.0,
            tissue: vec![true; 4],
            threshold: 0,
            median_brightness: 240,
        };
        roi.restrict(&mut mask);
        assert_eq!(mask.tissue, vec![true, true, false, false]);
        std::fs::write(&path, r#"{"type":"Point","coordinates":[1,2]}"#).unwrap();
        assert!(Roi::load(&path).unwrap_err().to_string().contains("no Polygon"));
        std::fs::write(&path, "nope").unwrap();
        assert!(Roi::load(&path)
            .unwrap_err()
            .to_string()
            .contains("roi.geojson: not JSON"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Point by point, as `contains` decides.
    fn restricted_by_points(roi: &Roi, mask: &TissueMask) -> Vec<bool> {
        let d = mask.downsample;
        (0..mask.width * mask.height)
            .map(|i| {
                let (x, y) = (i % mask.width, i / mask.width);
                mask.tissue[i] && roi.contains((x as f64 + 0.5) * d, (y as f64 + 0.5) * d)
            })
            .collect()
    }

    #[test]
    fn scanlines_agree_with_the_point_test_on_random_polygons() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for case in 0..40 {
            // Stars (self-intersecting when the radii jump), some with a hole, some vertices
            // on pixel centres' rows and columns exactly, some outside the mask.
            let mut polygons = Vec::new();
            for _ in 0..1 + case % 3 {
                let (cx, cy, r) = (uniform() * 400.0, uniform() * 300.0, 20.0 + uniform() * 200.0);
                let n = 3 + (uniform() * 40.0) as usize;
                let mut star = |scale: f64| -> Vec<[f64; 2]> {
                    (0..n)
                        .map(|k| {
                            let a = k as f64 / n as f64 * std::f64::consts::TAU;
                            let rr = scale * r * (0.3 + uniform());
                            let snap = |v: f64| {
                                if case % 4 == 0 {
                                    (v / 8.0).round() * 8.0 + 4.0
                                } else {
                                    v
                                }
                            };
                            [snap(cx + rr * a.cos()), snap(cy + rr * a.sin())]
                        })
                        .collect()
                };
                let mut rings = vec![star(1.0)];
                if case % 2 == 1 {
                    rings.push(star(0.3));
                }
                polygons.push(rings);
            }
            let roi = Roi { polygons };
            let mut mask = TissueMask {
                width: 50,
                height: 40,
                downsample: 8.0,
                tissue: (0..2000).map(|i| i % 7 != 0).collect(),
                threshold: 0,
                median_brightness: 240,
            };
            let want = restricted_by_points(&roi, &mask);
            roi.restrict(&mut mask);
            assert_eq!(mask.tissue, want, "case {case}");
        }
    }

    #[test]
    fn a_polygon_of_200000_vertices_restricts_a_large_mask() {
        // A circle drawn with 200,000 vertices: scanlines cost edges plus pixels.
        let n = 200_000;
        let circle: Vec<[f64; 2]> = (0..n)
            .map(|k| {
                let a = k as f64 / n as f64 * std::f64::consts::TAU;
                [10_000.0 + 8_000.0 * a.cos(), 10_000.0 + 8_000.0 * a.sin()]
            })
            .collect();
        let roi = Roi {
            polygons: vec![vec![circle]],
        };
        let mut mask = TissueMask {
            width: 1250,
            height: 1250,
            downsample: 16.0,
            tissue: vec![true; 1250 * 1250],
            threshold: 0,
            median_brightness: 240,
        };
        roi.restrict(&mut mask);
        let kept = mask.tissue.iter().filter(|&&t| t).count() as f64;
        let area = std::f64::consts::PI * 500.0 * 500.0;
        assert!(
            (kept / area - 1.0).abs() < 0.01,
            "{kept} pixels kept, {area} expected"
        );
        assert!(mask.tissue[625 * 1250 + 625] && !mask.tissue[0]);
    }
}
