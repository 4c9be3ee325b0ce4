//! The one abstraction every format reduces to: an image cut into a grid of equally sized
//! tiles (TIFF tiles, TIFF strips, NDPI restart intervals, or a downsampled view of those),
//! each decodable on its own and from any thread.

use super::codec::Tile;
use super::error::{corrupt, unsupported, Result};
use super::StoredTile;

/// Largest tile or strip decoded in one piece, in pixels: 4,096², 64 MiB as RGBA. Scanners
/// write tiles of 240 to 1,024 pixels; a larger chunk is refused before anything is read.
const MAX_CHUNK_PIXELS: u64 = 4096 * 4096;

/// The most stored bytes a chunk of `pixels` pixels may take: at most four 8-bit samples a
/// pixel, and no codec quadruples its input, so a larger byte count is a lie, refused before
/// it is allocated.
pub(crate) fn max_stored_bytes(pixels: u64) -> u64 {
    16 * pixels + (1 << 20)
}

/// Checks a chunk's size (a tile, a strip, a restart interval) against [`MAX_CHUNK_PIXELS`]
/// with checked arithmetic, before either side is cast.
pub(crate) fn chunk_size(width: u64, height: u64) -> Result<(u32, u32)> {
    if width == 0 || height == 0 {
        return Err(corrupt(format!("tile or strip size {width}x{height} is empty")));
    }
    match width.checked_mul(height) {
        Some(pixels) if pixels <= MAX_CHUNK_PIXELS => Ok((width as u32, height as u32)),
        _ => Err(unsupported(format!(
            "{width}x{height}-pixel tiles or strips (more than 4096x4096 pixels in one piece)"
        ))),
    }
}

/// Width, height and tile size of a tile grid, in its own pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GridShape {
    pub width: u64,
    pub height: u64,
    pub tile_width: u32,
    pub tile_height: u32,
}

impl GridShape {
    pub fn tiles_across(&self) -> u64 {
        self.width.div_ceil(self.tile_width as u64)
    }

    pub fn tiles_down(&self) -> u64 {
        self.height.div_ceil(self.tile_height as u64)
    }
}

/// A tile's complete JPEG stream as a device decoder gets it: checked as the CPU's decoder
/// checks it (so a device decoder never sees a stream cut short or larger than a tile), and
/// handed over only as a sequential three-component image of the whole tile; anything else
/// is left to the CPU.
pub(crate) fn for_device(stream: Vec<u8>, shape: GridShape) -> Result<StoredTile> {
    let frame = super::codec::jpeg::check(&stream, shape.tile_width, shape.tile_height)?;
    let whole = (frame.width, frame.height, frame.components()) == (shape.tile_width, shape.tile_height, 3);
    Ok(if frame.sequential && whole {
        StoredTile::Jpeg(stream)
    } else {
        StoredTile::Other
    })
}

/// A tile as a grid names it (`col`, `row`), with the grid pixel its top-left corner lands on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacedTile {
    pub col: u64,
    pub row: u64,
    pub x: i64,
    pub y: i64,
}

/// The cells of a plain grid touching pixels `x0..x1` × `y0..y1` (non-empty, inside it), row
/// by row ([`TileGrid::tiles_in`]'s default).
pub(crate) fn grid_cells(shape: GridShape, x0: i64, y0: i64, x1: i64, y1: i64) -> Vec<PlacedTile> {
    let (tw, th) = (shape.tile_width as i64, shape.tile_height as i64);
    let mut tiles = Vec::new();
    for row in y0 / th..=(y1 - 1) / th {
        for col in x0 / tw..=(x1 - 1) / tw {
            tiles.push(PlacedTile {
                col: col as u64,
                row: row as u64,
                x: col * tw,
                y: row * th,
            });
        }
    }
    tiles
}

pub(crate) trait TileGrid: Send + Sync {
    fn shape(&self) -> GridShape;

    /// Decodes tile (`col`, `row`), as [`TileGrid::tiles_in`] names it, to RGBA; `None` for a
    /// tile the file leaves out (drawn transparent). A tile may be smaller than the tile size
    /// at the right and bottom edges.
    fn decode_tile(&self, col: u64, row: u64) -> Result<Option<Tile>>;

    /// The tiles touching pixels `x0..x1` × `y0..y1` (a non-empty part of the grid), each with
    /// its corner; where tiles overlap ([`TileGrid::overlaps`]) the one listed first shows. A
    /// plain grid's are its cells, row by row, tile (`col`, `row`) at (`col` · tile width,
    /// `row` · tile height).
    fn tiles_in(&self, x0: i64, y0: i64, x1: i64, y1: i64) -> Vec<PlacedTile> {
        grid_cells(self.shape(), x0, y0, x1, y1)
    }

    /// Whether tiles may overlap, so that which one shows depends on [`TileGrid::tiles_in`]'s
    /// order (tiles placed at their own positions: [`super::tilemap::TileMap`]).
    fn overlaps(&self) -> bool {
        false
    }

    /// Whether every tile is stored as a baseline YCbCr JPEG stream of the full tile size,
    /// which any JPEG decoder (the GPU's) turns into the tile's RGB with no help from us.
    fn stores_jpeg_tiles(&self) -> bool {
        false
    }

    /// Tile (`col`, `row`) as a complete JPEG stream. Only for grids whose
    /// [`TileGrid::stores_jpeg_tiles`] is true.
    fn jpeg_stream(&self, _col: u64, _row: u64) -> Result<StoredTile> {
        Err(super::error::unsupported(
            "this image's tiles are not stand-alone JPEG streams",
        ))
    }
}
