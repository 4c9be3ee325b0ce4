//! QuPath GeoJSON (level-0 pixel coordinates): `qupath.geojson` with one "tile" object per
//! stage-2 token carrying its tumour probability as a measurement (QuPath's measurement
//! maps colour them) and one "Tumor" annotation per connected region at or above the
//! threshold; `tissue.geojson` with the tissue mask's regions. Written as a stream: a slide
//! can have a million tokens.

use super::contours::{trace_regions, Polygon};
use super::{write_atomically, ProbabilityGrid};
use crate::tissue::TissueMask;
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;

/// QuPath's default colour for its "Tumor" class.
const TUMOR_COLOUR: [u8; 3] = [200, 0, 0];

/// A number with `.1` digits after the point, formatted as integers are: several times
/// faster than `{:.N}` on a float, which counts with a million tiles to write.
struct Fixed(f64, u32);

impl std::fmt::Display for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scale = 10u64.pow(self.1);
        let n = (self.0.abs() * scale as f64).round() as u64;
        let sign = if self.0 < 0.0 && n != 0 { "-" } else { "" };
        if self.1 == 0 {
            return write!(f, "{sign}{n}");
        }
        write!(
            f,
            "{sign}{}.{:0width$}",
            n / scale,
            n % scale,
            width = self.1 as usize
        )
    }
}

fn ring_json(ring: &[[f64; 2]], scale: f64) -> String {
    let points: Vec<String> = ring
        .iter()
        .map(|p| format!("[{},{}]", Fixed(p[0] * scale, 1), Fixed(p[1] * scale, 1)))
        .collect();
    format!("[{}]", points.join(","))
}

fn polygon_json(p: &Polygon, scale: f64) -> String {
    let mut rings = vec![ring_json(&p.exterior, scale)];
    rings.extend(p.holes.iter().map(|h| ring_json(h, scale)));
    format!("{{\"type\":\"Polygon\",\"coordinates\":[{}]}}", rings.join(","))
}

/// A tumour region: its outline (level-0 pixels), area and highest probability.
pub struct Region {
    pub polygon: Polygon,
    pub area_mm2: f64,
    pub max_probability: f32,
}

/// The connected regions of tokens at or above `threshold`, largest first.
pub fn tumour_regions(grid: &ProbabilityGrid, threshold: f32) -> Vec<Region> {
    let mask = grid.above(threshold);
    let (labels, _) = super::contours::label_regions(&mask, grid.cols, grid.rows);
    let polygons = trace_regions(&mask, grid.cols, grid.rows);
    let mut max = vec![0f32; polygons.len()];
    for (l, v) in labels.iter().zip(&grid.values) {
        if *l != u32::MAX {
            max[*l as usize] = max[*l as usize].max(*v);
        }
    }
    let cell_mm2 = (grid.cell * grid.mpp / 1000.0).powi(2);
    let mut regions: Vec<Region> = polygons
        .into_iter()
        .zip(max)
        .map(|(polygon, max_probability)| Region {
            area_mm2: polygon.area() * cell_mm2,
            polygon: Polygon {
                exterior: polygon
                    .exterior
                    .iter()
                    .map(|p| [p[0] * grid.cell, p[1] * grid.cell])
                    .collect(),
                holes: polygon
                    .holes
                    .iter()
                    .map(|h| h.iter().map(|p| [p[0] * grid.cell, p[1] * grid.cell]).collect())
                    .collect(),
            },
            max_probability,
        })
        .collect();
    regions.sort_by(|a, b| b.area_mm2.total_cmp(&a.area_mm2));
    regions
}

/// Writes qupath.geojson: a tile object per token, then the tumour regions.
pub fn write_qupath(path: &Path, grid: &ProbabilityGrid, regions: &[Region]) -> std::io::Result<()> {
    write_atomically(path, |out| {
        write!(out, "{{\"type\":\"FeatureCollection\",\"features\":[")?;
        let mut first = true;
        // Rows formatted in parallel, a block at a time, and written in order.
        let s = grid.cell;
        let format_row = |r: usize| -> Vec<u8> {
            let mut text = Vec::new();
            for c in 0..grid.cols {
                let p = grid.values[r * grid.cols + c];
                if p.is_nan() {
                    continue;
                }
                let corner = |i: usize| Fixed(i as f64 * s, 1).to_string();
                let (x0, y0, x1, y1) = (corner(c), corner(r), corner(c + 1), corner(r + 1));
                let p = Fixed(p as f64, 5);
                write!(
                    text,
                    ",\n{{\"type\":\"Feature\",\"geometry\":{{\"type\":\"Polygon\",\"coordinates\":[[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]]}},\"properties\":{{\"objectType\":\"tile\",\"measurements\":{{\"tumor_probability\":{p}}}}}}}"
                )
                .expect("writing to memory");
            }
            text
        };
        for block in (0..grid.rows).collect::<Vec<_>>().chunks(256) {
            let texts: Vec<Vec<u8>> = block.par_iter().map(|&r| format_row(r)).collect();
            for text in texts.iter().filter(|t| !t.is_empty()) {
                // Every feature starts with ",\n"; the first one of the file drops its comma.
                let skip = usize::from(std::mem::take(&mut first));
                out.write_all(&text[skip..])?;
            }
        }
        for region in regions {
            let comma = if std::mem::take(&mut first) { "" } else { "," };
            write!(
                out,
                "{comma}\n{{\"type\":\"Feature\",\"geometry\":{},\"properties\":{{\"objectType\":\"annotation\",\"name\":\"Tumor (max p {:.3})\",\"classification\":{{\"name\":\"Tumor\",\"color\":[{},{},{}]}},\"measurements\":{{\"area_mm2\":{:.6},\"max_tumor_probability\":{:.5}}}}}}}",
                polygon_json(&region.polygon, 1.0),
                region.max_probability,
                TUMOR_COLOUR[0],
                TUMOR_COLOUR[1],
                TUMOR_COLOUR[2],
                region.area_mm2,
                region.max_probability
            )?;
        }
        writeln!(out, "]}}")
    })
}

/// Writes tissue.geojson: one annotation per tissue region of the mask.
pub fn write_tissue(path: &Path, mask: &TissueMask) -> std::io::Result<()> {
    let polygons = trace_regions(&mask.tissue, mask.width, mask.height);
    write_atomically(path, |out| {
        write!(out, "{{\"type\":\"FeatureCollection\",\"features\":[")?;
        for (i, p) in polygons.iter().enumerate() {
            write!(
                out,
                "{}\n{{\"type\":\"Feature\",\"geometry\":{},\"properties\":{{\"objectType\":\"annotation\",\"classification\":{{\"name\":\"Tissue\",\"color\":[0,160,0]}}}}}}",
                if i > 0 { "," } else { "" },
                polygon_json(p, mask.downsample)
            )?;
        }
        writeln!(out, "]}}")
    })
}
