//! Ground truth of a synthetic slide: lesions.json, the tumour mask (a tiled TIFF registered
//! to the slide at a downsample), and the lesions as QuPath-importable GeoJSON.

use super::scene::{MimicKind, Scene};
use crate::annotation::polygon::{cells_centred_in, Polygon};
use crate::annotation::LesionClass;
use crate::slide::writer::{level_factors_until, Compression, PyramidOptions, PyramidWriter, Samples};
use crate::slide::SlideError;
use serde::Serialize;
use serde_json::json;
use std::path::Path;

/// The mask's pixel size in level-0 pixels.
pub const MASK_DOWNSAMPLE: u32 = 4;

#[derive(Serialize)]
pub struct LesionRecord {
    pub id: usize,
    pub class: LesionClass,
    /// Outline as (x, y) in level-0 pixels.
    pub polygon: Vec<[f64; 2]>,
    pub area_um2: f64,
    pub longest_diameter_um: f64,
    pub centroid: [f64; 2],
}

#[derive(Serialize)]
pub struct MimicRecord {
    pub kind: MimicKind,
    pub polygon: Vec<[f64; 2]>,
}

#[derive(Serialize)]
pub struct Truth {
    pub slide: String,
    pub width: u64,
    pub height: u64,
    pub mpp: f64,
    pub seed: u64,
    pub generator: String,
    pub mask: MaskInfo,
    pub lesions: Vec<LesionRecord>,
    /// Benign regions that resemble tumour at low magnification (for evaluation).
    pub benign_mimics: Vec<MimicRecord>,
    /// Tissue outlines.
    pub tissue: Vec<Vec<[f64; 2]>>,
}

#[derive(Serialize)]
pub struct MaskInfo {
    pub file: String,
    pub downsample: u32,
}

fn points(p: &Polygon) -> Vec<[f64; 2]> {
    p.points.iter().map(|&(x, y)| [round2(x), round2(y)]).collect()
}

/// Coordinates to 1/100 px: plenty, and the JSON stays readable.
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

impl Truth {
    pub fn of(scene: &Scene, slide: &str, seed: u64, mask_file: &str) -> Truth {
        let mpp = scene.mpp;
        let lesions = scene
            .lesions
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (cx, cy) = l.outline.centroid();
                LesionRecord {
                    id: i + 1,
                    class: l.class,
                    polygon: points(&l.outline),
                    area_um2: round2(l.outline.area() * mpp * mpp),
                    longest_diameter_um: round2(l.outline.longest_diameter() * mpp),
                    centroid: [round2(cx), round2(cy)],
                }
            })
            .collect();
        Truth {
            slide: slide.to_string(),
            width: scene.width,
            height: scene.height,
            mpp,
            seed,
            generator: format!("flashslide {}", env!("CARGO_PKG_VERSION")),
            mask: MaskInfo {
                file: mask_file.to_string(),
                downsample: MASK_DOWNSAMPLE,
            },
            lesions,
            benign_mimics: scene
                .mimics
                .iter()
                .map(|m| MimicRecord {
                    kind: m.kind,
                    polygon: points(&m.outline),
                })
                .collect(),
            tissue: scene.tissue.iter().map(points).collect(),
        }
    }

    /// The lesions as a QuPath GeoJSON FeatureCollection (level-0 pixels).
    pub fn geojson(&self) -> serde_json::Value {
        let features: Vec<_> = self
            .lesions
            .iter()
            .map(|l| {
                let mut ring = l.polygon.clone();
                ring.push(l.polygon[0]);
                json!({
                    "type": "Feature",
                    "id": format!("lesion-{}", l.id),
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                    "properties": {
                        "objectType": "annotation",
                        "name": format!("lesion {} ({:?})", l.id, l.class).to_lowercase(),
                        "classification": {"name": "Tumor", "color": [200, 0, 0]},
                        "measurements": {"area_um2": l.area_um2, "longest_diameter_um": l.longest_diameter_um}
                    }
                })
            })
            .collect();
        json!({"type": "FeatureCollection", "features": features})
    }
}

/// Writes the tumour mask: 255 inside any lesion, 0 elsewhere, one pixel per
/// `MASK_DOWNSAMPLE` level-0 pixels (a pixel is inside when its centre is).
pub fn write_mask(scene: &Scene, path: &Path) -> Result<(), SlideError> {
    let d = MASK_DOWNSAMPLE as f64;
    let (w, h) = (
        scene.width.div_ceil(MASK_DOWNSAMPLE as u64),
        scene.height.div_ceil(MASK_DOWNSAMPLE as u64),
    );
    let options = PyramidOptions {
        tile_size: 256,
        compression: Compression::Deflate { level: 6 },
        samples: Samples::Grey,
        level_factors: level_factors_until(w, h, 4, 1024),
        mpp: Some(scene.mpp * d),
        description: Some(format!(
            "flashslide tumour mask; downsample {MASK_DOWNSAMPLE} from the slide"
        )),
        thumbnail: false,
    };
    let mut writer = PyramidWriter::create(path, w, h, options)?;
    let mut y = 0u64;
    while y < h {
        let rows = writer.next_band_rows() as u64;
        let mut band = vec![0u8; (rows * w) as usize];
        for r in 0..rows {
            let cy = ((y + r) as f64 + 0.5) * d;
            for l in &scene.lesions {
                for span in l.outline.row_spans(cy) {
                    for c in cells_centred_in(span, d, w as usize) {
                        band[r as usize * w as usize + c] = 255;
                    }
                }
            }
        }
        writer.write_band(&band)?;
        y += rows;
    }
    writer.finish()
}
