//! probability.tiff: the probability map as a tiled pyramidal 8-bit greyscale TIFF
//! (probability × 255, 0 off tissue) whose level 0 has exactly the slide's level-0 size and
//! whose levels follow the slide's downsamples, with resolution tags and MPP, so any viewer
//! overlays it 1:1. Every tile of every level is painted straight from the token grid (a
//! pixel takes the token under its centre), so nothing level-0-sized is ever built or
//! downsampled; tiles inside one token share one Deflate encoding per value.

use super::ProbabilityGrid;
use crate::slide::writer::{Compression, Paint, PyramidOptions, PyramidWriter, Samples, TileAt};
use crate::slide::{Slide, SlideError};
use std::path::Path;

const TILE: usize = 256;

pub fn write_probability_tiff(path: &Path, slide: &Slide, grid: &ProbabilityGrid) -> Result<(), SlideError> {
    let (width, height) = slide.dimensions();
    let level_factors = level_factors(slide);
    let options = PyramidOptions {
        tile_size: TILE as u32,
        // Level 1: the tiles are a few flat blocks, which it packs nearly as small as level
        // 6 does, at a sixth of the time.
        compression: Compression::Deflate { level: 1 },
        samples: Samples::Grey,
        level_factors,
        mpp: Some(grid.mpp),
        description: Some("flashslide tumour probability x 255, registered to the slide's level 0".into()),
        thumbnail: false,
    };
    let writer = PyramidWriter::create(path, width, height, options)?;
    writer.write_painted(|at, tile| paint_tile(grid, width, height, at, tile))
}

/// The slide's levels as whole ratios between neighbours (4× for Aperio, 2× for NDPI, any
/// other ratio a scanner chose), each picked so that the map's level has the slide's level
/// size exactly where a whole ratio gives it (the ratio of widths, of heights, or of the
/// downsamples, in that order); levels closer than 2× are left out.
fn level_factors(slide: &Slide) -> Vec<u32> {
    let mut factors = Vec::new();
    let (mut w, mut h) = slide.dimensions();
    for pair in slide.levels().windows(2) {
        let (next_w, next_h) = (pair[1].width.max(1), pair[1].height.max(1));
        let candidates = [
            w as f64 / next_w as f64,
            h as f64 / next_h as f64,
            pair[1].downsample / pair[0].downsample,
        ]
        .map(|r| r.round().clamp(0.0, u32::MAX as f64) as u32);
        let fits = |f: u32| f >= 2 && w.div_ceil(f as u64) == next_w && h.div_ceil(f as u64) == next_h;
        let Some(f) = candidates
            .iter()
            .copied()
            .find(|&f| fits(f))
            .or(Some(candidates[2]).filter(|&f| f >= 2))
        else {
            continue;
        };
        factors.push(f);
        (w, h) = (w.div_ceil(f as u64), h.div_ceil(f as u64));
    }
    factors
}

/// The byte of token (r, c): probability × 255, 0 where there is no token.
fn byte(grid: &ProbabilityGrid, r: usize, c: usize) -> u8 {
    if r >= grid.rows || c >= grid.cols {
        return 0;
    }
    let p = grid.values[r * grid.cols + c];
    if p.is_nan() {
        0
    } else {
        (p.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

fn paint_tile(grid: &ProbabilityGrid, width: u64, height: u64, at: TileAt, tile: &mut [u8]) -> Paint {
    let scale = at.scale as f64;
    // The token under a level pixel's centre; padding past the level's edge repeats the edge.
    let token_of =
        |i: u64, level_size: u64| ((i.min(level_size - 1) as f64 + 0.5) * scale / grid.cell) as usize;
    let (level_w, level_h) = (width.div_ceil(at.scale), height.div_ceil(at.scale));
    let (x0, y0) = (at.col * TILE as u64, at.row * TILE as u64);
    let (c0, c1) = (token_of(x0, level_w), token_of(x0 + TILE as u64 - 1, level_w));
    let (r0, r1) = (token_of(y0, level_h), token_of(y0 + TILE as u64 - 1, level_h));
    let first = byte(grid, r0, c0);
    if (r0..=r1).all(|r| (c0..=c1).all(|c| byte(grid, r, c) == first)) {
        return Paint::Uniform([first, 0, 0]);
    }
    let columns: Vec<usize> = (0..TILE as u64).map(|x| token_of(x0 + x, level_w)).collect();
    let mut previous = None;
    for y in 0..TILE {
        let r = token_of(y0 + y as u64, level_h);
        if previous == Some(r) {
            tile.copy_within((y - 1) * TILE..y * TILE, y * TILE);
            continue;
        }
        for (px, &c) in tile[y * TILE..(y + 1) * TILE].iter_mut().zip(&columns) {
            *px = byte(grid, r, c);
        }
        previous = Some(r);
    }
    Paint::Painted
}
