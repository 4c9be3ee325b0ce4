//! One TIFF directory's pixels as a tile grid: tiles when the directory is tiled, strips
//! (full-width tiles `RowsPerStrip` high) otherwise.

use super::codec::jpeg::{self, JpegColour};
use super::codec::jpeg2000;
use super::codec::lossless::{self, Lossless};
use super::codec::{expand_to_rgba, Tile};
use super::error::{corrupt, unsupported, Result};
use super::grid::{chunk_size, for_device, max_stored_bytes, GridShape, TileGrid};
use super::io::SlideFile;
use super::tifflike::{tag, Directory};
use super::StoredTile;
use std::sync::Arc;

/// Largest image dimension accepted (TIFF allows 2^32-1; no slide comes near 2^31).
const MAX_DIMENSION: u64 = 1 << 31;

#[derive(Clone, Copy, Debug)]
enum Codec {
    Jpeg(JpegColour),
    /// JPEG 2000 tiles; Aperio's 33003 holds YCbCr (true) the codestream does not transform.
    Jpeg2000 {
        ycbcr: bool,
    },
    Lossless(Lossless),
}

pub(crate) struct TiffImage {
    file: Arc<SlideFile>,
    shape: GridShape,
    /// Tiles across the stored image (the shape's own may be fewer: [`TiffImage::shown_as`]).
    stored_across: u64,
    /// Strips (full-width chunks, the last only as tall as the rows left) rather than tiles.
    strips: bool,
    offsets: Vec<u64>,
    byte_counts: Vec<u64>,
    codec: Codec,
    channels: usize,
    predictor: bool,
    min_is_white: bool,
    /// Photometric YCbCr (6): JPEG 2000 samples the codestream does not transform are YCbCr.
    ycbcr_photometric: bool,
    jpeg_tables: Option<Vec<u8>>,
}

/// Names a TIFF compression code the way users know it, for error messages.
fn compression_name(code: u64) -> String {
    match code {
        6 => "old-style JPEG (compression 6)".into(),
        34887..=34892 => format!("LERC/JPEG-XL-family (compression {code})"),
        50001 => "WebP (compression 50001)".into(),
        52546 => "JPEG XL (compression 52546)".into(),
        c => format!("TIFF compression {c}"),
    }
}

impl TiffImage {
    pub fn new(file: Arc<SlideFile>, dir: &Directory) -> Result<TiffImage> {
        let width = dir.width()?;
        let height = dir.height()?;
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(corrupt(format!("image size {width}x{height} is out of range")));
        }
        if dir.uint(tag::IMAGE_DEPTH)?.is_some_and(|d| d != 1) {
            return Err(unsupported("3-D TIFF (ImageDepth > 1)"));
        }
        let (tile_width, tile_height, offsets, byte_counts) = if dir.is_tiled() {
            let tw = dir.require_uint(tag::TILE_WIDTH, "TileWidth")?;
            let th = dir.require_uint(tag::TILE_LENGTH, "TileLength")?;
            let offsets = dir.uints(tag::TILE_OFFSETS)?.unwrap_or_default();
            let counts = dir
                .uints(tag::TILE_BYTE_COUNTS)?
                .ok_or_else(|| corrupt("tiled directory lacks TileByteCounts"))?;
            (tw, th, offsets, counts)
        } else {
            let rows = dir.uint(tag::ROWS_PER_STRIP)?.unwrap_or(height).min(height);
            let offsets = dir
                .uints(tag::STRIP_OFFSETS)?
                .ok_or_else(|| corrupt("directory has neither tiles nor strips"))?;
            let counts = dir
                .uints(tag::STRIP_BYTE_COUNTS)?
                .ok_or_else(|| corrupt("stripped directory lacks StripByteCounts"))?;
            (width, rows, offsets, counts)
        };
        let (tile_width, tile_height) = chunk_size(tile_width, tile_height)?;
        let shape = GridShape {
            width,
            height,
            tile_width,
            tile_height,
        };

        if dir.uint(tag::PLANAR_CONFIG)?.unwrap_or(1) != 1 {
            return Err(unsupported(
                "TIFF with separate colour planes (PlanarConfiguration 2)",
            ));
        }
        // At most 2^31 × 2^31 tiles: no overflow.
        let needed = shape.tiles_across() * shape.tiles_down();
        if (offsets.len() as u64) < needed || (byte_counts.len() as u64) < needed {
            return Err(corrupt(format!(
                "{} tile offsets and {} byte counts for {needed} tiles",
                offsets.len(),
                byte_counts.len()
            )));
        }

        let channels = dir.uint(tag::SAMPLES_PER_PIXEL)?.unwrap_or(1);
        let bits = dir.uints(tag::BITS_PER_SAMPLE)?.unwrap_or_else(|| vec![1]);
        if bits.iter().any(|&b| b != 8) {
            return Err(unsupported(format!(
                "{}-bit samples (only 8-bit is read)",
                bits[0]
            )));
        }
        if dir.uint(tag::SAMPLE_FORMAT)?.is_some_and(|f| f != 1) {
            return Err(unsupported("non-integer samples"));
        }
        let photometric = dir.uint(tag::PHOTOMETRIC)?.unwrap_or(2);
        let compression = dir.uint(tag::COMPRESSION)?.unwrap_or(1);
        let codec = match compression {
            7 => Codec::Jpeg(match photometric {
                6 => JpegColour::YCbCr,
                _ => JpegColour::Rgb,
            }),
            33003 => Codec::Jpeg2000 { ycbcr: true },
            33005 | 34712 => Codec::Jpeg2000 { ycbcr: false },
            1 => Codec::Lossless(Lossless::None),
            5 => Codec::Lossless(Lossless::Lzw),
            8 | 32946 => Codec::Lossless(Lossless::Deflate),
            50000 => Codec::Lossless(Lossless::Zstd),
            c => return Err(unsupported(compression_name(c))),
        };
        match (codec, photometric, channels) {
            (_, 0 | 1, 1) | (_, 2, 3) | (_, 2, 4) | (Codec::Jpeg(_) | Codec::Jpeg2000 { .. }, 6, 3) => {}
            (_, p, c) => {
                return Err(unsupported(format!(
                "photometric interpretation {p} with {c} samples per pixel (multi-channel or non-RGB TIFF)"
            )))
            }
        }
        let predictor = lossless::check_predictor(dir.uint(tag::PREDICTOR)?.unwrap_or(1))?;
        Ok(TiffImage {
            file,
            shape,
            stored_across: shape.tiles_across(),
            strips: !dir.is_tiled(),
            offsets,
            byte_counts,
            codec,
            channels: channels as usize,
            predictor,
            min_is_white: photometric == 0,
            ycbcr_photometric: photometric == 6,
            jpeg_tables: dir.bytes(tag::JPEG_TABLES).map(<[u8]>::to_vec),
        })
    }
}

impl TiffImage {
    /// The image shown as `width` × `height` pixels of its top-left corner, for formats whose
    /// stored images are padded beyond the pixels they say they hold (Philips' levels are
    /// whole tiles); pixels past that size are transparent. Refused when larger than stored.
    pub fn shown_as(mut self, width: u64, height: u64) -> Result<TiffImage> {
        let s = self.shape;
        if width == 0 || height == 0 || width > s.width || height > s.height {
            return Err(corrupt(format!(
                "an image of {}x{} pixels said to show {width}x{height}",
                s.width, s.height
            )));
        }
        self.shape.width = width;
        self.shape.height = height;
        Ok(self)
    }

    /// JPEG tiles decoded in the colour space their own markers state (JFIF: YCbCr; Adobe
    /// transform 0: RGB), not the one the photometric tag states: Bio-Formats labels YCbCr
    /// JPEG tiles RGB.
    pub fn jpeg_colour_as_marked(mut self) -> TiffImage {
        if let Codec::Jpeg(_) = self.codec {
            self.codec = Codec::Jpeg(JpegColour::Native);
        }
        self
    }

    /// Tile or strip (`col`, `row`)'s stored bytes; `None` where the file leaves it out.
    fn stored(&self, col: u64, row: u64) -> Result<Option<Vec<u8>>> {
        let index = (row * self.stored_across + col) as usize;
        let (offset, count) = (self.offsets[index], self.byte_counts[index]);
        if offset == 0 || count == 0 {
            return Ok(None);
        }
        let s = self.shape;
        let limit = max_stored_bytes(s.tile_width as u64 * s.tile_height as u64);
        if count > limit {
            return Err(corrupt(format!(
                "stored in {count} bytes, more than any codec needs for {}x{} pixels",
                s.tile_width, s.tile_height
            )));
        }
        Ok(Some(self.file.read_at(offset, count, "stored tile")?))
    }

    /// The bounding box (x, y, width, height) of the tiles the file stores, when some are
    /// left out; `None` when every tile is present (or none is).
    pub fn stored_bounds(&self) -> Option<(u64, u64, u64, u64)> {
        let s = self.shape;
        let across = self.stored_across;
        let (mut c0, mut r0, mut c1, mut r1) = (u64::MAX, u64::MAX, 0, 0);
        let mut missing = false;
        for i in 0..across * s.tiles_down() {
            if self.offsets[i as usize] == 0 || self.byte_counts[i as usize] == 0 {
                missing = true;
                continue;
            }
            let (c, r) = (i % across, i / across);
            (c0, r0, c1, r1) = (c0.min(c), r0.min(r), c1.max(c), r1.max(r));
        }
        if !missing || c0 == u64::MAX {
            return None;
        }
        let (tw, th) = (s.tile_width as u64, s.tile_height as u64);
        let (x, y) = (c0 * tw, r0 * th);
        Some((
            x,
            y,
            ((c1 + 1 - c0) * tw).min(s.width - x),
            ((r1 + 1 - r0) * th).min(s.height - y),
        ))
    }
}

impl TileGrid for TiffImage {
    fn shape(&self) -> GridShape {
        self.shape
    }

    fn decode_tile(&self, col: u64, row: u64) -> Result<Option<Tile>> {
        let s = self.shape;
        let Some(data) = self.stored(col, row)? else {
            return Ok(None);
        };
        // Strips are only as tall as the rows left; tiles are always whole.
        let (width, height) = if self.strips {
            let rows = (s.height - row * s.tile_height as u64).min(s.tile_height as u64);
            (s.tile_width, rows as u32)
        } else {
            (s.tile_width, s.tile_height)
        };
        let tile = match self.codec {
            Codec::Jpeg(colour) => {
                let colour = if self.channels == 3 {
                    colour
                } else {
                    JpegColour::Native
                };
                let stream = jpeg::complete_stream(&data, self.jpeg_tables.as_deref(), colour)?;
                let tile = jpeg::decode(&stream, s.tile_width, s.tile_height)?;
                if tile.width < width || tile.height < height {
                    return Err(corrupt(format!(
                        "JPEG of {}x{} pixels where {width}x{height} are expected",
                        tile.width, tile.height
                    )));
                }
                tile
            }
            Codec::Jpeg2000 { ycbcr } => {
                jpeg2000::decode(&data, width, height, ycbcr || self.ycbcr_photometric)?
            }
            Codec::Lossless(codec) => {
                let row_bytes = width as usize * self.channels;
                let pixels = width as usize * height as usize;
                // Room for RGBA from the start, so the samples expand in place.
                let mut samples = Vec::with_capacity(pixels * 4);
                samples.resize(row_bytes * height as usize, 0);
                lossless::decompress(codec, &data, &mut samples)?;
                if self.predictor {
                    lossless::undo_horizontal_predictor(&mut samples, row_bytes, self.channels);
                }
                if self.min_is_white {
                    samples.iter_mut().for_each(|v| *v = 255 - *v);
                }
                let rgba = expand_to_rgba(samples, self.channels, pixels);
                Tile { width, height, rgba }
            }
        };
        Ok(Some(tile))
    }

    fn stores_jpeg_tiles(&self) -> bool {
        matches!(self.codec, Codec::Jpeg(JpegColour::YCbCr)) && self.channels == 3 && !self.strips
    }

    fn jpeg_stream(&self, col: u64, row: u64) -> Result<StoredTile> {
        let Some(data) = self.stored(col, row)? else {
            return Ok(StoredTile::Missing);
        };
        let stream = jpeg::complete_stream(&data, self.jpeg_tables.as_deref(), JpegColour::YCbCr)?;
        for_device(stream, self.shape)
    }
}
