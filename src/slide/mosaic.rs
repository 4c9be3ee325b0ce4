//! Several images placed in one level at their own offsets (the scanned regions of a Leica
//! SCN slide on its glass): each keeps its own tile grid; pixels no image covers are
//! transparent, and where images overlap the later one shows, as OpenSlide paints them.

use super::codec::Tile;
use super::error::{corrupt, Result};
use super::grid::{GridShape, PlacedTile, TileGrid};
use super::StoredTile;
use std::sync::Arc;

pub(crate) struct Mosaic {
    shape: GridShape,
    /// Each part and its top-left corner in the level.
    parts: Vec<(Arc<dyn TileGrid>, i64, i64)>,
    /// Tiles numbered across parts: part i's tile (col, row) is `first[i] + row * across + col`.
    first: Vec<u64>,
    overlapping: bool,
}

impl Mosaic {
    /// A `width` × `height` level of `parts`; the last part shows where parts overlap.
    pub fn new(width: u64, height: u64, parts: Vec<(Arc<dyn TileGrid>, i64, i64)>) -> Result<Mosaic> {
        let Some((first_part, _, _)) = parts.first() else {
            return Err(corrupt("a level made of no images"));
        };
        // The first part's tile size stands for the level's (parts may differ).
        let (tile_width, tile_height) = (first_part.shape().tile_width, first_part.shape().tile_height);
        let mut first = Vec::with_capacity(parts.len());
        let mut count = 0u64;
        for (part, _, _) in &parts {
            let s = part.shape();
            first.push(count);
            count += s.tiles_across() * s.tiles_down();
        }
        let rect = |(p, x, y): &(Arc<dyn TileGrid>, i64, i64)| {
            let s = p.shape();
            (*x, *y, x + s.width as i64, y + s.height as i64)
        };
        let overlapping = parts.iter().enumerate().any(|(i, a)| {
            let (ax0, ay0, ax1, ay1) = rect(a);
            parts[i + 1..].iter().any(|b| {
                let (bx0, by0, bx1, by1) = rect(b);
                ax0 < bx1 && bx0 < ax1 && ay0 < by1 && by0 < ay1
            })
        });
        Ok(Mosaic {
            shape: GridShape {
                width,
                height,
                tile_width,
                tile_height,
            },
            parts,
            first,
            overlapping,
        })
    }

    /// The part holding global tile `index`, and the tile's (col, row) in it.
    fn locate(&self, index: u64) -> Option<(usize, u64, u64)> {
        let part = self.first.partition_point(|&f| f <= index).checked_sub(1)?;
        let s = self.parts[part].0.shape();
        let local = index - self.first[part];
        let (col, row) = (local % s.tiles_across(), local / s.tiles_across());
        (row < s.tiles_down()).then_some((part, col, row))
    }
}

impl TileGrid for Mosaic {
    fn shape(&self) -> GridShape {
        self.shape
    }

    fn decode_tile(&self, col: u64, _row: u64) -> Result<Option<Tile>> {
        let (part, c, r) = self
            .locate(col)
            .ok_or_else(|| corrupt(format!("no tile {col} in this level")))?;
        let grid = &self.parts[part].0;
        let Some(mut tile) = grid.decode_tile(c, r)? else {
            return Ok(None);
        };
        // An edge tile ends where its image does, not where its padding does.
        let s = grid.shape();
        let (tw, th) = (s.tile_width as u64, s.tile_height as u64);
        let keep_w = (s.width - c * tw).min(tile.width as u64) as u32;
        let keep_h = (s.height - r * th).min(tile.height as u64) as u32;
        if (keep_w, keep_h) != (tile.width, tile.height) {
            let mut rgba = Vec::with_capacity(keep_w as usize * keep_h as usize * 4);
            for row in tile
                .rgba
                .chunks_exact(tile.width as usize * 4)
                .take(keep_h as usize)
            {
                rgba.extend_from_slice(&row[..keep_w as usize * 4]);
            }
            tile = Tile {
                width: keep_w,
                height: keep_h,
                rgba,
            };
        }
        Ok(Some(tile))
    }

    fn tiles_in(&self, x0: i64, y0: i64, x1: i64, y1: i64) -> Vec<PlacedTile> {
        let mut tiles = Vec::new();
        // The last part first: the first tile listed shows.
        for (i, (part, px, py)) in self.parts.iter().enumerate().rev() {
            let s = part.shape();
            let (ix0, iy0) = ((x0 - px).max(0), (y0 - py).max(0));
            let (ix1, iy1) = ((x1 - px).min(s.width as i64), (y1 - py).min(s.height as i64));
            if ix0 >= ix1 || iy0 >= iy1 {
                continue;
            }
            for t in part.tiles_in(ix0, iy0, ix1, iy1) {
                tiles.push(PlacedTile {
                    col: self.first[i] + t.row * s.tiles_across() + t.col,
                    row: 0,
                    x: t.x + px,
                    y: t.y + py,
                });
            }
        }
        tiles
    }

    fn overlaps(&self) -> bool {
        self.overlapping
    }

    /// Only when every part's tiles are whole tiles of the level's tile size (no edge tile's
    /// padding to hide): a device decoder paints whole tiles of one size.
    fn stores_jpeg_tiles(&self) -> bool {
        let size = (self.shape.tile_width, self.shape.tile_height);
        self.parts.iter().all(|(p, _, _)| {
            let s = p.shape();
            p.stores_jpeg_tiles()
                && (s.tile_width, s.tile_height) == size
                && s.width % s.tile_width as u64 == 0
                && s.height % s.tile_height as u64 == 0
        })
    }

    fn jpeg_stream(&self, col: u64, _row: u64) -> Result<StoredTile> {
        let (part, c, r) = self
            .locate(col)
            .ok_or_else(|| corrupt(format!("no tile {col} in this level")))?;
        self.parts[part].0.jpeg_stream(c, r)
    }
}
