//! Assembling a rectangular RGBA region from a tile grid: the tiles it touches are decoded
//! in parallel (a band of tile rows at a time, so memory stays near the region's own size),
//! served from the cache when already decoded, and copied into place. Pixels outside the
//! grid stay (0, 0, 0, 0), as in OpenSlide.

use super::cache::TileCache;
use super::codec::Tile;
use super::error::Result;
use super::grid::TileGrid;
use rayon::prelude::*;
use std::sync::Arc;

/// Reads `width` × `height` pixels at (`x`, `y`) of `grid` (its own pixel coordinates,
/// possibly negative or past its edges) into a zeroed RGBA buffer.
pub(crate) fn read_region(
    grid: &dyn TileGrid,
    cache: Option<(&TileCache, usize)>,
    x: i64,
    y: i64,
    width: u32,
    height: u32,
) -> Result<Vec<u8>> {
    let mut out = vec![0u8; width as usize * height as usize * 4];
    let s = grid.shape();
    let (tw, th) = (s.tile_width as i64, s.tile_height as i64);
    // The part of the request inside the grid, in grid pixels.
    let x0 = x.max(0);
    let y0 = y.max(0);
    let x1 = (x + width as i64).min(s.width as i64);
    let y1 = (y + height as i64).min(s.height as i64);
    if x0 >= x1 || y0 >= y1 {
        return Ok(out);
    }
    let cols = (x0 / tw) as u64..=((x1 - 1) / tw) as u64;
    let rows = (y0 / th) as u64..=((y1 - 1) / th) as u64;
    let across = cols.end() - cols.start() + 1;
    // Enough tile rows per band to give every thread a couple of tiles.
    let band = (2 * rayon::current_num_threads() as u64).div_ceil(across).max(1);

    let mut row = *rows.start();
    while row <= *rows.end() {
        let band_end = (row + band - 1).min(*rows.end());
        let keys: Vec<(u64, u64)> = (row..=band_end)
            .flat_map(|r| cols.clone().map(move |c| (c, r)))
            .collect();
        let tiles: Vec<Option<Arc<Tile>>> = keys
            .par_iter()
            .map(|&(c, r)| fetch(grid, cache, c, r))
            .collect::<Result<_>>()?;
        for (&(c, r), tile) in keys.iter().zip(&tiles) {
            let Some(tile) = tile else { continue };
            // Intersection of this tile (clipped to its decoded size) with the request.
            let tx = c as i64 * tw;
            let ty = r as i64 * th;
            let ix0 = x0.max(tx);
            let iy0 = y0.max(ty);
            let ix1 = x1.min(tx + tile.width as i64);
            let iy1 = y1.min(ty + tile.height as i64);
            if ix0 >= ix1 || iy0 >= iy1 {
                continue;
            }
            let n = (ix1 - ix0) as usize * 4;
            for py in iy0..iy1 {
                let src = ((py - ty) as usize * tile.width as usize + (ix0 - tx) as usize) * 4;
                let dst = ((py - y) as usize * width as usize + (ix0 - x) as usize) * 4;
                out[dst..dst + n].copy_from_slice(&tile.rgba[src..src + n]);
            }
        }
        row = band_end + 1;
    }
    Ok(out)
}

fn fetch(
    grid: &dyn TileGrid,
    cache: Option<(&TileCache, usize)>,
    col: u64,
    row: u64,
) -> Result<Option<Arc<Tile>>> {
    if let Some((cache, id)) = cache {
        if let Some(tile) = cache.get(&(id, col, row)) {
            return Ok(Some(tile));
        }
    }
    let Some(tile) = grid.decode_tile(col, row)? else {
        return Ok(None);
    };
    let tile = Arc::new(tile);
    if let Some((cache, id)) = cache {
        cache.insert((id, col, row), tile.clone());
    }
    Ok(Some(tile))
}
