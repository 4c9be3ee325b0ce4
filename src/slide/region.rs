//! Assembling a rectangular RGBA region from a tile grid: the tiles it touches are decoded
//! in parallel, served from the cache when already decoded, and copied into place as each
//! is ready, so no more decoded tiles are held at once than there are threads (besides the
//! cache). Pixels outside the grid stay (0, 0, 0, 0), as in OpenSlide.

use super::cache::TileCache;
use super::codec::Tile;
use super::error::{Result, SlideErrorKind};
use super::grid::{PlacedTile, TileGrid};
use super::resample::halve_rgba_into;
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Which image of a slide a grid is: a pyramid level (whose tiles the cache keeps) or an
/// associated image (read whole, once, so not cached).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Image<'a> {
    Level(usize),
    Associated(&'a str),
}

impl Image<'_> {
    /// An error from tile (`col`, `row`) of this image, saying which tile.
    pub fn tile_error(self, col: u64, row: u64, kind: SlideErrorKind) -> SlideErrorKind {
        let image = match self {
            Image::Level(level) => format!("level {level}"),
            Image::Associated(name) => format!("associated image {name:?}"),
        };
        SlideErrorKind::Tile {
            image,
            col,
            row,
            kind: Box::new(kind),
        }
    }
}

/// Reads `width` × `height` pixels at (`x`, `y`) of `grid` (its own pixel coordinates,
/// possibly negative or past its edges) into a zeroed RGBA buffer.
pub(crate) fn read_region(
    grid: &dyn TileGrid,
    cache: &TileCache,
    image: Image,
    x: i64,
    y: i64,
    width: u32,
    height: u32,
) -> Result<Vec<u8>> {
    let mut out = vec![0u8; width as usize * height as usize * 4];
    let s = grid.shape();
    // The part of the request inside the grid, in grid pixels (saturating: a corner near
    // i64::MAX reads nothing rather than wrapping).
    let x0 = x.max(0);
    let y0 = y.max(0);
    let x1 = x.saturating_add(width as i64).min(s.width as i64);
    let y1 = y.saturating_add(height as i64).min(s.height as i64);
    if x0 >= x1 || y0 >= y1 {
        return Ok(out);
    }
    let tiles = grid.tiles_in(x0, y0, x1, y1);
    for_each_tile(grid, cache, image, &tiles, &mut out, |out, p, tile| {
        // Intersection of this tile (clipped to its decoded size) with the request.
        let ix0 = x0.max(p.x);
        let iy0 = y0.max(p.y);
        let ix1 = x1.min(p.x + tile.width as i64);
        let iy1 = y1.min(p.y + tile.height as i64);
        if ix0 >= ix1 || iy0 >= iy1 {
            return;
        }
        let n = (ix1 - ix0) as usize * 4;
        for py in iy0..iy1 {
            let src = ((py - p.y) as usize * tile.width as usize + (ix0 - p.x) as usize) * 4;
            let dst = ((py - y) as usize * width as usize + (ix0 - x) as usize) * 4;
            out[dst..dst + n].copy_from_slice(&tile.rgba[src..src + n]);
        }
    })?;
    Ok(out)
}

/// `width` × `height` pixels at (`x`, `y`) of `grid`, averaged 2 × 2 into RGB (transparent
/// as white), straight from the decoded tiles: no full-size RGBA region is assembled,
/// cleared or converted. `None` where that does not apply — odd coordinates or sizes, or a
/// region not wholly inside the grid — and `read_region` does it instead.
pub(crate) fn read_region_halved(
    grid: &dyn TileGrid,
    cache: &TileCache,
    image: Image,
    x: i64,
    y: i64,
    width: u32,
    height: u32,
) -> Result<Option<Vec<u8>>> {
    let s = grid.shape();
    let (tw, th) = (s.tile_width as i64, s.tile_height as i64);
    let (x1, y1) = (x.saturating_add(width as i64), y.saturating_add(height as i64));
    let even = |v: i64| v % 2 == 0;
    if x < 0 || y < 0 || x1 > s.width as i64 || y1 > s.height as i64 || width == 0 || height == 0 {
        return Ok(None);
    }
    // Overlapping tiles are painted in order, by read_region.
    if grid.overlaps() {
        return Ok(None);
    }
    if ![x, y, width as i64, height as i64, tw, th].into_iter().all(even) {
        return Ok(None);
    }
    let tiles = grid.tiles_in(x, y, x1, y1);
    let out_width = width as usize / 2;
    // A tile the file leaves out stays white, as glass.
    let mut target = (vec![255u8; out_width * (height as usize / 2) * 3], false);
    for_each_tile(grid, cache, image, &tiles, &mut target, |(out, odd), p, tile| {
        let (ix0, iy0) = (x.max(p.x), y.max(p.y));
        let (ix1, iy1) = (x1.min(p.x + tile.width as i64), y1.min(p.y + tile.height as i64));
        if ix1 <= ix0 || iy1 <= iy0 {
            return;
        }
        // A tile on an odd pixel (a placed image) does not halve in place.
        if ![ix1 - ix0, iy1 - iy0, ix0 - x, iy0 - y].into_iter().all(even) {
            *odd = true;
            return;
        }
        let src = &tile.rgba[((iy0 - p.y) as usize * tile.width as usize + (ix0 - p.x) as usize) * 4..];
        let dst = &mut out[((iy0 - y) as usize / 2 * out_width + (ix0 - x) as usize / 2) * 3..];
        halve_rgba_into(
            src,
            tile.width as usize,
            (ix1 - ix0) as usize,
            (iy1 - iy0) as usize,
            dst,
            out_width,
        );
    })?;
    let (out, odd) = target;
    Ok((!odd).then_some(out))
}

/// Decodes `tiles` of `grid` in parallel and hands each to `place`, with `target` to itself:
/// as soon as it is decoded, or, where the grid's tiles overlap, all of them from the last
/// listed to the first, so the first listed shows. An error names the tile it came from: the
/// first listed of those that fail, whichever thread met it first.
fn for_each_tile<T: Send>(
    grid: &dyn TileGrid,
    cache: &TileCache,
    image: Image,
    tiles: &[PlacedTile],
    target: &mut T,
    place: impl Fn(&mut T, &PlacedTile, &Tile) + Sync,
) -> Result<()> {
    let decode = |p: &PlacedTile| {
        fetch(grid, cache, image, p.col, p.row).map_err(|e| image.tile_error(p.col, p.row, e))
    };
    if grid.overlaps() {
        let decoded: Vec<Option<Arc<Tile>>> = tiles
            .par_iter()
            .map(decode)
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Result<_>>()?;
        for (p, tile) in tiles.iter().zip(&decoded).rev() {
            if let Some(tile) = tile {
                place(target, p, tile);
            }
        }
        return Ok(());
    }
    let target = Mutex::new(target);
    let first_error = tiles
        .par_iter()
        .enumerate()
        .filter_map(|(i, p)| match decode(p) {
            Ok(Some(tile)) => {
                // Placing is a copy, short beside decoding: one lock for the whole target.
                let mut target = target.lock().unwrap_or_else(|e| e.into_inner());
                place(&mut **target, p, &tile);
                None
            }
            Ok(None) => None,
            Err(e) => Some((i, e)),
        })
        .min_by_key(|(i, _)| *i);
    first_error.map_or(Ok(()), |(_, e)| Err(e))
}

fn fetch(
    grid: &dyn TileGrid,
    cache: &TileCache,
    image: Image,
    col: u64,
    row: u64,
) -> Result<Option<Arc<Tile>>> {
    let key = match image {
        Image::Level(level) => Some((level, col, row)),
        Image::Associated(_) => None,
    };
    if let Some(tile) = key.and_then(|k| cache.get(&k)) {
        return Ok(Some(tile));
    }
    let Some(tile) = grid.decode_tile(col, row)? else {
        return Ok(None);
    };
    let tile = Arc::new(tile);
    if let Some(k) = key {
        cache.insert(k, tile.clone());
    }
    Ok(Some(tile))
}

#[cfg(test)]
mod tests {
    use super::{read_region, read_region_halved, Image};
    use crate::slide::cache::TileCache;
    use crate::slide::codec::Tile;
    use crate::slide::error::Result;
    use crate::slide::grid::{GridShape, PlacedTile, TileGrid};
    use crate::slide::resample::box_downsample;
    use crate::slide::tilemap::TileMap;
    use crate::slide::Slide;

    /// 16 × 12 tiles of one colour each (their index), placed anywhere on a 100 × 80 image.
    struct Placed(TileMap<u8>);

    impl TileGrid for Placed {
        fn shape(&self) -> GridShape {
            GridShape {
                width: 100,
                height: 80,
                tile_width: 16,
                tile_height: 12,
            }
        }
        fn decode_tile(&self, col: u64, _row: u64) -> Result<Option<Tile>> {
            let v = *self.0.get(col).unwrap();
            Ok(Some(Tile {
                width: 16,
                height: 12,
                rgba: [v, v, v, 255].repeat(16 * 12),
            }))
        }
        fn tiles_in(&self, x0: i64, y0: i64, x1: i64, y1: i64) -> Vec<PlacedTile> {
            self.0.tiles_in(x0, y0, x1, y1)
        }
        fn overlaps(&self) -> bool {
            true
        }
    }

    /// Overlapping tiles off the grid, at the image's edges and past them, with gaps: every
    /// pixel of a region is the first tile (in the map's order) holding it, else transparent.
    #[test]
    fn overlapping_tiles_show_the_first_in_the_maps_order() {
        let mut corners = Vec::new();
        for (i, (x, y)) in [
            (0, 0),
            (10, 3),
            (14, 0),
            (5, 9),
            (30, 30),
            (40, 35),
            (90, 70),
            (-6, 20),
            (50, 2),
        ]
        .into_iter()
        .enumerate()
        {
            corners.push(((x, y), i as u8 + 1));
        }
        let map = TileMap::new(16, 12, corners.clone());
        let order: Vec<((i64, i64), u8)> = (0..corners.len() as u64)
            .map(|i| {
                let v = *map.get(i).unwrap();
                (corners.iter().find(|c| c.1 == v).unwrap().0, v)
            })
            .collect();
        let grid = Placed(map);
        let cache = TileCache::new(1 << 20);
        for (x, y, w, h) in [(0, 0, 100, 80), (-5, -5, 40, 30), (12, 4, 7, 9), (85, 65, 30, 30)] {
            let got = read_region(&grid, &cache, Image::Level(0), x, y, w, h).unwrap();
            for py in 0..h as i64 {
                for px in 0..w as i64 {
                    let (ix, iy) = (x + px, y + py);
                    let inside = (0..100).contains(&ix) && (0..80).contains(&iy);
                    let want = order
                        .iter()
                        .find(|((tx, ty), _)| (*tx..tx + 16).contains(&ix) && (*ty..ty + 12).contains(&iy))
                        .filter(|_| inside)
                        .map_or([0; 4], |&(_, v)| [v, v, v, 255]);
                    let at = ((py * w as i64 + px) * 4) as usize;
                    assert_eq!(got[at..at + 4], want, "pixel ({ix}, {iy}) of region ({x}, {y})");
                }
            }
        }
        assert!(read_region_halved(&grid, &cache, Image::Level(0), 0, 0, 32, 24)
            .unwrap()
            .is_none());
    }

    /// The one-pass read gives exactly what reading the region, whitening transparent
    /// pixels and box-averaging 2 × 2 give: across tile seams, at a tile corner, and at the
    /// slide's edge (where it declines).
    #[test]
    fn halved_read_equals_region_then_box_average() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/synth-s101-000.svs");
        let slide = Slide::open(path).unwrap();
        let (w, h) = slide.dimensions();
        for (x, y, side) in [
            (0, 0, 512),
            (128, 256, 512),
            (250, 6, 300),
            (2048, 1024, 64),
            (1000, 2000, 258),
        ] {
            let fast = slide
                .read_region_halved(0, x, y, side)
                .unwrap()
                .expect("inside the slide");
            let region = slide.read_region(0, x, y, side, side).unwrap();
            let (slow, _, _) = box_downsample(&region.to_rgb_on_white(), side as usize, side as usize, 3, 2);
            assert_eq!(fast, slow, "region at ({x}, {y}), {side} px");
        }
        assert!(slide
            .read_region_halved(0, w as i64 - 100, 0, 512)
            .unwrap()
            .is_none());
        assert!(slide.read_region_halved(0, 0, h as i64 - 4, 4).unwrap().is_some());
        assert!(
            slide.read_region_halved(0, 0, h as i64 - 2, 4).unwrap().is_none(),
            "past the edge"
        );
        assert!(
            slide.read_region_halved(0, 1, 0, 64).unwrap().is_none(),
            "odd position"
        );
    }
}
