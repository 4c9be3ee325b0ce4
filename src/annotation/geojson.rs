//! Polygons of a GeoJSON document (level-0 pixels, as QuPath exports them), each as its
//! rings: the outer boundary then any holes.

/// What makes a document not the GeoJSON polygons expected.
#[derive(Debug, thiserror::Error)]
pub enum GeoJsonError {
    #[error("not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("{0} is not an array")]
    NotAnArray(&'static str),
    #[error("bad point {0}")]
    BadPoint(String),
    #[error("{0}")]
    Missing(&'static str),
    #[error("not GeoJSON (no \"type\")")]
    NoType,
}

fn ring(v: &serde_json::Value) -> Result<Vec<[f64; 2]>, GeoJsonError> {
    v.as_array()
        .ok_or(GeoJsonError::NotAnArray("a ring"))?
        .iter()
        .map(|p| {
            match (
                p.get(0).and_then(|x| x.as_f64()),
                p.get(1).and_then(|y| y.as_f64()),
            ) {
                (Some(x), Some(y)) => Ok([x, y]),
                _ => Err(GeoJsonError::BadPoint(p.to_string())),
            }
        })
        .collect()
}

fn polygon(v: &serde_json::Value) -> Result<Vec<Vec<[f64; 2]>>, GeoJsonError> {
    v.as_array()
        .ok_or(GeoJsonError::NotAnArray("a polygon's coordinates"))?
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
) -> Result<Polygons, GeoJsonError> {
    let mut polygons = Vec::new();
    collect(v, &mut polygons, keep)?;
    Ok(polygons)
}

type Polygons = Vec<Vec<Vec<[f64; 2]>>>;

fn collect(
    v: &serde_json::Value,
    out: &mut Polygons,
    keep: &dyn Fn(&serde_json::Value) -> bool,
) -> Result<(), GeoJsonError> {
    match v.get("type").and_then(|t| t.as_str()) {
        Some("FeatureCollection") => {
            for f in v
                .get("features")
                .and_then(|f| f.as_array())
                .ok_or(GeoJsonError::Missing("a FeatureCollection without features"))?
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
                .ok_or(GeoJsonError::Missing("a GeometryCollection without geometries"))?
            {
                collect(g, out, keep)?;
            }
        }
        Some("Polygon") => out.push(polygon(&v["coordinates"])?),
        Some("MultiPolygon") => {
            for p in v["coordinates"]
                .as_array()
                .ok_or(GeoJsonError::NotAnArray("a MultiPolygon's coordinates"))?
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
                return Err(GeoJsonError::NoType);
            }
        }
    }
    Ok(())
}
