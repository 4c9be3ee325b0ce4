//! QuPath GeoJSON (level-0 pixel coordinates): `qupath.geojson` with one "tile" object per
//! stage-2 token carrying its tumour probability as a measurement (QuPath's measurement
//! maps colour them) and one "Tumor" annotation per connected region at or above the
//! threshold; `tissue.geojson` with the tissue mask's regions. Written as a stream: a slide
//! can have a million tokens.
//!
//! Everything lies on the slide: tokens and mask pixels wholly beyond its level-0 rectangle
//! are left out, those across its edge clipped to it. Every polygon is OGC-valid (see
//! [`super::contours`]). Every feature has an `id` (QuPath 0.4+ reads it), a UUID v5 that
//! reruns reproduce: see [`FeatureIds`].

use super::contours::{trace_in_slide, Polygon, SlideGrid};
use super::{write_atomically, ProbabilityGrid};
use crate::analysis::tissue::TissueMask;
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;
use uuid::Uuid;

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

/// The namespace of flashslide's feature ids (a fixed random UUID).
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x9edc7a58_d597_4883_a84b_254ecb57176f);

/// The ids of one slide's features under one model: the UUID v5, in the namespace of the
/// UUID v5 of "`<slide head_tail_sha256>:<slide size>:<model sha256>`" in [`ID_NAMESPACE`],
/// of "`<file name>:<feature index>`" (the index counting from 0 in the file's order). The
/// same slide bytes and model give the same ids; the file name keeps the ids of
/// qupath.geojson and tissue.geojson apart.
#[derive(Clone, Copy, Debug)]
pub struct FeatureIds(Uuid);

impl FeatureIds {
    pub fn new(slide_head_tail_sha256: &str, slide_size: u64, model_sha256: &str) -> FeatureIds {
        let name = format!("{slide_head_tail_sha256}:{slide_size}:{model_sha256}");
        FeatureIds(Uuid::new_v5(&ID_NAMESPACE, name.as_bytes()))
    }

    pub fn id(&self, file: &str, index: usize) -> Uuid {
        Uuid::new_v5(&self.0, format!("{file}:{index}").as_bytes())
    }
}

fn ring_json(ring: &[[f64; 2]]) -> String {
    let points: Vec<String> = ring
        .iter()
        .map(|p| format!("[{},{}]", Fixed(p[0], 1), Fixed(p[1], 1)))
        .collect();
    format!("[{}]", points.join(","))
}

fn polygon_json(p: &Polygon) -> String {
    let mut rings = vec![ring_json(&p.exterior)];
    rings.extend(p.holes.iter().map(|h| ring_json(h)));
    format!("{{\"type\":\"Polygon\",\"coordinates\":[{}]}}", rings.join(","))
}

/// A tumour region: its outline (level-0 pixels), area and highest probability.
pub struct Region {
    pub polygon: Polygon,
    pub area_mm2: f64,
    pub max_probability: f32,
}

/// The connected regions of tokens at or above `threshold` on the slide (`extent`: its
/// level-0 width and height), largest first.
pub fn tumour_regions(grid: &ProbabilityGrid, threshold: f32, extent: [u64; 2]) -> Vec<Region> {
    let (labels, polygons) = trace_in_slide(
        &grid.above(threshold),
        grid.cols,
        grid.rows,
        SlideGrid::new(grid.cell, extent),
    );
    let mut max = vec![0f32; polygons.len()];
    for (l, v) in labels.iter().zip(&grid.values) {
        if *l != u32::MAX {
            max[*l as usize] = max[*l as usize].max(*v);
        }
    }
    let px_mm2 = (grid.mpp / 1000.0).powi(2);
    let mut regions: Vec<Region> = polygons
        .into_iter()
        .zip(max)
        .map(|(polygon, max_probability)| Region {
            area_mm2: polygon.area() * px_mm2,
            polygon,
            max_probability,
        })
        .collect();
    regions.sort_by(|a, b| b.area_mm2.total_cmp(&a.area_mm2));
    regions
}

/// Writes qupath.geojson: a tile object per token on the slide (`extent`: its level-0 width
/// and height), clipped to it, then the tumour regions.
pub fn write_qupath(
    path: &Path,
    grid: &ProbabilityGrid,
    regions: &[Region],
    extent: [u64; 2],
    ids: FeatureIds,
) -> std::io::Result<()> {
    const FILE: &str = "qupath.geojson";
    let lines = SlideGrid::new(grid.cell, extent);
    let exported = |r: usize, c: usize| !grid.values[r * grid.cols + c].is_nan() && lines.overlaps(c, r);
    // Each row's first feature index, so that rows can be formatted in parallel.
    let mut row_start = Vec::with_capacity(grid.rows + 1);
    row_start.push(0usize);
    for r in 0..grid.rows {
        let n = (0..grid.cols).filter(|&c| exported(r, c)).count();
        row_start.push(row_start[r] + n);
    }
    let tiles = row_start[grid.rows];
    write_atomically(path, |out| {
        write!(out, "{{\"type\":\"FeatureCollection\",\"features\":[")?;
        // Rows formatted in parallel, a block at a time, and written in order.
        let format_row = |r: usize| -> Vec<u8> {
            let mut text = Vec::new();
            let columns = (0..grid.cols).filter(|&c| exported(r, c));
            for (index, c) in (row_start[r]..).zip(columns) {
                let corner = |i: usize, axis: usize| Fixed(lines.line(i, axis), 1).to_string();
                let (x0, y0, x1, y1) = (corner(c, 0), corner(r, 1), corner(c + 1, 0), corner(r + 1, 1));
                let p = Fixed(grid.values[r * grid.cols + c] as f64, 5);
                // Every feature but the file's first starts with a comma.
                let comma = if index > 0 { "," } else { "" };
                write!(
                    text,
                    "{comma}\n{{\"type\":\"Feature\",\"id\":\"{}\",\"geometry\":{{\"type\":\"Polygon\",\"coordinates\":[[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]]}},\"properties\":{{\"objectType\":\"tile\",\"measurements\":{{\"tumor_probability\":{p}}}}}}}",
                    ids.id(FILE, index)
                )
                .expect("writing to memory");
            }
            text
        };
        for block in (0..grid.rows).collect::<Vec<_>>().chunks(256) {
            let texts: Vec<Vec<u8>> = block.par_iter().map(|&r| format_row(r)).collect();
            for text in &texts {
                out.write_all(text)?;
            }
        }
        for (i, region) in regions.iter().enumerate() {
            let index = tiles + i;
            write!(
                out,
                "{}\n{{\"type\":\"Feature\",\"id\":\"{}\",\"geometry\":{},\"properties\":{{\"objectType\":\"annotation\",\"name\":\"Tumor (max p {:.3})\",\"classification\":{{\"name\":\"Tumor\",\"color\":[{},{},{}]}},\"measurements\":{{\"area_mm2\":{:.6},\"max_tumor_probability\":{:.5}}}}}}}",
                if index > 0 { "," } else { "" },
                ids.id(FILE, index),
                polygon_json(&region.polygon),
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

/// Writes tissue.geojson: one annotation per tissue region of the mask, on the slide
/// (`extent`: its level-0 width and height).
pub fn write_tissue(
    path: &Path,
    mask: &TissueMask,
    extent: [u64; 2],
    ids: FeatureIds,
) -> std::io::Result<()> {
    let grid = SlideGrid::new(mask.downsample, extent);
    let (_, polygons) = trace_in_slide(&mask.tissue, mask.width, mask.height, grid);
    write_atomically(path, |out| {
        write!(out, "{{\"type\":\"FeatureCollection\",\"features\":[")?;
        for (i, p) in polygons.iter().enumerate() {
            write!(
                out,
                "{}\n{{\"type\":\"Feature\",\"id\":\"{}\",\"geometry\":{},\"properties\":{{\"objectType\":\"annotation\",\"classification\":{{\"name\":\"Tissue\",\"color\":[0,160,0]}}}}}}",
                if i > 0 { "," } else { "" },
                ids.id("tissue.geojson", i),
                polygon_json(p)
            )?;
        }
        writeln!(out, "]}}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_v5_as_python_computes_them() {
        // uuid.uuid5(uuid.uuid5(ID_NAMESPACE, "ab:1:cd"), "qupath.geojson:0") in Python.
        let ids = FeatureIds::new("ab", 1, "cd");
        assert_eq!(
            ids.id("qupath.geojson", 0).to_string(),
            "37b30af3-f584-51bb-976a-cd05b90c451c"
        );
        assert_eq!(
            ids.id("tissue.geojson", 7).to_string(),
            "db9c2704-a71a-5543-84ed-170cfc519099"
        );
    }

    #[test]
    fn tiles_beyond_the_slide_are_left_out_and_those_across_its_edge_clipped() {
        // Tokens of 10 px, 4 × 2 of them, over a slide of 25 × 12 px; one NaN (no tissue).
        let mut values = vec![0.9f32; 8];
        values[1] = f32::NAN;
        let grid = ProbabilityGrid {
            rows: 2,
            cols: 4,
            cell: 10.0,
            values,
            mpp: 0.5,
        };
        let dir = std::env::temp_dir().join(format!("flashslide-geojson-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qupath.geojson");
        let regions = tumour_regions(&grid, 0.5, [25, 12]);
        write_qupath(&path, &grid, &regions, [25, 12], FeatureIds::new("ab", 1, "cd")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let features = json["features"].as_array().unwrap();
        // Columns 0–2 of both rows but the NaN, then one region.
        assert_eq!(features.len(), 5 + 1);
        let points = |f: &serde_json::Value| -> Vec<[f64; 2]> {
            f["geometry"]["coordinates"][0]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
                .collect()
        };
        assert_eq!(
            points(&features[4]),
            [
                [20.0, 10.0],
                [25.0, 10.0],
                [25.0, 12.0],
                [20.0, 12.0],
                [20.0, 10.0]
            ]
        );
        assert!(features
            .iter()
            .flat_map(points)
            .all(|p| p[0] <= 25.0 && p[1] <= 12.0));
        assert_eq!(regions.len(), 1);
        assert!((regions[0].area_mm2 - (25.0 * 12.0 - 100.0) * 0.25e-6).abs() < 1e-12);
        let ids: std::collections::HashSet<&str> =
            features.iter().map(|f| f["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), features.len());
        assert_eq!(
            features[5]["id"],
            FeatureIds::new("ab", 1, "cd").id("qupath.geojson", 5).to_string()
        );
    }
}
