//! MIRAX (3DHistech .mrxs): the .mrxs file names a folder beside it holding Slidedat.ini (the
//! slide's description), an index (Index.dat) and data files of concatenated camera images.
//! Each zoom level's images are listed in the index; the camera positions (a position
//! record, zlib-compressed or not, or a nominal grid when there is none) place every image,
//! or every part of one, at its own pixel, overlapping its neighbours. Overlaps show as
//! OpenSlide paints them (docs/formats/mirax.md): the tile of the last cell of the image
//! grid shows. Where a coarser level puts a tile between pixels, OpenSlide resamples it;
//! flashslide places it at the nearest pixel. Associated images: label, macro, thumbnail.

use super::{Format, Opened, Probe};
use crate::slide::codec::picture::{decode_bmp24, decode_png};
use crate::slide::codec::{jpeg, Tile};
use crate::slide::encoded_image::EncodedJpeg;
use crate::slide::error::{corrupt, unsupported, Result};
use crate::slide::grid::{max_stored_bytes, GridShape, PlacedTile, TileGrid};
use crate::slide::io::SlideFile;
use crate::slide::keyfile::{KeyFile, MAX_KEY_FILE_BYTES};
use crate::slide::properties::{self, Properties};
use crate::slide::tilemap::{CellTile, TileMap};
use crate::slide::Mpp;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub(super) const FORMAT: Format = Format {
    name: "mirax",
    why: "a .mrxs file beside a folder of the same name holding Slidedat.ini",
    detect,
    open,
};

/// Camera positions a slide may have (a large real slide has ~10^5).
const MAX_POSITIONS: i64 = 1 << 22;
/// Index entries read per level beyond the images it can hold (repeats are allowed).
const SPARE_ENTRIES: u64 = 1 << 16;

fn detect(probe: &Probe) -> bool {
    probe.tiff.is_none() && is_mrxs(probe.path) && folder_of(probe.path).join("Slidedat.ini").is_file()
}

pub(super) fn is_mrxs(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("mrxs"))
}

/// The slide's folder: the .mrxs path without its extension.
fn folder_of(path: &Path) -> PathBuf {
    path.with_extension("")
}

/// The files of a MIRAX slide (the .mrxs, Slidedat.ini, the index, the data files), for its
/// fingerprint; `None` for a path that is not one.
pub(crate) fn slide_members(path: &Path) -> Result<Option<Vec<PathBuf>>> {
    if !is_mrxs(path) || !folder_of(path).join("Slidedat.ini").is_file() {
        return Ok(None);
    }
    let folder = folder_of(path);
    let ini = key_file(&folder)?;
    let mut files = vec![path.to_path_buf(), folder.join("Slidedat.ini")];
    files.push(folder.join(file_name(ini.require("HIERARCHICAL", "INDEXFILE")?)?));
    for i in 0..ini.integer("DATAFILE", "FILE_COUNT")?.max(0) {
        files.push(folder.join(file_name(ini.require("DATAFILE", &format!("FILE_{i}"))?)?));
    }
    Ok(Some(files))
}

fn key_file(folder: &Path) -> Result<KeyFile> {
    let file = SlideFile::open(&folder.join("Slidedat.ini"))?;
    if file.len() > MAX_KEY_FILE_BYTES {
        return Err(corrupt(format!(
            "Slidedat.ini of {} bytes (at most 1 MiB)",
            file.len()
        )));
    }
    KeyFile::parse(&file.read_at(0, file.len(), "Slidedat.ini")?)
}

/// A file named by Slidedat.ini: a name in the slide's folder, never a path out of it.
fn file_name(name: &str) -> Result<&str> {
    if name.is_empty() || name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
        return Err(corrupt(format!(
            "Slidedat.ini names the file {name:?}, not a file of its folder"
        )));
    }
    Ok(name)
}

/// How a level stores its camera images.
#[derive(Clone, Copy, Debug)]
enum Picture {
    Jpeg,
    Png,
    Bmp,
}

struct Level {
    /// Log2 of level-0 images merged per side into one image of this level, from level 0.
    concat: u32,
    overlap: (f64, f64),
    mpp: (f64, f64),
    fill_bgr: i64,
    /// Every stored image's size.
    image_size: (u32, u32),
    picture: Picture,
}

/// Where an image (or record) lies: its data file, offset and length.
#[derive(Clone, Copy)]
struct Stored {
    file: usize,
    offset: u64,
    length: u64,
}

fn open(probe: &Probe) -> Result<Opened> {
    let folder = folder_of(probe.path);
    let ini = key_file(&folder)?;
    let g = "GENERAL";
    let slide_id = ini.require(g, "SLIDE_ID")?;
    let images_x = ini.integer(g, "IMAGENUMBER_X")?;
    let images_y = ini.integer(g, "IMAGENUMBER_Y")?;
    let divisions = ini
        .get(g, "CameraImageDivisionsPerSide")
        .and_then(|v| v.trim().parse::<i32>().ok())
        .map_or(1, i64::from);
    if images_x <= 0 || images_y <= 0 || divisions <= 0 {
        return Err(corrupt(format!(
            "MIRAX of {images_x}x{images_y} images in {divisions}x{divisions} divisions"
        )));
    }
    if images_x % divisions != 0 || images_y % divisions != 0 {
        return Err(unsupported(format!(
            "MIRAX whose {images_x}x{images_y} images do not divide into {divisions}x{divisions} per camera field"
        )));
    }
    let positions = (images_x / divisions, images_y / divisions);
    if positions.0 * positions.1 > MAX_POSITIONS {
        return Err(unsupported(format!(
            "MIRAX of {} camera fields (at most {MAX_POSITIONS})",
            positions.0 * positions.1
        )));
    }

    let h = "HIERARCHICAL";
    if ini.require(h, "HIER_0_NAME")? != "Slide zoom level" {
        return Err(unsupported("MIRAX whose first hierarchy is not its zoom levels"));
    }
    let level_count = ini.integer(h, "HIER_0_COUNT")?;
    if !(1..=31).contains(&level_count) {
        return Err(corrupt(format!("MIRAX with {level_count} zoom levels")));
    }
    let mut levels = Vec::new();
    let mut concat = 0u32;
    for k in 0..level_count {
        let section = ini.require(h, &format!("HIER_0_VAL_{k}_SECTION"))?;
        if !ini.has_group(section) {
            return Err(corrupt(format!("Slidedat.ini lacks the group [{section}]")));
        }
        let exponent = ini.integer(section, "IMAGE_CONCAT_FACTOR")?;
        if exponent < 0 || (k > 0 && exponent == 0) || concat as i64 + exponent > 30 {
            return Err(corrupt(format!(
                "MIRAX level {k}: IMAGE_CONCAT_FACTOR {exponent}"
            )));
        }
        concat += exponent as u32;
        let size = (
            ini.integer(section, "DIGITIZER_WIDTH")?,
            ini.integer(section, "DIGITIZER_HEIGHT")?,
        );
        if size.0 <= 0 || size.1 <= 0 || size.0 > 4096 || size.1 > 4096 {
            return Err(unsupported(format!(
                "MIRAX level {k}: camera images of {}x{} pixels",
                size.0, size.1
            )));
        }
        let picture = match ini.require(section, "IMAGE_FORMAT")? {
            "JPEG" => Picture::Jpeg,
            "PNG" => Picture::Png,
            "BMP24" => Picture::Bmp,
            other => return Err(unsupported(format!("MIRAX images in format {other}"))),
        };
        levels.push(Level {
            concat,
            overlap: (
                ini.number(section, "OVERLAP_X")?,
                ini.number(section, "OVERLAP_Y")?,
            ),
            mpp: (
                ini.number(section, "MICROMETER_PER_PIXEL_X")?,
                ini.number(section, "MICROMETER_PER_PIXEL_Y")?,
            ),
            fill_bgr: ini.integer(section, "IMAGE_FILL_COLOR_BGR")?,
            image_size: (size.0 as u32, size.1 as u32),
            picture,
        });
    }

    let file_count = ini.integer("DATAFILE", "FILE_COUNT")?;
    if !(1..=1 << 16).contains(&file_count) {
        return Err(corrupt(format!("MIRAX with {file_count} data files")));
    }
    let data: Vec<Arc<SlideFile>> = (0..file_count)
        .map(|i| {
            let name = file_name(ini.require("DATAFILE", &format!("FILE_{i}"))?)?;
            Ok(Arc::new(SlideFile::open(&folder.join(name))?))
        })
        .collect::<Result<_>>()?;
    let index = Index::open(
        &folder.join(file_name(ini.require(h, "INDEXFILE")?)?),
        slide_id,
        data.len(),
    )?;

    let subtile_mode;
    let camera = {
        let record = position_record(&ini, &index)?;
        subtile_mode = record.is_some() || levels[0].overlap != (0.0, 0.0);
        camera_positions(record, &data, positions, divisions, &levels[0])?
    };

    let geometry = Geometry {
        images: (images_x, images_y),
        divisions,
        positions,
        subtile_mode,
        image0: levels[0].image_size,
    };
    let (level_w, level_h) = geometry.base_size(levels[0].overlap);
    let mut active = vec![false; (positions.0 * positions.1) as usize];
    let mut grids: Vec<Arc<dyn TileGrid>> = Vec::new();
    let mut downsamples = Vec::new();
    let mut hints = true;
    let mut bounds = None;
    for (k, level) in levels.iter().enumerate() {
        let entries = index.level_entries(k, images_x as u64 * images_y as u64 + SPARE_ENTRIES)?;
        let tiles = geometry.tiles(k, level, &entries, &camera, &mut active)?;
        let grid = MiraxLevel::new(
            level_w >> level.concat,
            level_h >> level.concat,
            level,
            geometry.tiles_per_image(level.concat),
            tiles,
            data.clone(),
        )?;
        hints &= grid.on_its_cells;
        if k == 0 {
            bounds = grid.bounds();
        }
        downsamples.push((1u64 << (level.concat - levels[0].concat)) as f64);
        grids.push(Arc::new(grid));
    }

    let mut associated: Vec<(String, Arc<dyn TileGrid>)> = Vec::new();
    for (name, value, key) in [
        ("macro", "ScanDataLayer_SlideThumbnail", "THUMBNAIL_IMAGE_TYPE"),
        ("label", "ScanDataLayer_SlideBarcode", "BARCODE_IMAGE_TYPE"),
        ("thumbnail", "ScanDataLayer_SlidePreview", "PREVIEW_IMAGE_TYPE"),
    ] {
        let Some((record, section)) = nonhier_value(&ini, "Scan data layer", value)? else {
            continue;
        };
        let kind = ini.require(&section, key)?;
        if kind != "JPEG" {
            return Err(unsupported(format!("MIRAX {name} image in format {kind}")));
        }
        let at = index.record(record, data.len())?;
        let bytes = read_stored(&data, at, max_stored_bytes(4096 * 4096))?;
        associated.push((name.into(), Arc::new(EncodedJpeg::new(bytes)?)));
    }

    let mut props = Properties::new();
    for (group, keys) in &ini.groups {
        for (key, value) in keys {
            props.insert(format!("mirax.{group}.{key}"), value.clone());
        }
    }
    if let Some(power) = ini.get(g, "OBJECTIVE_MAGNIFICATION").and_then(objective_power) {
        props.insert(properties::OBJECTIVE_POWER.into(), power.to_string());
    }
    let bgr = levels[0].fill_bgr;
    props.insert(
        "openslide.background-color".into(),
        format!(
            "{:02X}{:02X}{:02X}",
            bgr & 0xFF,
            bgr >> 8 & 0xFF,
            bgr >> 16 & 0xFF
        ),
    );
    if let Some((x, y, w, h)) = bounds {
        let (w0, h0) = (
            (level_w >> levels[0].concat) as i64,
            (level_h >> levels[0].concat) as i64,
        );
        let (w, h) = (w.min(w0 - x), h.min(h0 - y));
        if (x, y, w, h) != (0, 0, w0, h0) {
            for (name, v) in [("x", x), ("y", y), ("width", w), ("height", h)] {
                props.insert(format!("openslide.bounds-{name}"), v.to_string());
            }
        }
    }
    Ok(Opened {
        vendor: FORMAT.name,
        detected_by: FORMAT.why.into(),
        levels: grids,
        downsamples,
        tile_hints: hints,
        associated,
        properties: props,
        mpp: Some(Mpp {
            x: levels[0].mpp.0,
            y: levels[0].mpp.1,
            source: "MICROMETER_PER_PIXEL_X/Y of level 0 in Slidedat.ini".into(),
        }),
    })
}

/// `20x` → 20, as OpenSlide reads OBJECTIVE_MAGNIFICATION (a whole number above 0).
fn objective_power(text: &str) -> Option<i64> {
    let number = text.strip_suffix('x').unwrap_or(text);
    number.trim_start().parse::<i64>().ok().filter(|&p| p > 0)
}

/// The record number and section of `value` (an empty one: the layer's first) in the
/// non-hierarchical layer `layer` (records are numbered over every layer's values in
/// order); `None` when the slide has none.
fn nonhier_value(ini: &KeyFile, layer: &str, value: &str) -> Result<Option<(u64, String)>> {
    let h = "HIERARCHICAL";
    let layers = ini.integer(h, "NONHIER_COUNT")?;
    let mut first = 0u64;
    for i in 0..layers.max(0) {
        let count = ini.integer(h, &format!("NONHIER_{i}_COUNT"))?;
        if count <= 0 {
            return Err(corrupt(format!(
                "MIRAX non-hierarchical layer {i} has {count} values"
            )));
        }
        if ini.require(h, &format!("NONHIER_{i}_NAME"))? == layer {
            for j in 0..count {
                let name = ini.require(h, &format!("NONHIER_{i}_VAL_{j}"))?;
                if value.is_empty() || name == value {
                    let section = ini.require(h, &format!("NONHIER_{i}_VAL_{j}_SECTION"))?;
                    return Ok(Some((first + j as u64, section.to_string())));
                }
            }
            return Ok(None);
        }
        first += count as u64;
    }
    Ok(None)
}

/// The camera-position record: (where, zlib-compressed), when the slide has one.
fn position_record(ini: &KeyFile, index: &Index) -> Result<Option<(Stored, bool)>> {
    for (layer, compressed) in [
        ("VIMSLIDE_POSITION_BUFFER", false),
        ("StitchingIntensityLayer", true),
    ] {
        if let Some((record, _)) = nonhier_value(ini, layer, "")? {
            return Ok(Some((index.record(record, index.files)?, compressed)));
        }
    }
    Ok(None)
}

/// Each camera field's level-0 pixel position, from the record or the nominal grid.
fn camera_positions(
    record: Option<(Stored, bool)>,
    data: &[Arc<SlideFile>],
    positions: (i64, i64),
    divisions: i64,
    level0: &Level,
) -> Result<Vec<(i64, i64)>> {
    let count = (positions.0 * positions.1) as usize;
    let Some((at, compressed)) = record else {
        let (iw, ih) = (level0.image_size.0 as f64, level0.image_size.1 as f64);
        let step = (
            iw * divisions as f64 - level0.overlap.0,
            ih * divisions as f64 - level0.overlap.1,
        );
        return Ok((0..count as i64)
            .map(|p| {
                (
                    ((p % positions.0) as f64 * step.0) as i64,
                    ((p / positions.0) as f64 * step.1) as i64,
                )
            })
            .collect());
    };
    let want = count * 9;
    let raw = read_stored(data, at, if compressed { 64 << 20 } else { want as u64 })?;
    let bytes = if compressed {
        miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&raw, want)
            .map_err(|e| corrupt(format!("MIRAX position record does not inflate ({:?})", e.status)))?
    } else {
        raw
    };
    if bytes.len() != want {
        return Err(corrupt(format!(
            "MIRAX position record of {} bytes for {count} camera fields ({want} expected)",
            bytes.len()
        )));
    }
    let scale = 1i64 << level0.concat;
    bytes
        .chunks_exact(9)
        .map(|r| {
            if r[0] > 1 {
                return Err(corrupt(format!("MIRAX position flag {}", r[0])));
            }
            let x = i32::from_le_bytes([r[1], r[2], r[3], r[4]]) as i64;
            let y = i32::from_le_bytes([r[5], r[6], r[7], r[8]]) as i64;
            Ok((x * scale, y * scale))
        })
        .collect()
}

/// Reads a stored record's bytes, at most `limit` of them and never past its file.
fn read_stored(data: &[Arc<SlideFile>], at: Stored, limit: u64) -> Result<Vec<u8>> {
    if at.length > limit {
        return Err(corrupt(format!(
            "MIRAX record of {} bytes (at most {limit})",
            at.length
        )));
    }
    data[at.file].read_at(at.offset, at.length, "MIRAX record")
}

/// Index.dat: version, slide id, and the tables of pointers to each record's pages.
struct Index {
    file: SlideFile,
    hier_root: u64,
    nonhier_root: u64,
    files: usize,
}

impl Index {
    fn open(path: &Path, slide_id: &str, files: usize) -> Result<Index> {
        let file = SlideFile::open(path)?;
        let head = file.read_up_to(0, 5 + slide_id.len() as u64 + 8)?;
        if !head.starts_with(b"01.02") {
            return Err(unsupported("MIRAX index of a version other than 01.02"));
        }
        if head.get(5..5 + slide_id.len()) != Some(slide_id.as_bytes()) {
            return Err(corrupt("MIRAX index of another slide (its SLIDE_ID differs)"));
        }
        let at = 5 + slide_id.len();
        let word = |i: usize| {
            head.get(i..i + 4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let (Some(hier), Some(nonhier)) = (word(at), word(at + 4)) else {
            return Err(corrupt("MIRAX index cut short"));
        };
        Ok(Index {
            file,
            hier_root: offset(hier)?,
            nonhier_root: offset(nonhier)?,
            files,
        })
    }

    fn word(&self, at: u64) -> Result<i32> {
        let b = self.file.read_at(at, 4, "MIRAX index")?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Where record `slot` of a table starts its pages (past its `[0][first page]` head).
    fn first_page(&self, root: u64, slot: u64) -> Result<u64> {
        let head = offset(self.word(root + 4 * slot)?)?;
        if self.word(head)? != 0 {
            return Err(corrupt("MIRAX index record head does not start with 0"));
        }
        offset(self.word(head + 4)?)
    }

    /// Zoom level `k`'s entries (image index, where), the pages read back to back as
    /// OpenSlide reads them; at most `limit`.
    fn level_entries(&self, k: usize, limit: u64) -> Result<Vec<(i64, Stored)>> {
        let mut at = self.first_page(self.hier_root, k as u64)?;
        let mut entries = Vec::new();
        loop {
            let (count, next) = (self.word(at)?, self.word(at + 4)?);
            at += 8;
            let count = count.max(0) as u64;
            if entries.len() as u64 + count > limit {
                return Err(corrupt(format!("MIRAX level {k} lists more than {limit} images")));
            }
            let bytes = self.file.read_at(at, count * 16, "MIRAX index page")?;
            at += count * 16;
            for e in bytes.chunks_exact(16) {
                let v = |i: usize| i32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
                let (image, at, length, file) = (v(0), v(4), v(8), v(12));
                if image < 0 || at < 0 || length < 0 || file < 0 || file as usize >= self.files {
                    return Err(corrupt(format!(
                        "MIRAX level {k} entry ({image}, {at}, {length}, file {file}) is out of range"
                    )));
                }
                let stored = Stored {
                    file: file as usize,
                    offset: at as u64,
                    length: length as u64,
                };
                entries.push((image as i64, stored));
            }
            if next == 0 {
                return Ok(entries);
            }
        }
    }

    /// Non-hierarchical record `r`'s first item.
    fn record(&self, r: u64, files: usize) -> Result<Stored> {
        let page = self.first_page(self.nonhier_root, r)?;
        let b = self.file.read_at(page, 28, "MIRAX index record")?;
        let v = |i: usize| i32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if v(0) < 1 || v(8) != 0 || v(12) != 0 {
            return Err(corrupt(format!("MIRAX index record {r} is malformed")));
        }
        let (at, length, file) = (v(16), v(20), v(24));
        if at < 0 || length < 0 || file < 0 || file as usize >= files {
            return Err(corrupt(format!("MIRAX index record {r} points out of range")));
        }
        Ok(Stored {
            file: file as usize,
            offset: at as u64,
            length: length as u64,
        })
    }
}

fn offset(v: i32) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(format!("MIRAX index offset {v}")))
}

/// The slide's image grid and camera fields.
struct Geometry {
    images: (i64, i64),
    divisions: i64,
    positions: (i64, i64),
    subtile_mode: bool,
    image0: (u32, u32),
}

/// One tile of a level: its cell, corner, and the part of a stored image it shows.
struct MiraxTile {
    stored: Stored,
    /// The part's top-left in its image.
    source: (u32, u32),
}

impl Geometry {
    /// The nominal size of the level-0 image grid (before merging by the first level's
    /// concatenation): images edge to edge, less each camera field's overlap.
    fn base_size(&self, overlap: (f64, f64)) -> (u64, u64) {
        let side = |count: i64, size: u32, overlap: f64| {
            let mut total = 0i64;
            for i in 0..count {
                total = if i % self.divisions != self.divisions - 1 || i == count - 1 {
                    total + size as i64
                } else {
                    (total as f64 + size as f64 - overlap) as i64
                };
            }
            total.max(0) as u64
        };
        (
            side(self.images.0, self.image0.0, overlap.0),
            side(self.images.1, self.image0.1, overlap.1),
        )
    }

    /// Tiles a level's image splits into along each side.
    fn tiles_per_image(&self, concat: u32) -> u32 {
        if self.subtile_mode {
            (1i64 << concat).div_euclid(self.divisions).max(1) as u32
        } else {
            1
        }
    }

    fn tiles(
        &self,
        k: usize,
        level: &Level,
        entries: &[(i64, Stored)],
        camera: &[(i64, i64)],
        active: &mut [bool],
    ) -> Result<Vec<CellTile<MiraxTile>>> {
        let concat = 1i64 << level.concat;
        let per_image = (concat / self.divisions).max(1);
        let (divisor, tiles, per_tile) = if self.subtile_mode {
            (concat.min(self.divisions), per_image, 1)
        } else {
            (concat, 1, per_image)
        };
        let (iw, ih) = (level.image_size.0 as i64, level.image_size.1 as i64);
        if iw % tiles != 0 || ih % tiles != 0 {
            return Err(unsupported(format!(
                "MIRAX level {k}: images of {iw}x{ih} in {tiles}x{tiles} parts"
            )));
        }
        let (tw, th) = (iw / tiles, ih / tiles);
        let (i0w, i0h) = (self.image0.0 as i64, self.image0.1 as i64);
        // A later entry for the same cell replaces an earlier one.
        let mut cells: HashMap<(i64, i64), ((i64, i64), MiraxTile)> = HashMap::new();
        for &(image, stored) in entries {
            let (x, y) = (image % self.images.0, image / self.images.0);
            if y >= self.images.1 {
                return Err(corrupt(format!(
                    "MIRAX level {k}: image {image} lies past the last row"
                )));
            }
            if x % concat != 0 || y % concat != 0 {
                return Err(corrupt(format!(
                    "MIRAX level {k}: image ({x}, {y}) is not on this level's grid"
                )));
            }
            for yi in 0..tiles {
                let yy = y + yi * self.divisions;
                if yy >= self.images.1 {
                    break;
                }
                for xi in 0..tiles {
                    let xx = x + xi * self.divisions;
                    if xx >= self.images.0 {
                        break;
                    }
                    let (xp, yp) = (xx / self.divisions, yy / self.divisions);
                    let position = (yp * self.positions.0 + xp) as usize;
                    let p = camera[position];
                    if k == 0 {
                        // A field at (0, 0) other than the first holds nothing (OpenSlide's rule).
                        if p == (0, 0) && (xp, yp) != (0, 0) {
                            continue;
                        }
                        active[position] = true;
                    } else if !self.any_active(active, xp, yp, per_tile) {
                        continue;
                    }
                    let level0 = (
                        p.0 + i0w * (xx - xp * self.divisions),
                        p.1 + i0h * (yy - yp * self.divisions),
                    );
                    // Nearest pixel where OpenSlide would resample between pixels.
                    let corner = (
                        (level0.0 as f64 / concat as f64).round() as i64,
                        (level0.1 as f64 / concat as f64).round() as i64,
                    );
                    let tile = MiraxTile {
                        stored,
                        source: ((tw * xi) as u32, (th * yi) as u32),
                    };
                    cells.insert((x / divisor + xi, y / divisor + yi), (corner, tile));
                }
            }
        }
        Ok(cells
            .into_iter()
            .map(|(cell, (corner, tile))| (corner, cell, tile))
            .collect())
    }

    /// Whether a camera field among `span` × `span` from (`xp`, `yp`) scanned anything (the
    /// walk runs on in index order past a row's end, as OpenSlide's does).
    fn any_active(&self, active: &[bool], xp: i64, yp: i64, span: i64) -> bool {
        (yp..yp + span).any(|y| {
            (xp..xp + span).any(|x| {
                let i = y * self.positions.0 + x;
                i >= 0 && active.get(i as usize).copied().unwrap_or(false)
            })
        })
    }
}

/// One zoom level: its tiles at their positions.
struct MiraxLevel {
    shape: GridShape,
    map: TileMap<MiraxTile>,
    image_size: (u32, u32),
    picture: Picture,
    data: Vec<Arc<SlideFile>>,
    /// Every tile exactly on its grid cell (a scanner's exported grid): tile sizes are hints.
    on_its_cells: bool,
    /// The box of the tiles' corners and far edges (level pixels).
    extent: Option<(i64, i64, i64, i64)>,
    /// Where an image holds several tiles (the coarser levels of a slide with camera image
    /// divisions), the images decoded lately, by where they are stored: reading an image's
    /// tiles decodes it once, not once a tile (64 times at 8 × 8).
    decoded: Option<Mutex<DecodedImages>>,
}

/// Decoded images by where they are stored (data file, offset).
type DecodedImages = lru::LruCache<(usize, u64), Arc<Tile>>;

/// Images a level with several tiles an image keeps decoded (a region read row by row
/// passes along a row of images at a time), and the most bytes they may hold: a file's
/// stated image size earns no more memory than one image of it.
const DECODED_IMAGES_KEPT: usize = 16;
const DECODED_BYTES_KEPT: usize = 64 << 20;

impl MiraxLevel {
    fn new(
        width: u64,
        height: u64,
        level: &Level,
        tiles_per_image: u32,
        tiles: Vec<CellTile<MiraxTile>>,
        data: Vec<Arc<SlideFile>>,
    ) -> Result<MiraxLevel> {
        let (tw, th) = (
            level.image_size.0 / tiles_per_image,
            level.image_size.1 / tiles_per_image,
        );
        let on_its_cells = level.overlap == (0.0, 0.0)
            && tiles
                .iter()
                .all(|&((x, y), (c, r), _)| (x, y) == (c * tw as i64, r * th as i64));
        let extent = tiles
            .iter()
            .fold(None, |acc: Option<(i64, i64, i64, i64)>, &((x, y), _, _)| {
                let (x1, y1) = (x + tw as i64, y + th as i64);
                Some(match acc {
                    None => (x, y, x1, y1),
                    Some((a, b, c, d)) => (a.min(x), b.min(y), c.max(x1), d.max(y1)),
                })
            });
        Ok(MiraxLevel {
            shape: GridShape {
                width,
                height,
                tile_width: tw,
                tile_height: th,
            },
            map: TileMap::in_cells(tw, th, tiles),
            image_size: level.image_size,
            picture: level.picture,
            data,
            on_its_cells,
            extent,
            decoded: (tiles_per_image > 1).then(|| {
                Mutex::new(lru::LruCache::new(
                    std::num::NonZeroUsize::new(DECODED_IMAGES_KEPT).expect("not zero"),
                ))
            }),
        })
    }

    /// The image stored at `at`, decoded (at `image_size`, or an error naming the mismatch).
    fn decode_image(&self, at: Stored) -> Result<Tile> {
        let (w, h) = self.image_size;
        let bytes = read_stored(&self.data, at, max_stored_bytes(w as u64 * h as u64))?;
        Ok(match self.picture {
            Picture::Jpeg => {
                let t = jpeg::decode(&bytes, w, h)?;
                if (t.width, t.height) != (w, h) {
                    return Err(corrupt(format!(
                        "JPEG of {}x{} pixels where {w}x{h} are expected",
                        t.width, t.height
                    )));
                }
                t
            }
            Picture::Png => decode_png(&bytes, w, h)?,
            Picture::Bmp => decode_bmp24(&bytes, w, h)?,
        })
    }

    /// The image at `at` through `decoded` (decoded outside the lock: two threads after the
    /// same image may both decode it, and the second's copy is kept).
    fn decode_shared(&self, at: Stored, decoded: &Mutex<DecodedImages>) -> Result<Arc<Tile>> {
        let key = (at.file, at.offset);
        if let Some(image) = decoded.lock().expect("no panics while held").get(&key) {
            return Ok(image.clone());
        }
        let image = Arc::new(self.decode_image(at)?);
        let mut kept = decoded.lock().expect("no panics while held");
        kept.put(key, image.clone());
        while kept.len() > 1 && kept.iter().map(|(_, t)| t.rgba.len()).sum::<usize>() > DECODED_BYTES_KEPT {
            kept.pop_lru();
        }
        Ok(image)
    }

    /// The tiles' bounding box as (x, y, width, height).
    fn bounds(&self) -> Option<(i64, i64, i64, i64)> {
        self.extent.map(|(x0, y0, x1, y1)| (x0, y0, x1 - x0, y1 - y0))
    }
}

impl TileGrid for MiraxLevel {
    fn shape(&self) -> GridShape {
        self.shape
    }

    fn decode_tile(&self, col: u64, _row: u64) -> Result<Option<Tile>> {
        let tile = self
            .map
            .get(col)
            .ok_or_else(|| corrupt(format!("no tile {col} in this level")))?;
        let Some(decoded) = &self.decoded else {
            return Ok(Some(self.decode_image(tile.stored)?));
        };
        let image = self.decode_shared(tile.stored, decoded)?;
        let (w, s) = (self.image_size.0, self.shape);
        let (sx, sy) = tile.source;
        let mut rgba = Vec::with_capacity(s.tile_width as usize * s.tile_height as usize * 4);
        for row in image
            .rgba
            .chunks_exact(w as usize * 4)
            .skip(sy as usize)
            .take(s.tile_height as usize)
        {
            rgba.extend_from_slice(&row[sx as usize * 4..(sx + s.tile_width) as usize * 4]);
        }
        Ok(Some(Tile {
            width: s.tile_width,
            height: s.tile_height,
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

#[cfg(test)]
mod tests {
    #[test]
    fn objective_power_is_a_whole_number_with_an_optional_x() {
        assert_eq!(super::objective_power("20x"), Some(20));
        assert_eq!(super::objective_power("40"), Some(40));
        assert_eq!(super::objective_power("20.0"), None);
        assert_eq!(super::objective_power("0"), None);
    }
}
