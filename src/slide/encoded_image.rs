//! A picture kept whole as one encoded stream (an associated image embedded in a scanner's
//! XML): one tile, decoded when read.

use super::codec::{jpeg, Tile};
use super::error::{corrupt, Result};
use super::grid::{chunk_size, GridShape, TileGrid};

pub(crate) struct EncodedJpeg {
    stream: Vec<u8>,
    shape: GridShape,
}

impl EncodedJpeg {
    /// A complete JPEG stream; its frame header gives the size (at most 4096² pixels, so a
    /// lying header allocates nothing large).
    pub fn new(stream: Vec<u8>) -> Result<EncodedJpeg> {
        let frame = jpeg::check(&stream, u16::MAX as u32, u16::MAX as u32)?;
        let (w, h) = chunk_size(frame.width as u64, frame.height as u64)?;
        Ok(EncodedJpeg {
            stream,
            shape: GridShape {
                width: w as u64,
                height: h as u64,
                tile_width: w,
                tile_height: h,
            },
        })
    }
}

impl TileGrid for EncodedJpeg {
    fn shape(&self) -> GridShape {
        self.shape
    }

    fn decode_tile(&self, col: u64, row: u64) -> Result<Option<Tile>> {
        if (col, row) != (0, 0) {
            return Err(corrupt(format!("no tile ({col}, {row}) in a one-tile image")));
        }
        let s = self.shape;
        jpeg::decode(&self.stream, s.tile_width, s.tile_height).map(Some)
    }
}
