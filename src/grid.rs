//! The grid of tissue tiles at the model's resolution, in level-0 pixel coordinates, and
//! reading one tile: from the coarsest pyramid level that is still at least as fine as the
//! model's MPP (never upsampled), averaged down to the model's input size.

use crate::slide::{Slide, SlideError};
use crate::tissue::TissueMask;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub col: u32,
    pub row: u32,
    /// Top-left corner in level-0 pixels.
    pub x: i64,
    pub y: i64,
}

#[derive(Clone, Debug)]
pub struct TilePlan {
    /// Microns per level-0 pixel of the slide, and of the model's input.
    pub slide_mpp: f64,
    pub model_mpp: f64,
    /// The model's input size in pixels.
    pub tile_px: u32,
    /// One tile's side in level-0 pixels.
    pub tile_level0: f64,
    /// The pyramid level tiles are read from, and a tile's side in its pixels.
    pub level: usize,
    pub read_px: u32,
    pub cols: u32,
    pub rows: u32,
    /// Tiles with at least the minimum tissue fraction, row by row.
    pub tiles: Vec<Tile>,
}

#[derive(Debug, thiserror::Error)]
pub enum GridError {
    #[error("the slide's pixels ({slide_mpp} µm) are coarser than the model's ({model_mpp} µm): tiles would be upsampled")]
    TooCoarse { slide_mpp: f64, model_mpp: f64 },
    #[error(transparent)]
    Slide(#[from] SlideError),
}

/// Plans the tiles of `slide` (level-0 pixels of `slide_mpp` µm) for a model that takes
/// `tile_px`-pixel tiles at `model_mpp` µm per pixel, keeping tiles whose tissue fraction in
/// `mask` is at least `min_tissue`.
pub fn plan_tiles(
    slide: &Slide,
    slide_mpp: f64,
    model_mpp: f64,
    tile_px: u32,
    mask: &TissueMask,
    min_tissue: f64,
) -> Result<TilePlan, GridError> {
    // 1% slack: scanners write 0.2527 for a nominal 0.25.
    if slide_mpp > model_mpp * 1.01 {
        return Err(GridError::TooCoarse { slide_mpp, model_mpp });
    }
    let level = slide
        .levels()
        .iter()
        .rposition(|l| slide_mpp * l.downsample <= model_mpp * 1.01)
        .unwrap_or(0);
    let tile_level0 = tile_px as f64 * model_mpp / slide_mpp;
    let read_px = (tile_level0 / slide.levels()[level].downsample).round().max(1.0) as u32;
    let (w, h) = slide.dimensions();
    let cols = (w as f64 / tile_level0).ceil() as u32;
    let rows = (h as f64 / tile_level0).ceil() as u32;
    let mut tiles = Vec::new();
    for row in 0..rows {
        for col in 0..cols {
            let (x, y) = (col as f64 * tile_level0, row as f64 * tile_level0);
            if mask.fraction(x, y, tile_level0, tile_level0) >= min_tissue {
                tiles.push(Tile {
                    col,
                    row,
                    x: x.round() as i64,
                    y: y.round() as i64,
                });
            }
        }
    }
    Ok(TilePlan {
        slide_mpp,
        model_mpp,
        tile_px,
        tile_level0,
        level,
        read_px,
        cols,
        rows,
        tiles,
    })
}

/// Reads one tile as `tile_px` × `tile_px` RGB (outside the slide: white, like glass).
pub fn read_tile(slide: &Slide, plan: &TilePlan, tile: &Tile) -> Result<Vec<u8>, SlideError> {
    let region = slide.read_region(plan.level, tile.x, tile.y, plan.read_px, plan.read_px)?;
    let rgb = region.to_rgb_on_white();
    if plan.read_px == plan.tile_px {
        return Ok(rgb);
    }
    let img = image::RgbImage::from_raw(plan.read_px, plan.read_px, rgb).expect("region has its size");
    let resized = image::imageops::resize(
        &img,
        plan.tile_px,
        plan.tile_px,
        image::imageops::FilterType::Triangle,
    );
    Ok(resized.into_raw())
}
