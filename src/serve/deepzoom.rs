//! A slide as a DeepZoom pyramid, laid out as OpenSlide's DeepZoomGenerator lays it out:
//! level `L` of `n` is the slide halved `n − 1 − L` times (sizes rounded up) down to one
//! pixel. Tiles are the slide's own stored tile size without overlap where its level 0 is
//! stored as stand-alone JPEG tiles, so that a DeepZoom tile at a level's own scale *is* a
//! stored tile, sent as stored (no decoding, no encoding); elsewhere OpenSlide's default of
//! 254 pixels with a pixel of overlap. Other tiles are read from the slide's level closest
//! above their scale and reduced the rest of the way, so a zoomed-out view reads a pyramid
//! level, not level 0.

use crate::slide::resample::box_downsample;
use crate::slide::{Slide, SlideError, StoredTile};
use image::imageops::FilterType;
use image::{ImageBuffer, Rgb};

/// OpenSlide's DeepZoomGenerator's default tile size and overlap.
pub const DEFAULT_TILE: u64 = 254;
pub const DEFAULT_OVERLAP: u64 = 1;

/// The DeepZoom levels of an image of `width` × `height` level-0 pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Pyramid {
    /// Sizes, smallest (1 × 1) first.
    pub levels: Vec<(u64, u64)>,
    pub tile: u64,
    pub overlap: u64,
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
    pub fn new(width: u64, height: u64, tile: u64, overlap: u64) -> Pyramid {
        let mut levels = vec![(width.max(1), height.max(1))];
        while let Some(&(w, h)) = levels.last() {
            if w == 1 && h == 1 {
                break;
            }
            levels.push((w.div_ceil(2), h.div_ceil(2)));
        }
        levels.reverse();
        Pyramid {
            levels,
            tile: tile.max(1),
            overlap,
        }
    }

    /// The pyramid `slide` is served as: its stored JPEG tiles' size without overlap where
    /// its level 0 has them (square, 64 to 2,048 px), else OpenSlide's default.
    pub fn for_slide(slide: &Slide) -> Pyramid {
        let (w, h) = slide.dimensions();
        let stored = slide.jpeg_level(0).map(|l| l.tile_size());
        match stored {
            Some((tw, th)) if tw == th && (64..=2048).contains(&tw) => Pyramid::new(w, h, tw as u64, 0),
            _ => Pyramid::new(w, h, DEFAULT_TILE, DEFAULT_OVERLAP),
        }
    }

    /// Tiles across and down level `level`.
    pub fn tiles(&self, level: usize) -> Option<(u64, u64)> {
        let &(w, h) = self.levels.get(level)?;
        Some((w.div_ceil(self.tile), h.div_ceil(self.tile)))
    }

    /// Tile (`col`, `row`) of `level`, or `None` where there is no such tile.
    pub fn tile(&self, level: usize, col: u64, row: u64) -> Option<TileRect> {
        let (across, down) = self.tiles(level)?;
        if col >= across || row >= down {
            return None;
        }
        let (w, h) = self.levels[level];
        let (t, o) = (self.tile, self.overlap);
        let span = |i: u64, size: u64| {
            let start = (i * t).saturating_sub(if i > 0 { o } else { 0 });
            let end = ((i + 1) * t + o).min(size);
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

/// Tile `rect` as the slide stores it, where it is exactly one stored JPEG tile: a whole
/// tile (not cut by the image's edge) of a level whose downsample is the tile's, stored as
/// a stand-alone baseline JPEG of this pyramid's tile size at this position. A browser
/// decodes it as any decoder does (the same check as the GPU's decoder).
pub fn stored_jpeg(slide: &Slide, pyramid: &Pyramid, rect: TileRect) -> Result<Option<Vec<u8>>, SlideError> {
    let t = pyramid.tile;
    if pyramid.overlap != 0 || rect.width != t || rect.height != t {
        return Ok(None);
    }
    let Some(level) = slide
        .levels()
        .iter()
        .position(|l| (l.downsample - rect.downsample).abs() < 1e-9)
    else {
        return Ok(None);
    };
    let Some(stored) = slide.jpeg_level(level) else {
        return Ok(None);
    };
    if stored.tile_size() != (t as u32, t as u32) {
        return Ok(None);
    }
    Ok(match stored.stream(rect.x / t, rect.y / t)? {
        StoredTile::Jpeg(stream) => Some(stream),
        StoredTile::Missing | StoredTile::Other => None,
    })
}

/// Tile `rect` of `slide` as RGB (`width` × `height`, row-major), transparent parts white:
/// read at the slide's level whose downsample is the largest not above the tile's, then
/// box-averaged where that leaves a whole factor (as pyramids are built), else resampled
/// (Lanczos, as OpenSlide's generator resizes with PIL) to the tile's size.
pub fn render(slide: &Slide, rect: TileRect) -> Result<Vec<u8>, SlideError> {
    let level = slide.best_level_for_downsample(rect.downsample);
    let level_ds = slide.levels()[level].downsample;
    let (x0, y0) = (rect.x as f64 * rect.downsample, rect.y as f64 * rect.downsample);
    let scale = rect.downsample / level_ds;
    let whole = (scale.round() - scale).abs() < 1e-9;
    // The level pixels the tile covers, at least one each way.
    let read_w = ((rect.width as f64 * scale).ceil() as u32).max(1);
    let read_h = ((rect.height as f64 * scale).ceil() as u32).max(1);
    let rgb = slide
        .read_region(level, x0 as i64, y0 as i64, read_w, read_h)?
        .to_rgb_on_white();
    let (w, h) = (rect.width as u32, rect.height as u32);
    if (read_w, read_h) == (w, h) {
        return Ok(rgb);
    }
    if whole {
        let (out, ..) = box_downsample(&rgb, read_w as usize, read_h as usize, 3, scale.round() as usize);
        return Ok(out);
    }
    let img: ImageBuffer<Rgb<u8>, Vec<u8>> =
        ImageBuffer::from_raw(read_w, read_h, rgb).expect("RGB of the region's size");
    Ok(image::imageops::resize(&img, w, h, FilterType::Lanczos3).into_raw())
}

/// `rgb` (`width` × `height`) as a baseline JPEG, 4:2:0.
pub fn jpeg(rgb: &[u8], width: u16, height: u16, quality: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(rgb.len() / 8);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    encoder
        .encode(rgb, width, height, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{Pyramid, DEFAULT_OVERLAP, DEFAULT_TILE};

    /// OpenSlide's DeepZoomGenerator on a 2220 × 2967 slide (CMU-1-Small-Region): 13
    /// levels, level 12 of 9 × 12 tiles; its tile (3, 5) spans level pixels 761..1017 ×
    /// 1269..1525 (254-px tiles, a pixel of overlap each inner side).
    #[test]
    fn levels_and_tiles_follow_openslides_generator() {
        let p = Pyramid::new(2220, 2967, DEFAULT_TILE, DEFAULT_OVERLAP);
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
        // The stored tiles' size, no overlap: tiles on the stored grid.
        let p = Pyramid::new(2220, 2967, 256, 0);
        let t = p.tile(12, 3, 5).unwrap();
        assert_eq!((t.x, t.y, t.width, t.height), (768, 1280, 256, 256));
        assert_eq!(p.tile(12, 8, 11).unwrap().width, 2220 - 8 * 256);
    }
}
