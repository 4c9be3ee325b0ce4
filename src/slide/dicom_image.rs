//! A DICOM whole-slide image (a pyramid level, or a label, overview or thumbnail) as a tile
//! grid: the frames of one or more instances of the same image (a level may be split across
//! files), each frame placed by TILED_FULL order or by its own position (TILED_SPARSE);
//! tiles no frame covers are glass.
//!
//! JPEG 2000 frames are decoded by codec::jpeg2000 (the codestream carries its own colour
//! transform). JPEG frames take their colour space from the JPEG stream when it states one (a JFIF or
//! Adobe marker), else from the DICOM photometric interpretation (RGB: no transform; YBR:
//! YCbCr). OpenSlide trusts the tag alone; the two differ only on files whose tag contradicts
//! their JPEG data (one converter labels JFIF YCbCr frames RGB), where the stream is right.

use super::codec::jpeg::{self, JpegColour};
use super::codec::jpeg2000;
use super::codec::{expand_to_rgba, Tile};
use super::dicom::{find, find_path, tags, DicomFile, PixelData};
use super::error::{corrupt, unsupported, Result, SlideErrorKind};
use super::grid::{chunk_size, for_device, grid_cells, max_stored_bytes, GridShape, PlacedTile, TileGrid};
use super::io::SlideFile;
use super::properties::format_short;
use super::tilemap::TileMap;
use super::StoredTile;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest image dimension accepted (no slide comes near 2^31 pixels across).
const MAX_DIMENSION: u64 = 1 << 31;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    /// JPEG frames; the tag says YCbCr (true) or RGB.
    Jpeg { ycbcr: bool },
    /// JPEG 2000 frames (their colour transform, if any, in the codestream).
    Jpeg2000,
    /// Uncompressed frames of 1 (monochrome) or 3 (RGB) samples a pixel.
    Native,
}

/// Where one instance's frames are.
enum Frames {
    /// Frame i at `offset + i · frame_bytes`.
    Native { offset: u64, frame_bytes: u64 },
    /// Frame i made of `fragments[first..first + count]` (`frames[i]`), or of fragment i
    /// alone (`frames` None, the usual layout: no table a frame).
    Encapsulated {
        fragments: Vec<(u64, u64)>,
        frames: Option<Vec<(usize, usize)>>,
    },
}

/// One file's share of an image, as the format hands it over: `member` is its path when it
/// is not the file the slide was opened by, so that its errors name it.
pub(crate) struct Part<'a> {
    pub dcm: &'a DicomFile,
    pub member: Option<PathBuf>,
}

/// An error of a series member other than the file opened, naming it.
pub(crate) fn in_member(path: &Path, e: SlideErrorKind) -> SlideErrorKind {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match e {
        SlideErrorKind::Corrupt(m) => corrupt(format!("{name}: {m}")),
        SlideErrorKind::Unsupported(m) => unsupported(format!("{name}: {m}")),
        other => other,
    }
}

/// `e`, naming `member` when there is one.
fn name_member(member: Option<&Path>, e: SlideErrorKind) -> SlideErrorKind {
    match member {
        Some(m) => in_member(m, e),
        None => e,
    }
}

/// One file's share of an image.
struct Instance {
    file: Arc<SlideFile>,
    member: Option<PathBuf>,
    frames: Frames,
    codec: Codec,
    samples: usize,
}

/// The geometry every instance of one image shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ImageGeometry {
    pub width: u64,
    pub height: u64,
    pub tile_width: u32,
    pub tile_height: u32,
}

impl ImageGeometry {
    /// An instance's total pixel matrix and frame size.
    pub fn of(dcm: &DicomFile) -> Result<ImageGeometry> {
        let field = |tag, name: &str| dcm.uint(tag).ok_or_else(|| corrupt(format!("no {name}")));
        let (tile_width, tile_height) = (field(tags::COLUMNS, "Columns")?, field(tags::ROWS, "Rows")?);
        // A single-frame image (a label) need not state a total pixel matrix.
        let width = dcm.uint(tags::TOTAL_COLUMNS).unwrap_or(tile_width);
        let height = dcm.uint(tags::TOTAL_ROWS).unwrap_or(tile_height);
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(corrupt(format!(
                "total pixel matrix {width}x{height} is out of range"
            )));
        }
        let (tile_width, tile_height) = chunk_size(tile_width, tile_height)?;
        Ok(ImageGeometry {
            width,
            height,
            tile_width,
            tile_height,
        })
    }

    fn shape(&self) -> GridShape {
        GridShape {
            width: self.width,
            height: self.height,
            tile_width: self.tile_width,
            tile_height: self.tile_height,
        }
    }
}

pub(crate) struct DicomImage {
    shape: GridShape,
    instances: Vec<Instance>,
    /// TILED_FULL parts, in order: (first tile, tiles, instance); frame = tile − first.
    full: Vec<(u64, u64, u32)>,
    /// TILED_SPARSE frames on the tile grid: tile index (row · across + col) → (instance,
    /// frame).
    sparse: HashMap<u64, (u32, u32)>,
    /// Where a TILED_SPARSE frame lies off the grid: every frame at its own place, and tiles
    /// named by their index in the map.
    placed: Option<TileMap<(u32, u32)>>,
}

impl DicomImage {
    /// The image made of `parts` (instances with the geometry `geometry`), in the order
    /// given; where two frames cover one tile (focal planes, optical paths), the first wins.
    pub fn new(geometry: ImageGeometry, parts: &[Part]) -> Result<DicomImage> {
        let shape = geometry.shape();
        let across = shape.tiles_across();
        let tiles_total = across * shape.tiles_down();
        let mut instances = Vec::with_capacity(parts.len());
        // TILED_SPARSE frames: (corner, (instance, frame)), 0-based pixels.
        let mut positioned = Vec::new();
        let mut full = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let named = |e| name_member(part.member.as_deref(), e);
            let dcm = part.dcm;
            let (mut instance, count) = instance(dcm).map_err(named)?;
            instance.member = part.member.clone();
            let sparse = dcm.string(tags::DIMENSION_ORGANIZATION_TYPE).as_deref() == Some("TILED_SPARSE");
            if sparse {
                let per_frame = dcm
                    .get(tags::PER_FRAME_GROUPS)
                    .and_then(|e| e.items())
                    .ok_or_else(|| corrupt("TILED_SPARSE without per-frame positions"))?;
                if per_frame.len() < count {
                    return Err(corrupt(format!(
                        "{} per-frame positions for {count} frames",
                        per_frame.len()
                    )));
                }
                for (frame, groups) in per_frame.iter().take(count).enumerate() {
                    let at = |tag| {
                        find_path(groups, &[tags::PLANE_POSITION_SLIDE, tag])
                            .and_then(|e| e.numbers())
                            .and_then(|v| v.first().copied())
                            .ok_or_else(|| {
                                corrupt(format!(
                                    "frame {}: no position in the total pixel matrix",
                                    frame + 1
                                ))
                            })
                    };
                    let (x, y) = (at(tags::COLUMN_POSITION)?, at(tags::ROW_POSITION)?);
                    // Positions are 1-based pixels of the total pixel matrix.
                    let inside = |v: f64, size: u64| v.fract() == 0.0 && v >= 1.0 && v <= size as f64;
                    if !inside(x, shape.width) || !inside(y, shape.height) {
                        return Err(corrupt(format!(
                            "frame {} at ({}, {}) lies outside the {}x{} image",
                            frame + 1,
                            format_short(x),
                            format_short(y),
                            shape.width,
                            shape.height
                        )));
                    }
                    positioned.push(((x as i64 - 1, y as i64 - 1), (i as u32, frame as u32)));
                }
            } else {
                // TILED_FULL: frames in row-major tile order from this part's offset; frames
                // past one plane's tiles are other focal planes or optical paths.
                let first = dcm.uint(tags::CONCATENATION_FRAME_OFFSET).unwrap_or(0);
                if first < tiles_total {
                    full.push((first, (count as u64).min(tiles_total - first), i as u32));
                }
            }
            instances.push(instance);
        }
        let sparse = parts
            .iter()
            .any(|p| p.dcm.string(tags::DIMENSION_ORGANIZATION_TYPE).as_deref() == Some("TILED_SPARSE"));
        let covered = covered_tiles(&full);
        if !sparse && covered < tiles_total {
            return Err(corrupt(format!(
                "frames for {covered} of the {tiles_total} tiles of a TILED_FULL image"
            )));
        }
        let (tw, th) = (shape.tile_width as i64, shape.tile_height as i64);
        let on_grid = positioned.iter().all(|&((x, y), _)| x % tw == 0 && y % th == 0);
        let (mut on_grid_frames, mut placed) = (HashMap::new(), None);
        if on_grid {
            for ((x, y), at) in positioned {
                on_grid_frames
                    .entry((y / th) as u64 * across + (x / tw) as u64)
                    .or_insert(at);
            }
        } else {
            // Frames off the grid: each at its own place. TILED_FULL instances of the same
            // image would each need their every frame placed too (a map entry per frame,
            // however small the frames): refused, as no scanner writes the mix.
            if !full.is_empty() {
                return Err(unsupported(
                    "TILED_SPARSE frames off the tile grid in the same image as TILED_FULL instances",
                ));
            }
            placed = Some(TileMap::new(shape.tile_width, shape.tile_height, positioned));
        }
        Ok(DicomImage {
            shape,
            instances,
            full,
            sparse: on_grid_frames,
            placed,
        })
    }

    /// Frame `frame` of `instance`'s stored bytes, read whole.
    fn stored(&self, instance: &Instance, frame: usize) -> Result<Vec<u8>> {
        let s = self.shape;
        let limit = max_stored_bytes(s.tile_width as u64 * s.tile_height as u64);
        match &instance.frames {
            Frames::Native { offset, frame_bytes } => {
                instance
                    .file
                    .read_at(offset + frame as u64 * frame_bytes, *frame_bytes, "frame")
            }
            Frames::Encapsulated { fragments, frames } => {
                let (first, count) = frames.as_ref().map_or((frame, 1), |f| f[frame]);
                let parts = &fragments[first..first + count];
                let total: u64 = parts.iter().map(|p| p.1).sum();
                if total > limit {
                    return Err(corrupt(format!(
                        "frame {} is stored in {total} bytes, more than any codec needs for {}x{} pixels",
                        frame + 1,
                        s.tile_width,
                        s.tile_height
                    )));
                }
                let mut data = Vec::with_capacity(total as usize);
                for &(offset, len) in parts {
                    data.extend(instance.file.read_at(offset, len, "frame fragment")?);
                }
                Ok(data)
            }
        }
    }

    /// Frame `frame` of `instance`, decoded.
    fn decode_frame(&self, instance: &Instance, frame: usize) -> Result<Tile> {
        let s = self.shape;
        let data = self.stored(instance, frame)?;
        let tile = match instance.codec {
            Codec::Jpeg { ycbcr } => {
                let colour = match instance.samples {
                    3 => frame_colour(&data, ycbcr),
                    _ => JpegColour::Native,
                };
                let stream = jpeg::complete_stream(&data, None, colour)?;
                let tile = jpeg::decode(&stream, s.tile_width, s.tile_height)?;
                if (tile.width, tile.height) != (s.tile_width, s.tile_height) {
                    return Err(corrupt(format!(
                        "JPEG frame of {}x{} pixels where {}x{} are expected",
                        tile.width, tile.height, s.tile_width, s.tile_height
                    )));
                }
                tile
            }
            Codec::Jpeg2000 => jpeg2000::decode(&data, s.tile_width, s.tile_height, false)?,
            Codec::Native => {
                let pixels = s.tile_width as usize * s.tile_height as usize;
                let mut samples = Vec::with_capacity(pixels * 4);
                samples.extend_from_slice(&data);
                Tile {
                    width: s.tile_width,
                    height: s.tile_height,
                    rgba: expand_to_rgba(samples, instance.samples, pixels),
                }
            }
        };
        Ok(tile)
    }

    /// The instance and frame of tile (`col`, `row`): the first part that covers it.
    fn locate(&self, col: u64, row: u64) -> Option<(&Instance, usize)> {
        if let Some(map) = &self.placed {
            let &(i, frame) = map.get(col)?;
            return Some((&self.instances[i as usize], frame as usize));
        }
        let tile = row * self.shape.tiles_across() + col;
        let (i, frame) = match self.sparse.get(&tile) {
            Some(&(i, frame)) => (i, frame as u64),
            None => {
                let &(first, _, i) = self.full.iter().find(|&&(f, n, _)| tile >= f && tile - f < n)?;
                (i, tile - first)
            }
        };
        Some((&self.instances[i as usize], frame as usize))
    }
}

/// How many tiles the TILED_FULL ranges (first, count, _) cover, overlaps counted once.
fn covered_tiles(ranges: &[(u64, u64, u32)]) -> u64 {
    let mut spans: Vec<(u64, u64)> = ranges.iter().map(|&(f, n, _)| (f, f + n)).collect();
    spans.sort_unstable();
    let (mut covered, mut reach) = (0, 0);
    for (start, end) in spans {
        let start = start.max(reach);
        if end > start {
            covered += end - start;
            reach = end;
        }
    }
    covered
}

/// An instance's frames, codec and frame count.
fn instance(dcm: &DicomFile) -> Result<(Instance, usize)> {
    let samples = dcm.uint(tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let photometric = dcm.string(tags::PHOTOMETRIC).unwrap_or_default();
    if dcm.uint(tags::BITS_ALLOCATED) != Some(8) {
        return Err(unsupported(format!(
            "{}-bit samples (only 8-bit is read)",
            dcm.uint(tags::BITS_ALLOCATED).unwrap_or(0)
        )));
    }
    if samples == 3 && dcm.uint(tags::PLANAR_CONFIGURATION).unwrap_or(0) != 0 {
        return Err(unsupported(
            "DICOM with separate colour planes (PlanarConfiguration 1)",
        ));
    }
    let codec = match dcm.transfer_syntax.as_str() {
        _ if dcm.is_native() => match (samples, photometric.as_str()) {
            (3, "RGB") | (1, "MONOCHROME2") => Codec::Native,
            (s, p) => return Err(unsupported(format!("uncompressed frames of {s} samples in {p}"))),
        },
        "1.2.840.10008.1.2.4.50" => match (samples, photometric.as_str()) {
            (3, "RGB") => Codec::Jpeg { ycbcr: false },
            (3, p) if p.starts_with("YBR_FULL") => Codec::Jpeg { ycbcr: true },
            (1, "MONOCHROME2") => Codec::Jpeg { ycbcr: false },
            (s, p) => return Err(unsupported(format!("JPEG frames of {s} samples in {p}"))),
        },
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => match (samples, photometric.as_str()) {
            (3, "RGB" | "YBR_ICT" | "YBR_RCT") | (1, "MONOCHROME2") => Codec::Jpeg2000,
            (s, p) => return Err(unsupported(format!("JPEG 2000 frames of {s} samples in {p}"))),
        },
        ts => return Err(unsupported(transfer_syntax_name(ts))),
    };
    let count = dcm.uint(tags::NUMBER_OF_FRAMES).unwrap_or(1) as usize;
    let geometry = ImageGeometry::of(dcm)?;
    let frames = match dcm.pixels.as_ref() {
        None => return Err(corrupt("no pixel data")),
        Some(PixelData::Native { .. }) if codec != Codec::Native => {
            return Err(corrupt(
                "compressed frames stored as uncompressed (not encapsulated) pixel data",
            ))
        }
        Some(PixelData::Native { offset, len }) => {
            let frame_bytes = geometry.tile_width as u64 * geometry.tile_height as u64 * samples;
            if (count as u64).checked_mul(frame_bytes).is_none_or(|n| n > *len) {
                return Err(corrupt(format!(
                    "{count} frames of {frame_bytes} bytes in {len} bytes of pixel data"
                )));
            }
            Frames::Native {
                offset: *offset,
                frame_bytes,
            }
        }
        Some(PixelData::Encapsulated { .. }) if codec == Codec::Native => {
            return Err(corrupt(
                "encapsulated (compressed) pixel data under an uncompressed transfer syntax",
            ))
        }
        Some(PixelData::Encapsulated {
            fragments,
            offset_table,
        }) => {
            let extended = extended_offsets(dcm)?;
            let frames = frame_fragments(fragments, offset_table, extended.as_deref(), count)?;
            Frames::Encapsulated {
                fragments: fragments.clone(),
                frames,
            }
        }
    };
    let instance = Instance {
        file: dcm.file.clone(),
        member: None,
        frames,
        codec,
        samples: samples as usize,
    };
    Ok((instance, count))
}

/// The extended offset table (7FE0,0001), when the file has one: 64-bit frame offsets.
fn extended_offsets(dcm: &DicomFile) -> Result<Option<Vec<u64>>> {
    let Some(e) = dcm.get(tags::EXTENDED_OFFSET_TABLE) else {
        return Ok(None);
    };
    let bytes = e
        .bytes()
        .ok_or_else(|| unsupported("an extended offset table over 1 MiB"))?;
    Ok(Some(
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
    ))
}

/// Which fragments make each of `count` frames: one fragment a frame, or as an offset table
/// (extended, else basic: offsets of each frame's first item from the first fragment's item)
/// groups them, or every fragment for a single frame.
fn frame_fragments(
    fragments: &[(u64, u64)],
    basic: &[u64],
    extended: Option<&[u64]>,
    count: usize,
) -> Result<Option<Vec<(usize, usize)>>> {
    if count == 0 {
        return Err(corrupt("NumberOfFrames is 0"));
    }
    if fragments.len() == count {
        return Ok(None);
    }
    if count == 1 {
        return Ok(Some(vec![(0, fragments.len())]));
    }
    let table = match extended {
        Some(t) => t,
        None if !basic.is_empty() => basic,
        None => {
            return Err(corrupt(format!(
                "{} fragments for {count} frames and no offset table to group them",
                fragments.len()
            )))
        }
    };
    if table.len() != count {
        return Err(corrupt(format!(
            "an offset table of {} entries for {count} frames",
            table.len()
        )));
    }
    // Each fragment's item header starts 8 bytes before its data.
    let base = fragments.first().map_or(0, |f| f.0 - 8);
    let starts: Vec<u64> = fragments.iter().map(|f| f.0 - 8 - base).collect();
    let mut out = Vec::with_capacity(count);
    for (i, &offset) in table.iter().enumerate() {
        let first = starts
            .binary_search(&offset)
            .map_err(|_| corrupt(format!("frame {}'s offset {offset} is not at a fragment", i + 1)))?;
        let end = match table.get(i + 1) {
            Some(&next) if next <= offset => return Err(corrupt("frame offsets do not increase")),
            Some(&next) => starts.partition_point(|&s| s < next),
            None => fragments.len(),
        };
        out.push((first, end - first));
    }
    Ok(Some(out))
}

/// Names a transfer syntax flashslide does not decode, as users know it.
fn transfer_syntax_name(uid: &str) -> String {
    let name = match uid {
        "1.2.840.10008.1.2.4.51" => "extended (12-bit) JPEG",
        "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => "lossless JPEG",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "JPEG-LS",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "High-Throughput JPEG 2000"
        }
        "1.2.840.10008.1.2.4.110" | "1.2.840.10008.1.2.4.111" | "1.2.840.10008.1.2.4.112" => "JPEG XL",
        "1.2.840.10008.1.2.5" => "RLE",
        _ => "",
    };
    format!(
        "DICOM frames in {} (transfer syntax {uid})",
        if name.is_empty() {
            "an unknown encoding"
        } else {
            name
        }
    )
}

/// How to read a JPEG frame's three components: as its stream says when it says (JFIF or
/// Adobe marker), else as the DICOM tag says.
fn frame_colour(stream: &[u8], ycbcr_tag: bool) -> JpegColour {
    let mut at = 2;
    while at + 4 <= stream.len() && stream[at] == 0xFF {
        let marker = stream[at + 1];
        let len = u16::from_be_bytes([stream[at + 2], stream[at + 3]]) as usize;
        let body = &stream[at + 4..(at + 2 + len).min(stream.len()).max(at + 4)];
        match marker {
            0xE0 if body.starts_with(b"JFIF\0") => return JpegColour::Native,
            0xEE if body.starts_with(b"Adobe") => return JpegColour::Native,
            0xDA => break,
            _ => {}
        }
        at += 2 + len;
    }
    if ycbcr_tag {
        JpegColour::YCbCr
    } else {
        JpegColour::Rgb
    }
}

impl TileGrid for DicomImage {
    fn shape(&self) -> GridShape {
        self.shape
    }

    fn tiles_in(&self, x0: i64, y0: i64, x1: i64, y1: i64) -> Vec<PlacedTile> {
        match &self.placed {
            Some(map) => map.tiles_in(x0, y0, x1, y1),
            None => grid_cells(self.shape, x0, y0, x1, y1),
        }
    }

    fn overlaps(&self) -> bool {
        self.placed.is_some()
    }

    fn decode_tile(&self, col: u64, row: u64) -> Result<Option<Tile>> {
        let Some((instance, frame)) = self.locate(col, row) else {
            return Ok(None);
        };
        self.decode_frame(instance, frame)
            .map(Some)
            .map_err(|e| name_member(instance.member.as_deref(), e))
    }

    fn stores_jpeg_tiles(&self) -> bool {
        self.instances
            .iter()
            .all(|i| matches!(i.codec, Codec::Jpeg { .. }) && i.samples == 3)
    }

    fn jpeg_stream(&self, col: u64, row: u64) -> Result<StoredTile> {
        let Some((instance, frame)) = self.locate(col, row) else {
            return Ok(StoredTile::Missing);
        };
        let Codec::Jpeg { ycbcr } = instance.codec else {
            return Ok(StoredTile::Other);
        };
        let data = self.stored(instance, frame)?;
        let colour = frame_colour(&data, ycbcr);
        let ycbcr_data = match colour {
            JpegColour::YCbCr => true,
            JpegColour::Rgb => false,
            // A JFIF stream is YCbCr; an Adobe one says in its transform flag.
            JpegColour::Native => adobe_transform(&data).is_none_or(|t| t != 0),
        };
        if !ycbcr_data {
            return Ok(StoredTile::Other);
        }
        let stream = jpeg::complete_stream(&data, None, colour)?;
        for_device(stream, self.shape)
    }
}

/// The colour transform flag of a stream's Adobe marker, if it has one.
fn adobe_transform(stream: &[u8]) -> Option<u8> {
    let at = stream
        .windows(7)
        .position(|w| w[0] == 0xFF && w[1] == 0xEE && &w[4..7] == b"Ado")?;
    stream.get(at + 15).copied()
}

/// The ICC profile's size in bytes of an instance's first optical path, if it has one.
pub(crate) fn icc_size(dcm: &DicomFile) -> Option<u64> {
    let paths = dcm.get(tags::OPTICAL_PATHS)?.items()?;
    let icc = find(paths.first()?, tags::ICC_PROFILE)?;
    Some(match &icc.value {
        super::dicom::Value::Bytes(b) => b.len() as u64,
        super::dicom::Value::InFile { len } => *len,
        super::dicom::Value::Items(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_the_offset_table_or_one_fragment_each() {
        // Three fragments of 10 bytes: items at 0, 18, 36 from the first item's header.
        let fragments = [(108, 10), (126, 10), (144, 10)];
        assert_eq!(frame_fragments(&fragments, &[], None, 3).unwrap(), None);
        assert_eq!(
            frame_fragments(&fragments, &[0, 36], None, 2).unwrap(),
            Some(vec![(0, 2), (2, 1)])
        );
        assert_eq!(
            frame_fragments(&fragments, &[], None, 1).unwrap(),
            Some(vec![(0, 3)])
        );
        assert!(frame_fragments(&fragments, &[], None, 2).is_err());
        assert!(frame_fragments(&fragments, &[0, 5], None, 2).is_err());
        assert!(frame_fragments(&fragments, &[18, 0], None, 2).is_err());
    }

    #[test]
    fn overlapping_parts_cover_their_tiles_once() {
        assert_eq!(covered_tiles(&[(0, 17, 0), (17, 13, 1)]), 30);
        assert_eq!(covered_tiles(&[(10, 5, 0), (0, 12, 1), (11, 2, 2)]), 15);
        assert_eq!(covered_tiles(&[]), 0);
    }

    #[test]
    fn the_stream_states_its_colour_before_the_tag_does() {
        let jfif = [
            0xFF, 0xD8, 0xFF, 0xE0, 0, 7, b'J', b'F', b'I', b'F', 0, 0xFF, 0xDA,
        ];
        let bare = [0xFF, 0xD8, 0xFF, 0xDB, 0, 2, 0xFF, 0xDA];
        assert_eq!(frame_colour(&jfif, false), JpegColour::Native);
        assert_eq!(frame_colour(&bare, false), JpegColour::Rgb);
        assert_eq!(frame_colour(&bare, true), JpegColour::YCbCr);
    }
}
