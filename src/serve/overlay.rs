//! What the viewer draws over a slide, as one JSON document: the token grid's probabilities
//! and the tumour regions (from qupath.geojson, read a line at a time as the run wrote it, so
//! a slide of a million tokens is never held as a JSON tree), the detections, the summary's
//! numbers and the colour map of heatmap.png.

use super::Viewed;
use crate::export::colormap::viridis;
use crate::export::heatmap::tint_alpha;
use serde_json::{json, Value};
use std::io::BufRead;

/// Tokens of a grid sent to the viewer, at most (a 2^24-token slide is far past any scan).
const MAX_TOKENS: usize = 1 << 24;

pub fn json(v: &Viewed) -> Vec<u8> {
    let s = &v.summary;
    let cell = s.token_um / s.mpp;
    let [width, height] = s.dimensions;
    let (cols, rows) = (
        (width as f64 / cell).ceil() as usize,
        (height as f64 / cell).ceil() as usize,
    );
    let mut values: Vec<Option<f32>> = Vec::new();
    if rows.saturating_mul(cols) <= MAX_TOKENS && cell.is_finite() && cell > 0.0 {
        values = vec![None; rows * cols];
    }
    let mut regions = Vec::new();
    if let Ok(file) = std::fs::File::open(v.dir.join("qupath.geojson")) {
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            // A feature a line, between commas; the last one closes the collection.
            let text = line.trim().trim_end_matches(',');
            let text = text.strip_suffix("]}").unwrap_or(text);
            let Ok(feature) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            let properties = &feature["properties"];
            let measurements = &properties["measurements"];
            match properties["objectType"].as_str() {
                Some("tile") if !values.is_empty() => {
                    let (Some(p), Some((x, y))) =
                        (measurements["tumor_probability"].as_f64(), centre(&feature))
                    else {
                        continue;
                    };
                    let (c, r) = ((x / cell) as usize, (y / cell) as usize);
                    if c < cols && r < rows {
                        values[r * cols + c] = Some(p as f32);
                    }
                }
                Some("annotation") if properties["classification"]["name"] == "Tumor" => {
                    regions.push(json!({
                        "max": measurements["max_tumor_probability"],
                        "area_mm2": measurements["area_mm2"],
                        "rings": feature["geometry"]["coordinates"],
                    }));
                }
                _ => {}
            }
        }
    }
    regions.sort_by(|a, b| {
        let p = |r: &Value| r["max"].as_f64().unwrap_or(0.0);
        p(b).total_cmp(&p(a))
    });
    let detections: Vec<[f64; 3]> = std::fs::read_to_string(v.dir.join("detections.csv"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(|x| x.trim().parse::<f64>());
            Some([f.next()?.ok()?, f.next()?.ok()?, f.next()?.ok()?])
        })
        .collect();
    let colormap: Vec<[u8; 4]> = (0..256)
        .map(|i| {
            let p = i as f32 / 255.0;
            let [r, g, b] = viridis(p);
            [r, g, b, (tint_alpha(p) * 255.0).round() as u8]
        })
        .collect();
    let threshold = s.settings["threshold"].as_f64();
    let document = json!({
        "width": width,
        "height": height,
        "mpp": s.mpp,
        "threshold": threshold,
        "slide_error": v.slide.as_ref().err(),
        "grid": {"cell": cell, "rows": rows, "cols": cols, "values": values},
        "regions": regions,
        "detections": detections,
        "colormap": colormap,
        "summary": {
            "slide": s.slide,
            "slide_probability": s.slide_probability,
            "max_probability": s.max_probability,
            "tumour_area_mm2": s.tumour_area_mm2,
            "tumour_regions": s.tumour_regions,
            "detections": s.detections,
            "tissue_tiles": s.tissue_tiles,
            "tokens": s.tokens,
            "model": s.model,
            "model_notice": s.model_notice,
            "device": s.device,
            "seconds": s.seconds.total,
            "no_tissue": s.no_tissue,
        },
    });
    serde_json::to_vec(&document).unwrap_or_default()
}

/// The centre of a feature's polygon's bounding box.
fn centre(feature: &Value) -> Option<(f64, f64)> {
    let ring = feature["geometry"]["coordinates"].get(0)?.as_array()?;
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for p in ring {
        let (x, y) = (p.get(0)?.as_f64()?, p.get(1)?.as_f64()?);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    Some(((x0 + x1) / 2.0, (y0 + y1) / 2.0))
}
