//! A slide as a DeepZoom pyramid, as OpenSlide's DeepZoomGenerator lays it out: level `L`
//! of `n` is the slide halved `n − 1 − L` times (sizes rounded up) down to one pixel,
//! tiles of 254 pixels with a pixel of overlap on each inner side. A tile is read from the
//! slide's own level closest above its scale and resampled the rest of the way, so a
//! zoomed-out view reads a pyramid level, not level 0.

use crate::slide::{Slide, SlideError};
use image::imageops::FilterType;
use image::{ImageBuffer, Rgb};

pub const TILE: u64 = 254;
pub const OVERLAP: u64 = 1;

/// Largest side of a DeepZoom tile: a tile and its overlap on both sides.
const MAX_TILE_SIDE: u64 = TILE + 2 * OVERLAP;

/// The DeepZoom levels of an image of `width` × `height` level-0 pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Pyramid {
    /// Sizes, smallest (1 × 1) first.
    pub levels: Vec<(u64, u64)>,
}

/// Where a tile lies: its level, its rectangle in that level's pixels and in level-0 pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TileRect {
    /// Left, top, width, height in the DeepZoom level's pixels.
    pub x: u64,
    pub y: u64,
    pub width: u64,
    pub height: u64,
    /// Level-0 pixels per pixel of the DeepZoom level.
    pub downsample: f64,
}

impl Pyramid {
    pub fn new(width: u64, height: u64) -> Pyramid {
        let mut levels = vec![(width.max(1), height.max(1))];
        while let Some(&(w, h)) = levels.last() {
            if w == 1 && h == 1 {
                break;
            }
            levels.push((w.div_ceil(2), h.div_ceil(2)));
        }
        levels.reverse();
        Pyramid { levels }
    }

    /// Tiles across and down level `level`.
    pub fn tiles(&self, level: usize) -> Option<(u64, u64)> {
        let &(w, h) = self.levels.get(level)?;
        Some((w.div_ceil(TILE), h.div_ceil(TILE)))
    }

    /// Tile (`col`, `row`) of `level`, or `None` where there is no such tile.
    pub fn tile(&self, level: usize, col: u64, row: u64) -> Option<TileRect> {
        let (across, down) = self.tiles(level)?;
        if col >= across || row >= down {
            return None;
        }
        let (w, h) = self.levels[level];
        let span = |i: u64, size: u64| {
            let start = (i * TILE).saturating_sub(if i > 0 { OVERLAP } else { 0 });
            let end = ((i + 1) * TILE + OVERLAP).min(size);
            (start, end - start)
        };
        let ((x, width), (y, height)) = (span(col, w), span(row, h));
        let top = self.levels.len() - 1 - level;
        Some(TileRect {
            x,
            y,
            width,
            height,
            downsample: (1u64 << top.min(62)) as f64,
        })
    }
}

/// Tile `rect` of `slide` as RGB, transparent parts white: read at the slide's level whose
/// downsample is the largest not above the tile's, resampled (Lanczos, as OpenSlide's
/// generator resizes with PIL) to the tile's size.
pub fn render(slide: &Slide, rect: TileRect) -> Result<ImageBuffer<Rgb<u8>, Vec<u8>>, SlideError> {
    debug_assert!(rect.width <= MAX_TILE_SIDE && rect.height <= MAX_TILE_SIDE);
    let level = slide.best_level_for_downsample(rect.downsample);
    let level_ds = slide.levels()[level].downsample;
    let (x0, y0) = (rect.x as f64 * rect.downsample, rect.y as f64 * rect.downsample);
    // The level pixels the tile covers, at least one each way.
    let scale = rect.downsample / level_ds;
    let read_w = ((rect.width as f64 * scale).ceil() as u32).max(1);
    let read_h = ((rect.height as f64 * scale).ceil() as u32).max(1);
    let region = slide.read_region(level, x0 as i64, y0 as i64, read_w, read_h)?;
    let rgb =
        ImageBuffer::from_raw(read_w, read_h, region.to_rgb_on_white()).expect("RGB of the region's size");
    let (w, h) = (rect.width as u32, rect.height as u32);
    if (read_w, read_h) == (w, h) {
        return Ok(rgb);
    }
    Ok(image::imageops::resize(&rgb, w, h, FilterType::Lanczos3))
}

#[cfg(test)]
mod tests {
    use super::Pyramid;

    /// OpenSlide's DeepZoomGenerator on a 2220 × 2967 slide (CMU-1-Small-Region): 13
    /// levels, level 12 of 9 × 12 tiles; its tile (3, 5) spans level pixels 761..1017 ×
    /// 1269..1525 (254-px tiles, a pixel of overlap each inner side).
    #[test]
    fn levels_and_tiles_follow_openslides_generator() {
        let p = Pyramid::new(2220, 2967);
        assert_eq!(p.levels.len(), 13);
        assert_eq!(p.levels[0], (1, 1));
        assert_eq!(p.levels[11], (1110, 1484));
        assert_eq!(p.tiles(12), Some((9, 12)));
        let t = p.tile(12, 3, 5).unwrap();
        assert_eq!(
            (t.x, t.y, t.width, t.height, t.downsample),
            (761, 1269, 256, 256, 1.0)
        );
        let first = p.tile(12, 0, 0).unwrap();
        assert_eq!((first.width, first.height), (255, 255));
        let last = p.tile(12, 8, 11).unwrap();
        assert_eq!((last.x, last.width, last.y, last.height), (2031, 189, 2793, 174));
        assert_eq!(p.tile(11, 0, 0).unwrap().downsample, 2.0);
        assert!(p.tile(12, 9, 0).is_none() && p.tile(13, 0, 0).is_none());
    }
}
