//! Ventana / Roche BIF (and the older Ventana TIFF): a (Big)TIFF whose first directory's
//! XMP holds an `iScan` element. Directories described `level=N mag=M` are the levels
//! (downsample: level 0's magnification over theirs), `Label Image` is the macro,
//! `Thumbnail` the thumbnail. In a BIF, level 0's XMP (EncodeInfo) lists the scanned areas
//! and the joints between their camera fields: as OpenSlide does (docs/formats/bif.md), every
//! field lies on one grid whose step is the tile size less the joints' mean overlap
//! (weighted by confidence), and each coarser level stores its fields shrunk and packed, the
//! same grid scaled. Overlapping fields show in OpenSlide's order (the last cell's field);
//! a field between pixels (a fractional step) is placed at the nearest pixel, where
//! OpenSlide resamples.

use super::{Format, Opened, Probe};
use crate::slide::codec::Tile;
use crate::slide::error::{corrupt, unsupported, Result};
use crate::slide::grid::{GridShape, PlacedTile, TileGrid};
use crate::slide::properties::{self, icc_property, parse_double, tiff_properties, Properties};
use crate::slide::tiff_image::TiffImage;
use crate::slide::tifflike::{tag, Directory};
use crate::slide::tilemap::{CellTile, TileMap};
use crate::slide::xml::{self, Element};
use crate::slide::Mpp;
use std::collections::HashMap;
use std::sync::Arc;

pub(super) const FORMAT: Format = Format {
    name: "ventana",
    why: "a TIFF whose first directory's XMP holds an iScan element",
    detect,
    open,
};

/// Camera fields a slide may have (a large real slide has ~10^5).
const MAX_FIELDS: i64 = 1 << 22;
/// Largest level side accepted, as for any TIFF image.
const MAX_SIDE: f64 = (1u64 << 31) as f64;

fn detect(probe: &Probe) -> bool {
    let Some(tiff) = probe.tiff else { return false };
    xmp(&tiff.directories[0]).is_some_and(|root| iscan(&root).is_some())
}

/// A directory's XMP as XML, when it has one that parses.
fn xmp(dir: &Directory) -> Option<Element> {
    let bytes = dir.bytes(tag::XMP)?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let text = std::str::from_utf8(&bytes[..end]).ok()?;
    if !text.contains("iScan") && !text.contains("EncodeInfo") {
        return None;
    }
    xml::parse(text).ok()
}

/// The iScan element: the root, or a child of a `Metadata` root.
fn iscan(root: &Element) -> Option<&Element> {
    match root.name.as_str() {
        "iScan" => Some(root),
        "Metadata" => root.child("iScan"),
        _ => None,
    }
}

/// A scanned area: where its fields start in the stored grid, its size, its position.
struct Area {
    start: (i64, i64),
    fields: (i64, i64),
    position: (i64, i64),
}

fn open(probe: &Probe) -> Result<Opened> {
    let (file, tiff) = (probe.file.clone(), probe.tiff()?);
    let root = xmp(&tiff.directories[0]).ok_or_else(|| corrupt("Ventana XMP vanished between reads"))?;
    let scan = iscan(&root).ok_or_else(|| corrupt("Ventana XMP without iScan"))?;

    // Levels (directory, magnification) in level order; the macro and thumbnail.
    let mut levels: Vec<(&Directory, f64)> = Vec::new();
    let mut associated: Vec<(String, Arc<dyn TileGrid>)> = Vec::new();
    for (i, dir) in tiff.directories.iter().enumerate() {
        let Some(description) = dir.string(tag::IMAGE_DESCRIPTION) else {
            continue;
        };
        if description.contains("level=") {
            let (number, magnification) = level_fields(&description).ok_or_else(|| {
                corrupt(format!(
                    "Ventana directory {i}: level description \"{description}\""
                ))
            })?;
            let previous = levels.last().map_or(f64::INFINITY, |l| l.1);
            if number != levels.len() as i64 || !(magnification > 0.0 && magnification < previous) {
                return Err(corrupt(format!(
                    "Ventana directory {i}: level {number} at {magnification}x out of order"
                )));
            }
            if !dir.is_tiled() {
                return Err(corrupt(format!("Ventana level {number} is not tiled")));
            }
            levels.push((dir, magnification));
            continue;
        }
        let name = match description.as_str() {
            "Label Image" | "Label_Image" => "macro",
            "Thumbnail" => "thumbnail",
            _ => continue,
        };
        associated.retain(|(n, _)| n != name);
        associated.push((name.into(), Arc::new(TiffImage::new(file.clone(), dir)?)));
    }
    let Some(&(level0, magnification0)) = levels.first() else {
        return Err(corrupt("Ventana slide without pyramid levels"));
    };
    let tile = (
        level0.require_uint(tag::TILE_WIDTH, "TileWidth")?,
        level0.require_uint(tag::TILE_LENGTH, "TileLength")?,
    );
    for (dir, _) in &levels {
        if (dir.uint(tag::TILE_WIDTH)?, dir.uint(tag::TILE_LENGTH)?) != (Some(tile.0), Some(tile.1)) {
            return Err(corrupt("Ventana levels of different tile sizes"));
        }
    }
    let downsamples: Vec<f64> = levels.iter().map(|l| magnification0 / l.1).collect();

    let mut props = Properties::new();
    tiff_properties(level0, &mut props);
    icc_property(level0, &mut props);
    for (key, value) in &scan.attributes {
        if !key.contains(':') && key != "xmlns" && !value.is_empty() {
            props.insert(format!("ventana.{key}"), value.clone());
        }
    }
    if let Some(power) = scan
        .attr("Magnification")
        .and_then(|m| m.trim_start().parse::<i64>().ok())
    {
        props.insert(properties::OBJECTIVE_POWER.into(), power.to_string());
    }
    let mpp = scan.attr("ScanRes").and_then(parse_double).map(|m| Mpp {
        x: m,
        y: m,
        source: "ventana.ScanRes".into(),
    });

    // Level 0's XMP, when it has one, is the stitching record: it must read as one.
    let encode = match level0.bytes(tag::XMP) {
        None => None,
        Some(bytes) => {
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            let text = std::str::from_utf8(&bytes[..end])
                .map_err(|_| corrupt("Ventana level 0 XMP is not UTF-8"))?;
            Some(xml::parse(text)?)
        }
    };
    let stitched = encode.is_some();
    let grids: Vec<Arc<dyn TileGrid>> = match encode {
        // A Ventana TIFF: each level a plain grid.
        None => levels
            .iter()
            .map(|(dir, _)| TiffImage::new(file.clone(), dir).map(|g| Arc::new(g) as Arc<dyn TileGrid>))
            .collect::<Result<_>>()?,
        Some(encode) => {
            let (areas, advance) = stitching(&encode, tile)?;
            for (i, a) in areas.iter().enumerate() {
                let region = [
                    ("x", (advance.0 * a.start.0 as f64) as i64),
                    ("y", (advance.1 * a.start.1 as f64) as i64),
                    (
                        "width",
                        (advance.0 * (a.fields.0 - 1) as f64 + tile.0 as f64).ceil() as i64,
                    ),
                    (
                        "height",
                        (advance.1 * (a.fields.1 - 1) as f64 + tile.1 as f64).ceil() as i64,
                    ),
                ];
                for (name, v) in region {
                    props.insert(format!("openslide.region[{i}].{name}"), v.to_string());
                }
            }
            let fields = field_corners(&areas, advance, tile);
            levels
                .iter()
                .zip(&downsamples)
                .map(|((dir, _), &ds)| {
                    let stored = TiffImage::new(file.clone(), dir)?;
                    let level = StitchedLevel::new(stored, &fields, tile, ds)?;
                    Ok(Arc::new(level) as Arc<dyn TileGrid>)
                })
                .collect::<Result<_>>()?
        }
    };
    Ok(Opened {
        vendor: FORMAT.name,
        detected_by: FORMAT.why.into(),
        levels: grids,
        downsamples,
        tile_hints: !stitched,
        associated,
        properties: props,
        mpp,
    })
}

/// `level=N mag=M …`: N and M.
fn level_fields(description: &str) -> Option<(i64, f64)> {
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for token in description.split(' ') {
        if let Some((k, v)) = token.split_once('=') {
            fields.insert(k, v);
        }
    }
    Some((
        fields.get("level")?.trim_start().parse().ok()?,
        parse_double(fields.get("mag")?)?,
    ))
}

/// The scanned areas and the grid step (tile size less the mean overlap of the joints,
/// weighted by their confidence, over every area).
fn stitching(encode: &Element, tile: (u64, u64)) -> Result<(Vec<Area>, (f64, f64))> {
    if encode.name != "EncodeInfo" {
        return Err(corrupt(format!(
            "Ventana level 0 XMP is <{}>, not EncodeInfo",
            encode.name
        )));
    }
    let infos: Vec<&Element> = encode
        .children_named("SlideStitchInfo")
        .flat_map(|s| s.children_named("ImageInfo"))
        .collect();
    let origins: Vec<&Element> = encode
        .children_named("AoiOrigin")
        .flat_map(|o| o.children.iter())
        .collect();
    if infos.is_empty() || infos.len() != origins.len() {
        return Err(corrupt(format!(
            "Ventana EncodeInfo lists {} areas and {} origins",
            infos.len(),
            origins.len()
        )));
    }
    let (tw, th) = (tile.0 as i64, tile.1 as i64);
    let mut areas = Vec::new();
    let (mut sum, mut weight) = ([0f64; 2], [0f64; 2]);
    let mut total_fields = 0i64;
    for (info, origin) in infos.iter().zip(&origins) {
        if integer(info, "AOIScanned")? == 0 {
            continue;
        }
        let (ox, oy) = (integer(origin, "OriginX")?, integer(origin, "OriginY")?);
        if (integer(info, "Width")?, integer(info, "Height")?) != (tw, th) || ox % tw != 0 || oy % th != 0 {
            return Err(corrupt("Ventana area not on the tile grid"));
        }
        let fields = (integer(info, "NumCols")?, integer(info, "NumRows")?);
        total_fields = total_fields.saturating_add(fields.0.saturating_mul(fields.1));
        if fields.0 < 1 || fields.1 < 1 || total_fields > MAX_FIELDS {
            return Err(corrupt(format!(
                "Ventana area of {}x{} fields",
                fields.0, fields.1
            )));
        }
        let position = (number(info, "Pos-X")? as i64, number(info, "Pos-Y")? as i64);
        let count = fields.0 * fields.1;
        // Fields are numbered from the bottom row, every other row right to left.
        let cell = |t: i64| {
            let (k, cols) = (t - 1, fields.0);
            let (from_bottom, c) = (k / cols, k % cols);
            let col = if from_bottom % 2 == 1 { cols - 1 - c } else { c };
            (col, fields.1 - 1 - from_bottom)
        };
        let joints: Vec<&Element> = info.children_named("TileJointInfo").collect();
        if joints.is_empty() {
            return Err(corrupt("Ventana area without tile joints"));
        }
        for joint in joints {
            let (t1, t2) = (integer(joint, "Tile1")?, integer(joint, "Tile2")?);
            if !(1..=count).contains(&t1) || !(1..=count).contains(&t2) {
                return Err(corrupt(format!(
                    "Ventana joint of fields {t1} and {t2} in an area of {count}"
                )));
            }
            let ((c1, r1), (c2, r2)) = (cell(t1), cell(t2));
            let direction = joint.attr("Direction").unwrap_or("");
            let axis = match direction {
                "RIGHT" if (c2, r2) == (c1 + 1, r1) => 0,
                "UP" if (c2, r2) == (c1, r1 - 1) => 1,
                "RIGHT" | "UP" => {
                    return Err(corrupt(format!(
                        "Ventana joint {direction} of fields not beside each other"
                    )))
                }
                other => {
                    return Err(unsupported(format!(
                        "Ventana joints in direction \"{other}\" (RIGHT and UP are read)"
                    )))
                }
            };
            let overlap = [number(joint, "OverlapX")?, number(joint, "OverlapY")?];
            let confidence = integer(joint, "Confidence")? as f64;
            sum[axis] -= confidence * overlap[axis];
            weight[axis] += confidence;
        }
        areas.push(Area {
            start: (ox / tw, oy / th),
            fields,
            position,
        });
    }
    if areas.is_empty() {
        return Err(corrupt("Ventana slide with no scanned area"));
    }
    // An axis without joints (one row or column of fields) has no overlap.
    let step = |axis: usize, size: i64| {
        size as f64
            + if weight[axis] > 0.0 {
                sum[axis] / weight[axis]
            } else {
                0.0
            }
    };
    let advance = (step(0, tw), step(1, th));
    if !(advance.0 > 0.0 && advance.1 > 0.0 && advance.0.is_finite() && advance.1.is_finite()) {
        return Err(corrupt(format!(
            "Ventana joints overlap by a whole field ({advance:?})"
        )));
    }
    Ok((areas, advance))
}

/// Every field's cell of the stored grid and exact level-0 corner; a later area's field
/// replaces an earlier one in the same cell.
fn field_corners(areas: &[Area], advance: (f64, f64), tile: (u64, u64)) -> HashMap<(i64, i64), (f64, f64)> {
    // Positions count Pos-Y from a baseline under every area: the highest area is at y = 0.
    let height = |a: &Area| ((a.fields.1 - 1) as f64 * advance.1 + tile.1 as f64) as i64;
    let top = areas
        .iter()
        .map(|a| a.position.1 + height(a))
        .max()
        .unwrap_or(0)
        .max(0);
    let mut fields = HashMap::new();
    for a in areas {
        let origin = (a.position.0 as f64, (top - a.position.1 - height(a)) as f64);
        let offset = (
            origin.0 - a.start.0 as f64 * advance.0,
            origin.1 - a.start.1 as f64 * advance.1,
        );
        for row in 0..a.fields.1 {
            for col in 0..a.fields.0 {
                let cell = (a.start.0 + col, a.start.1 + row);
                let corner = (
                    cell.0 as f64 * advance.0 + offset.0,
                    cell.1 as f64 * advance.1 + offset.1,
                );
                fields.insert(cell, corner);
            }
        }
    }
    fields
}

/// One level of a BIF: each field shrunk by the level's downsample, packed
/// downsample × downsample to a stored tile, placed on the level-0 grid scaled down.
struct StitchedLevel {
    stored: TiffImage,
    shape: GridShape,
    /// Each piece's cell of the level-0 grid.
    map: TileMap<(i64, i64)>,
    pieces_per_tile: i64,
}

impl StitchedLevel {
    fn new(
        stored: TiffImage,
        fields: &HashMap<(i64, i64), (f64, f64)>,
        tile: (u64, u64),
        ds: f64,
    ) -> Result<StitchedLevel> {
        let pieces_per_tile = ds as i64;
        if pieces_per_tile < 1
            || ds.fract() != 0.0
            || tile.0 % pieces_per_tile as u64 != 0
            || tile.1 % pieces_per_tile as u64 != 0
        {
            return Err(unsupported(format!(
                "Ventana level of downsample {ds} ({}x{} tiles)",
                tile.0, tile.1
            )));
        }
        let (w, h) = (
            (tile.0 / pieces_per_tile as u64) as u32,
            (tile.1 / pieces_per_tile as u64) as u32,
        );
        let (mut right, mut bottom) = (0f64, 0f64);
        let mut pieces: Vec<CellTile<(i64, i64)>> = Vec::with_capacity(fields.len());
        for (&cell, &(x, y)) in fields {
            let (x, y) = (x / ds, y / ds);
            right = right.max(x + w as f64);
            bottom = bottom.max(y + h as f64);
            // Nearest pixel where OpenSlide would resample between pixels.
            pieces.push(((x.round() as i64, y.round() as i64), cell, cell));
        }
        let (width, height) = (right.ceil().max(1.0), bottom.ceil().max(1.0));
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(corrupt(format!(
                "Ventana areas placed {width}x{height} pixels apart"
            )));
        }
        Ok(StitchedLevel {
            stored,
            shape: GridShape {
                width: width as u64,
                height: height as u64,
                tile_width: w,
                tile_height: h,
            },
            map: TileMap::in_cells(w, h, pieces),
            pieces_per_tile,
        })
    }
}

impl TileGrid for StitchedLevel {
    fn shape(&self) -> GridShape {
        self.shape
    }

    fn decode_tile(&self, col: u64, _row: u64) -> Result<Option<Tile>> {
        let &(c, r) = self
            .map
            .get(col)
            .ok_or_else(|| corrupt(format!("no field {col} in this level")))?;
        let n = self.pieces_per_tile;
        let (stored_col, stored_row) = (c.div_euclid(n), r.div_euclid(n));
        let s = self.stored.shape();
        if stored_col < 0
            || stored_row < 0
            || stored_col as u64 >= s.tiles_across()
            || stored_row as u64 >= s.tiles_down()
        {
            return Err(corrupt(format!(
                "Ventana field ({c}, {r}) lies outside the stored tiles"
            )));
        }
        let Some(tile) = self.stored.decode_tile(stored_col as u64, stored_row as u64)? else {
            return Ok(None);
        };
        let (w, h) = (self.shape.tile_width as u64, self.shape.tile_height as u64);
        let (x0, y0) = (c.rem_euclid(n) as u64 * w, r.rem_euclid(n) as u64 * h);
        // The stored image ends before its last tiles do: what lies past it is not a field.
        let (image_x, image_y) = (
            stored_col as u64 * s.tile_width as u64 + x0,
            stored_row as u64 * s.tile_height as u64 + y0,
        );
        let keep_w = w.min(s.width.saturating_sub(image_x)).min(tile.width as u64 - x0);
        let keep_h = h
            .min(s.height.saturating_sub(image_y))
            .min(tile.height as u64 - y0);
        if keep_w == 0 || keep_h == 0 {
            return Ok(None);
        }
        let mut rgba = Vec::with_capacity((keep_w * keep_h * 4) as usize);
        for row in tile
            .rgba
            .chunks_exact(tile.width as usize * 4)
            .skip(y0 as usize)
            .take(keep_h as usize)
        {
            rgba.extend_from_slice(&row[x0 as usize * 4..(x0 + keep_w) as usize * 4]);
        }
        Ok(Some(Tile {
            width: keep_w as u32,
            height: keep_h as u32,
            rgba,
        }))
    }

    fn tiles_in(&self, x0: i64, y0: i64, x1: i64, y1: i64) -> Vec<PlacedTile> {
        self.map.tiles_in(x0, y0, x1, y1)
    }

    fn overlaps(&self) -> bool {
        true
    }
}

fn integer(e: &Element, name: &str) -> Result<i64> {
    let v = e
        .attr(name)
        .ok_or_else(|| corrupt(format!("Ventana <{}> lacks {name}", e.name)))?;
    v.trim_start()
        .parse()
        .map_err(|_| corrupt(format!("Ventana <{}> {name}=\"{v}\" is not an integer", e.name)))
}

fn number(e: &Element, name: &str) -> Result<f64> {
    let v = e
        .attr(name)
        .ok_or_else(|| corrupt(format!("Ventana <{}> lacks {name}", e.name)))?;
    parse_double(v).ok_or_else(|| corrupt(format!("Ventana <{}> {name}=\"{v}\" is not a number", e.name)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn level_descriptions() {
        assert_eq!(super::level_fields("level=2 mag=10 quality=90"), Some((2, 10.0)));
        assert_eq!(super::level_fields("level=0 mag=40,5"), Some((0, 40.5)));
        assert_eq!(super::level_fields("mag=40"), None);
    }
}
