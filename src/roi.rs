//! Polygons from GeoJSON (QuPath's export; level-0 pixel coordinates): regions of interest,
//! to which the analysis is restricted (holes respected, even–odd rule), and the reading of
//! classified annotations that ground truth uses.

use crate::tissue::TissueMask;
use std::path::Path;

/// Polygons as rings of (x, y) level-0 points: each polygon's exterior then its holes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Roi {
    pub polygons: Vec<Vec<Vec<[f64; 2]>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {msg}", path.display())]
pub struct RoiError {
    pub path: std::path::PathBuf,
    pub msg: String,
}

impl Roi {
    /// Every Polygon and MultiPolygon of a GeoJSON file (a FeatureCollection, a Feature or a
    /// bare geometry); other geometries (points, lines) are ignored.
    pub fn load(path: &Path) -> Result<Roi, RoiError> {
        let bad = |msg: String| RoiError {
            path: path.to_path_buf(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let roi = Roi {
            polygons: geojson_polygons(&value, &|_| true).map_err(bad)?,
        };
        if roi.polygons.is_empty() {
            return Err(bad("holds no Polygon or MultiPolygon".into()));
        }
        Ok(roi)
    }

    /// Whether level-0 point (x, y) is inside a polygon (and outside its holes).
    pub fn contains(&self, x: f64, y: f64) -> bool {
        self.polygons
            .iter()
            .any(|rings| rings.iter().filter(|r| crosses(r, x, y)).count() % 2 == 1)
    }

    /// Clears every mask pixel whose centre is outside the region.
    pub fn restrict(&self, mask: &mut TissueMask) {
        let d = mask.downsample;
        for y in 0..mask.height {
            for x in 0..mask.width {
                let i = y * mask.width + x;
                if mask.tissue[i] && !self.contains((x as f64 + 0.5) * d, (y as f64 + 0.5) * d) {
                    mask.tissue[i] = false;
                }
            }
        }
    }
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

fn ring(v: &serde_json::Value) -> Result<Vec<[f64; 2]>, String> {
    v.as_array()
        .ok_or("a ring is not an array")?
        .iter()
        .map(|p| {
            match (
                p.get(0).and_then(|x| x.as_f64()),
                p.get(1).and_then(|y| y.as_f64()),
            ) {
                (Some(x), Some(y)) => Ok([x, y]),
                _ => Err(format!("bad point {p}")),
            }
        })
        .collect()
}

fn polygon(v: &serde_json::Value) -> Result<Vec<Vec<[f64; 2]>>, String> {
    v.as_array()
        .ok_or("polygon coordinates are not an array")?
        .iter()
        .map(ring)
        .collect()
}

/// Every Polygon and MultiPolygon of a GeoJSON value (a FeatureCollection, a Feature, a bare
/// geometry, or QuPath's bare array of features), each as its rings; a feature is taken
/// when `keep` accepts its properties.
pub fn geojson_polygons(
    v: &serde_json::Value,
    keep: &dyn Fn(&serde_json::Value) -> bool,
) -> Result<Polygons, String> {
    let mut polygons = Vec::new();
    collect(v, &mut polygons, keep)?;
    Ok(polygons)
}

type Polygons = Vec<Vec<Vec<[f64; 2]>>>;

fn collect(
    v: &serde_json::Value,
    out: &mut Polygons,
    keep: &dyn Fn(&serde_json::Value) -> bool,
) -> Result<(), String> {
    match v.get("type").and_then(|t| t.as_str()) {
        Some("FeatureCollection") => {
            for f in v
                .get("features")
                .and_then(|f| f.as_array())
                .ok_or("FeatureCollection without features")?
            {
                collect(f, out, keep)?;
            }
        }
        Some("Feature") => {
            if let Some(g) = v
                .get("geometry")
                .filter(|g| !g.is_null() && keep(&v["properties"]))
            {
                collect(g, out, keep)?;
            }
        }
        Some("GeometryCollection") => {
            for g in v
                .get("geometries")
                .and_then(|g| g.as_array())
                .ok_or("GeometryCollection without geometries")?
            {
                collect(g, out, keep)?;
            }
        }
        Some("Polygon") => out.push(polygon(&v["coordinates"])?),
        Some("MultiPolygon") => {
            for p in v["coordinates"]
                .as_array()
                .ok_or("MultiPolygon coordinates are not an array")?
            {
                out.push(polygon(p)?);
            }
        }
        Some(_) => {}
        None => {
            // QuPath writes a bare array of features.
            if let Some(items) = v.as_array() {
                for item in items {
                    collect(item, out, keep)?;
                }
            } else {
                return Err("not GeoJSON (no \"type\")".into());
            }
        }
    }
    Ok(())
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
}
