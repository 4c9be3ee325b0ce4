//! The grid of tissue tiles at the model's resolution, in level-0 pixel coordinates, and
//! reading one tile: from the coarsest pyramid level that is still at least as fine as the
//! model's MPP (never upsampled), averaged down to the model's input size (a box average
//! when the level is a whole multiple of the model's resolution, as it nearly always is).

use crate::analysis::tissue::TissueMask;
use crate::slide::mpp::{check_mpp, ImplausibleMpp};
use crate::slide::resample::{box_downsample, halve_rgba_to_rgb};
use crate::slide::{Slide, SlideError};

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
    /// Tiles with at least the minimum tissue fraction: row by row, or in blocks after
    /// [`TilePlan::in_batch_order`].
    pub tiles: Vec<Tile>,
}

impl TilePlan {
    /// A plan with no tiles of its own, for reading tiles placed by hand: `tile_px`-pixel
    /// tiles, each averaged from `read_px` pixels of level 0 (of `slide_mpp` µm).
    pub fn for_reading(slide_mpp: f64, tile_px: u32, read_px: u32) -> TilePlan {
        TilePlan {
            slide_mpp,
            model_mpp: slide_mpp * read_px as f64 / tile_px as f64,
            tile_px,
            tile_level0: read_px as f64,
            level: 0,
            read_px,
            cols: 1,
            rows: 1,
            tiles: Vec::new(),
        }
    }

    /// The same tiles in square blocks of about `batch` grid cells (blocks row by row, and
    /// row by row within a block), so that a batch of consecutive tiles covers a compact
    /// patch of the slide rather than a strip: its tiles share more of the stored JPEG tiles
    /// under them, and each stored tile is decoded fewer times (224-px tiles over 256-px
    /// stored tiles: about one stored tile a tile in blocks, two or more in strips).
    pub fn in_batch_order(mut self, batch: usize) -> TilePlan {
        let side = ((batch as f64).sqrt().round() as u32).max(1);
        self.tiles
            .sort_by_key(|t| (t.row / side, t.col / side, t.row, t.col));
        self
    }
}

/// Largest side, in pixels of the level read, of the region one tile is averaged from: a
/// 224-px tile from a slide with no pyramid level near the model's resolution (32× at most
/// for an 8 µm/px model over a 0.25 µm/px slide) stays within it; beyond, one tile would cost
/// gigabytes.
const MAX_READ_PX: f64 = 8192.0;
/// Most grid cells a slide may have at the model's resolution: 2^24, forty times the largest
/// 40x slide's 256-px tiles.
const MAX_GRID_CELLS: f64 = (1u64 << 24) as f64;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the slide's pixels ({slide_mpp} µm) are coarser than the model's ({model_mpp} µm): tiles would be upsampled")]
    TooCoarse { slide_mpp: f64, model_mpp: f64 },
    #[error("the slide's pixel size: {0}; pass --mpp with the right value")]
    SlideMpp(ImplausibleMpp),
    #[error("the model's pixel size: {0}")]
    ModelMpp(ImplausibleMpp),
    #[error("one {tile_px}-px tile at the model's resolution would be read from {read_px:.0} × {read_px:.0} pixels of the slide (at most {MAX_READ_PX}): the slide has no pyramid level near the model's {model_mpp} µm/px")]
    TileTooLarge {
        tile_px: u32,
        read_px: f64,
        model_mpp: f64,
    },
    #[error("the slide is {cols:.0} × {rows:.0} tiles at the model's resolution, more than {MAX_GRID_CELLS} in all")]
    TooManyTiles { cols: f64, rows: f64 },
    #[error(transparent)]
    Slide(#[from] SlideError),
}

/// Plans the tiles of `slide` (level-0 pixels of `slide_mpp` µm) for a model that takes
/// `tile_px`-pixel tiles at `model_mpp` µm per pixel, keeping tiles whose tissue fraction in
/// `mask` is at least `min_tissue` (any tissue at all when the slide is a single tile).
pub fn plan_tiles(
    slide: &Slide,
    slide_mpp: f64,
    model_mpp: f64,
    tile_px: u32,
    mask: &TissueMask,
    min_tissue: f64,
) -> Result<TilePlan, PlanError> {
    check_mpp(slide_mpp).map_err(PlanError::SlideMpp)?;
    check_mpp(model_mpp).map_err(PlanError::ModelMpp)?;
    // 1% slack: scanners write 0.2527 for a nominal 0.25.
    if slide_mpp > model_mpp * 1.01 {
        return Err(PlanError::TooCoarse { slide_mpp, model_mpp });
    }
    let level = slide
        .levels()
        .iter()
        .rposition(|l| slide_mpp * l.downsample <= model_mpp * 1.01)
        .unwrap_or(0);
    let downsample = slide.levels()[level].downsample;
    let ratio = model_mpp / slide_mpp / downsample;
    // Sizes are checked in f64 before any becomes an integer, so none can wrap.
    let exact_read = tile_px as f64 * ratio;
    if !exact_read.is_finite() || exact_read > MAX_READ_PX {
        return Err(PlanError::TileTooLarge {
            tile_px,
            read_px: exact_read,
            model_mpp,
        });
    }
    let (read_px, tile_level0) = read_size(tile_px, ratio);
    let tile_level0 = tile_level0 * downsample;
    let (w, h) = slide.dimensions();
    let (cols, rows) = ((w as f64 / tile_level0).ceil(), (h as f64 / tile_level0).ceil());
    if !(cols * rows).is_finite() || cols * rows > MAX_GRID_CELLS {
        return Err(PlanError::TooManyTiles { cols, rows });
    }
    let (cols, rows) = (cols as u32, rows as u32);
    // A slide that is one tile (a model of whole-slide images) is analysed whenever it has
    // tissue: the minimum is for skipping glass between tissue, not the slide.
    let min_tissue = if cols * rows == 1 {
        f64::MIN_POSITIVE
    } else {
        min_tissue
    };
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

/// Pixels to read at the chosen level for one tile, and the tile's side in that level's
/// pixels, given the level's pixels per model pixel (`ratio`, ≥ 1 but for slack). Within 1.5%
/// of a whole multiple k of the model's tile (0.2527 µm scanners for a 0.5 µm model: k = 2),
/// the read is exactly k tiles wide, so that a box average makes the model's tile and the
/// tile covers k·tile_px level pixels; otherwise the exact size, resampled.
fn read_size(tile_px: u32, ratio: f64) -> (u32, f64) {
    let k = ratio.round().max(1.0);
    if (ratio / k - 1.0).abs() <= 0.015 {
        let read = k as u32 * tile_px;
        return (read, read as f64);
    }
    let exact = tile_px as f64 * ratio;
    (exact.round().max(1.0) as u32, exact)
}

/// Reads one tile as `tile_px` × `tile_px` RGB (outside the slide: white, like glass).
pub fn read_tile(slide: &Slide, plan: &TilePlan, tile: &Tile) -> Result<Vec<u8>, SlideError> {
    if plan.read_px == 2 * plan.tile_px {
        if let Some(rgb) = slide.read_region_halved(plan.level, tile.x, tile.y, plan.read_px)? {
            return Ok(rgb);
        }
    }
    let region = slide.read_region(plan.level, tile.x, tile.y, plan.read_px, plan.read_px)?;
    let side = plan.read_px as usize;
    if plan.read_px == 2 * plan.tile_px {
        return Ok(halve_rgba_to_rgb(&region.data, side, side));
    }
    let rgb = region.to_rgb_on_white();
    if plan.read_px == plan.tile_px {
        return Ok(rgb);
    }
    if plan.read_px % plan.tile_px == 0 {
        let factor = (plan.read_px / plan.tile_px) as usize;
        return Ok(box_downsample(&rgb, side, side, 3, factor).0);
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

#[cfg(test)]
mod tests {
    use super::{read_size, Tile, TilePlan};

    #[test]
    fn batch_order_puts_each_full_batch_in_one_square_block() {
        let mut plan = TilePlan::for_reading(0.5, 224, 224);
        // A 20 × 12 grid with a hole: every tile but (row 3, col 5).
        plan.tiles = (0..12u32)
            .flat_map(|row| (0..20u32).map(move |col| (row, col)))
            .filter(|&(row, col)| (row, col) != (3, 5))
            .map(|(row, col)| Tile {
                col,
                row,
                x: col as i64 * 224,
                y: row as i64 * 224,
            })
            .collect();
        let mut expected = plan.tiles.clone();
        let ordered = plan.in_batch_order(16).tiles;
        // The first block (rows 0-3, cols 0-3) comes whole, row by row, before any other tile.
        let first: Vec<(u32, u32)> = ordered[..16].iter().map(|t| (t.row, t.col)).collect();
        let block: Vec<(u32, u32)> = (0..4).flat_map(|r| (0..4).map(move |c| (r, c))).collect();
        assert_eq!(first, block);
        // Then the block to its right; the hole leaves that block one tile short.
        assert!(ordered[16..31]
            .iter()
            .all(|t| t.row < 4 && (4..8).contains(&t.col)));
        assert_eq!((ordered[31].row, ordered[31].col), (0, 8));
        // The same tiles, each once.
        let mut sorted = ordered.clone();
        sorted.sort_by_key(|t| (t.row, t.col));
        expected.sort_by_key(|t| (t.row, t.col));
        assert_eq!(sorted, expected);
    }

    #[test]
    fn whole_multiples_are_read_exactly_and_others_resampled() {
        assert_eq!(read_size(256, 1.0), (256, 256.0));
        assert_eq!(read_size(256, 2.0), (512, 512.0));
        // A 0.2527 µm scanner for a 0.5 µm model, and a 0.5025 µm slide (within the slack).
        assert_eq!(read_size(256, 0.5 / 0.2527), (512, 512.0));
        assert_eq!(read_size(256, 0.5 / 0.5025), (256, 256.0));
        // 0.3 µm: no whole multiple near, so read 427 px and resample.
        let (read, side) = read_size(256, 0.5 / 0.3);
        assert_eq!(read, 427);
        assert!((side - 426.666).abs() < 1e-2);
    }
}
