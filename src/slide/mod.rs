//! Reading whole-slide images without OpenSlide.
//!
//! [`Slide::open`] recognises the format by content, and every format is reduced to the
//! same shape: pyramid levels (tile grids in level pixels), associated images, and
//! OpenSlide-named properties. [`Slide::read_region`] then works the same for all of them.

mod cache;
mod codec;
mod dicom;
mod dicom_image;
pub mod discover;
mod encoded_image;
mod error;
pub mod fingerprint;
mod formats;
mod grid;
mod io;
mod keyfile;
mod mosaic;
pub mod mpp;
mod properties;
mod region;
pub(crate) mod resample;
mod tiff_image;
mod tifflike;
mod tilemap;
pub mod writer;
mod xml;

pub use error::{SlideError, SlideErrorKind};
pub use grid::PlacedTile;
pub use properties::format_double;

use crate::slide::mpp::PLAUSIBLE_MPP;
use cache::TileCache;
use grid::TileGrid;
use region::Image;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Regions larger than this many pixels are refused unless the cap is raised (1 GiB of RGBA).
pub const DEFAULT_MAX_REGION_PIXELS: u64 = 1 << 28;
/// Bytes of decoded tiles kept for neighbouring reads.
pub const DEFAULT_TILE_CACHE_BYTES: usize = 64 << 20;

/// Microns per pixel, and where the number came from (a property or tag name).
#[derive(Clone, Debug, PartialEq)]
pub struct Mpp {
    pub x: f64,
    pub y: f64,
    pub source: String,
}

/// One level of the pyramid.
#[derive(Clone)]
pub struct Level {
    pub width: u64,
    pub height: u64,
    /// OpenSlide's downsample: the mean of the x and y size ratios to level 0.
    pub downsample: f64,
    pub tile_width: u32,
    pub tile_height: u32,
    grid: Arc<dyn TileGrid>,
}

impl Level {
    /// The level pixel holding level-0 pixel (`x`, `y`): reads start at the level's own
    /// pixels, never between them.
    fn pixel_at(&self, x: i64, y: i64) -> (i64, i64) {
        (
            (x as f64 / self.downsample).floor() as i64,
            (y as f64 / self.downsample).floor() as i64,
        )
    }
}

/// One stored tile of a [`JpegLevel`].
pub enum StoredTile {
    /// A complete baseline JPEG stream decoding to the level's tile size, three components.
    Jpeg(Vec<u8>),
    /// A tile the file leaves out (glass).
    Missing,
    /// Stored otherwise (progressive, another size): for the CPU's decoder.
    Other,
}

/// A pyramid level whose tiles are stand-alone JPEG streams ([`Slide::jpeg_level`]).
pub struct JpegLevel<'a> {
    slide: &'a Slide,
    level: &'a Level,
    index: usize,
}

impl JpegLevel<'_> {
    /// The size every stored tile decodes to (those at the right and bottom edges too).
    pub fn tile_size(&self) -> (u32, u32) {
        (self.level.tile_width, self.level.tile_height)
    }

    /// The level's size in its pixels; stored tiles reach past it at the right and bottom.
    pub fn dimensions(&self) -> (u64, u64) {
        (self.level.width, self.level.height)
    }

    /// The level pixel holding level-0 pixel (`x`, `y`), as `read_region` maps it.
    pub fn pixel_at(&self, x: i64, y: i64) -> (i64, i64) {
        self.level.pixel_at(x, y)
    }

    /// The stored tiles touching level pixels `x0..x1` × `y0..y1` (the part inside the level),
    /// each with its corner; where they overlap, the first listed shows.
    pub fn tiles_in(&self, x0: i64, y0: i64, x1: i64, y1: i64) -> Vec<PlacedTile> {
        let (x0, y0) = (x0.max(0), y0.max(0));
        let (x1, y1) = (x1.min(self.level.width as i64), y1.min(self.level.height as i64));
        if x0 >= x1 || y0 >= y1 {
            return Vec::new();
        }
        self.level.grid.tiles_in(x0, y0, x1, y1)
    }

    /// Stored tile (`col`, `row`), as [`JpegLevel::tiles_in`] names it, as a complete JPEG
    /// stream where it is one. A stream is
    /// checked whole (its restart markers and EOI present) and no larger than a tile before it
    /// is returned, as for the CPU's decoder.
    pub fn stream(&self, col: u64, row: u64) -> Result<StoredTile, SlideError> {
        self.level.grid.jpeg_stream(col, row).map_err(|kind| {
            let kind = Image::Level(self.index).tile_error(col, row, kind);
            SlideError::new(&self.slide.path, kind)
        })
    }
}

impl std::fmt::Debug for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Level")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("downsample", &self.downsample)
            .field("tile_width", &self.tile_width)
            .field("tile_height", &self.tile_height)
            .finish()
    }
}

/// An RGBA8 image, row-major, not premultiplied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbaImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbaImage {
    /// RGB bytes, transparent pixels (outside the scanned area) white like glass.
    pub fn to_rgb_on_white(&self) -> Vec<u8> {
        let mut rgb = vec![255u8; self.data.len() / 4 * 3];
        for (out, p) in rgb.chunks_exact_mut(3).zip(self.data.chunks_exact(4)) {
            if p[3] != 0 {
                out.copy_from_slice(&p[..3]);
            }
        }
        rgb
    }
}

/// An open slide. Cheap to share across threads (`&Slide` is `Sync`); reads decode tiles in
/// parallel and keep recently decoded tiles in a small cache.
pub struct Slide {
    path: PathBuf,
    vendor: &'static str,
    detected_by: String,
    levels: Vec<Level>,
    associated: BTreeMap<String, Arc<dyn TileGrid>>,
    properties: BTreeMap<String, String>,
    mpp: Option<Mpp>,
    mpp_problem: Option<String>,
    cache: TileCache,
    max_region_pixels: u64,
}

impl std::fmt::Debug for Slide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slide")
            .field("path", &self.path)
            .field("vendor", &self.vendor)
            .field("levels", &self.levels)
            .finish_non_exhaustive()
    }
}

impl Slide {
    /// Opens a slide, recognising its format from its content.
    pub fn open(path: impl AsRef<Path>) -> Result<Slide, SlideError> {
        let path = path.as_ref();
        Self::open_inner(path).map_err(|kind| SlideError::new(path, kind))
    }

    fn open_inner(path: &Path) -> error::Result<Slide> {
        let opened = formats::open(path)?;
        let (w0, h0) = match opened.levels.first() {
            Some(g) => (g.shape().width as f64, g.shape().height as f64),
            None => return Err(error::corrupt("slide has no pyramid level")),
        };
        let mut levels: Vec<Level> = Vec::with_capacity(opened.levels.len());
        for (i, grid) in opened.levels.into_iter().enumerate() {
            let s = grid.shape();
            let downsample = match opened.downsamples.get(i) {
                Some(&given) => given,
                None if i == 0 => 1.0,
                None => (h0 / s.height as f64 + w0 / s.width as f64) / 2.0,
            };
            if levels.last().is_some_and(|l| downsample < l.downsample) {
                return Err(error::corrupt("pyramid levels do not shrink in order"));
            }
            levels.push(Level {
                width: s.width,
                height: s.height,
                downsample,
                tile_width: s.tile_width,
                tile_height: s.tile_height,
                grid,
            });
        }
        let mut properties = opened.properties;
        properties.insert(properties::VENDOR.into(), opened.vendor.into());
        properties.insert("openslide.level-count".into(), levels.len().to_string());
        for (i, l) in levels.iter().enumerate() {
            properties.insert(format!("openslide.level[{i}].width"), l.width.to_string());
            properties.insert(format!("openslide.level[{i}].height"), l.height.to_string());
            properties.insert(
                format!("openslide.level[{i}].downsample"),
                format_double(l.downsample),
            );
            if opened.tile_hints {
                properties.insert(
                    format!("openslide.level[{i}].tile-width"),
                    l.tile_width.to_string(),
                );
                properties.insert(
                    format!("openslide.level[{i}].tile-height"),
                    l.tile_height.to_string(),
                );
            }
        }
        let mut associated = BTreeMap::new();
        for (name, grid) in opened.associated {
            let s = grid.shape();
            properties.insert(format!("openslide.associated.{name}.width"), s.width.to_string());
            properties.insert(
                format!("openslide.associated.{name}.height"),
                s.height.to_string(),
            );
            associated.insert(name, grid);
        }
        // The properties say what the file says, as OpenSlide's do; `mpp()` only what is
        // plausible.
        if let Some(m) = opened.mpp.as_ref().filter(|m| m.x.is_finite() && m.y.is_finite()) {
            properties.insert(properties::MPP_X.into(), format_double(m.x));
            properties.insert(properties::MPP_Y.into(), format_double(m.y));
        }
        let (mpp, mpp_problem) = match opened.mpp {
            Some(m) if PLAUSIBLE_MPP.contains(&m.x) && PLAUSIBLE_MPP.contains(&m.y) => (Some(m), None),
            Some(m) => {
                let stated = if m.x == m.y {
                    properties::format_short(m.x)
                } else {
                    format!(
                        "{} x {}",
                        properties::format_short(m.x),
                        properties::format_short(m.y)
                    )
                };
                let (lo, hi) = PLAUSIBLE_MPP.into_inner();
                let problem = format!(
                    "the slide states MPP {stated} µm/px (from {}), which is implausible (outside {lo}–{hi} µm/px)",
                    m.source
                );
                (None, Some(problem))
            }
            None => (None, None),
        };
        Ok(Slide {
            path: path.to_path_buf(),
            vendor: opened.vendor,
            detected_by: opened.detected_by,
            levels,
            associated,
            properties,
            mpp,
            mpp_problem,
            cache: TileCache::new(DEFAULT_TILE_CACHE_BYTES),
            max_region_pixels: DEFAULT_MAX_REGION_PIXELS,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// OpenSlide's vendor name: "aperio", "dicom", "generic-tiff", "hamamatsu".
    pub fn vendor(&self) -> &'static str {
        self.vendor
    }

    /// Why the file was read as its format: the format's rule, and what it found.
    pub fn detected_by(&self) -> &str {
        &self.detected_by
    }

    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    pub fn dimensions(&self) -> (u64, u64) {
        (self.levels[0].width, self.levels[0].height)
    }

    pub fn properties(&self) -> &BTreeMap<String, String> {
        &self.properties
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(String::as_str)
    }

    /// Microns per level-0 pixel and the tag it came from, when the file states a plausible
    /// value ([`crate::slide::mpp::PLAUSIBLE_MPP`]; TIFF's default 72 dpi, 353 µm/px, is not); see [`Slide::mpp_problem`] for one it states but is not.
    pub fn mpp(&self) -> Option<&Mpp> {
        self.mpp.as_ref()
    }

    /// Why the slide has no [`Slide::mpp`] although the file states one: "the slide states
    /// MPP 0 µm/px (from aperio.MPP), which is implausible (outside 0.05–100 µm/px)". `None`
    /// when the MPP is plausible or the file states none.
    pub fn mpp_problem(&self) -> Option<&str> {
        self.mpp_problem.as_deref()
    }

    /// The scanner's objective magnification (`openslide.objective-power`), when the file says.
    pub fn objective_power(&self) -> Option<f64> {
        self.property(properties::OBJECTIVE_POWER)
            .and_then(properties::parse_double)
    }

    /// Names of the associated images (label, macro, thumbnail, ...), sorted.
    pub fn associated_names(&self) -> impl Iterator<Item = &str> {
        self.associated.keys().map(String::as_str)
    }

    /// Size in pixels of an associated image.
    pub fn associated_dimensions(&self, name: &str) -> Option<(u64, u64)> {
        self.associated
            .get(name)
            .map(|g| (g.shape().width, g.shape().height))
    }

    /// Refuses regions over `pixels` pixels (default [`DEFAULT_MAX_REGION_PIXELS`]).
    pub fn set_max_region_pixels(&mut self, pixels: u64) {
        self.max_region_pixels = pixels;
    }

    /// Bytes of decoded tiles kept for later reads (default [`DEFAULT_TILE_CACHE_BYTES`]).
    pub fn set_tile_cache_bytes(&self, bytes: usize) {
        self.cache.set_capacity(bytes);
    }

    /// The level whose downsample is the largest not above `downsample` (level 0 if none is).
    pub fn best_level_for_downsample(&self, downsample: f64) -> usize {
        self.levels
            .iter()
            .rposition(|l| l.downsample <= downsample)
            .unwrap_or(0)
    }

    /// Reads `width` × `height` pixels of `level`, whose top-left corner is at (`x`, `y`) in
    /// level-0 pixels. Outside the image, pixels are (0, 0, 0, 0).
    ///
    /// The corner maps to level pixel (⌊x / downsample⌋, ⌊y / downsample⌋): flashslide reads
    /// the level's own pixels, never resamples. (OpenSlide instead shifts the level by the
    /// fractional remainder with bilinear interpolation; aligned reads agree exactly.)
    pub fn read_region(
        &self,
        level: usize,
        x: i64,
        y: i64,
        width: u32,
        height: u32,
    ) -> Result<RgbaImage, SlideError> {
        let err = |kind| SlideError::new(&self.path, kind);
        let l = self.levels.get(level).ok_or_else(|| {
            err(SlideErrorKind::BadRequest(format!(
                "level {level} does not exist (the slide has {} levels)",
                self.levels.len()
            )))
        })?;
        self.check_size(width as u64, height as u64).map_err(err)?;
        let (lx, ly) = l.pixel_at(x, y);
        let data = region::read_region(
            l.grid.as_ref(),
            &self.cache,
            Image::Level(level),
            lx,
            ly,
            width,
            height,
        )
        .map_err(err)?;
        Ok(RgbaImage { width, height, data })
    }

    /// `side` × `side` pixels of level `level` at level-0 (`x`, `y`), averaged 2 × 2 into
    /// RGB with transparent pixels white: `read_region` then a 2× box average, in one pass
    /// over the decoded tiles. `None` where the fast path does not apply (odd positions,
    /// the level's edge): use `read_region`.
    pub fn read_region_halved(
        &self,
        level: usize,
        x: i64,
        y: i64,
        side: u32,
    ) -> Result<Option<Vec<u8>>, SlideError> {
        let err = |kind| SlideError::new(&self.path, kind);
        let Some(l) = self.levels.get(level) else {
            return Ok(None);
        };
        self.check_size(side as u64, side as u64).map_err(err)?;
        let (lx, ly) = l.pixel_at(x, y);
        region::read_region_halved(
            l.grid.as_ref(),
            &self.cache,
            Image::Level(level),
            lx,
            ly,
            side,
            side,
        )
        .map_err(err)
    }

    /// Level `level`'s tiles as stand-alone JPEG streams, where the file stores them so (tiled
    /// TIFF, baseline YCbCr JPEG: most brightfield slides), for decoding elsewhere, as on the
    /// GPU. `None` otherwise: read it with `read_region`.
    pub fn jpeg_level(&self, level: usize) -> Option<JpegLevel<'_>> {
        let l = self.levels.get(level)?;
        l.grid.stores_jpeg_tiles().then_some(JpegLevel {
            slide: self,
            level: l,
            index: level,
        })
    }

    /// Reads a whole associated image.
    pub fn read_associated(&self, name: &str) -> Result<RgbaImage, SlideError> {
        let err = |kind| SlideError::new(&self.path, kind);
        let grid = self.associated.get(name).ok_or_else(|| {
            err(SlideErrorKind::BadRequest(format!(
                "no associated image named {name:?}"
            )))
        })?;
        let s = grid.shape();
        self.check_size(s.width, s.height).map_err(err)?;
        // check_size has bounded both sides by u32::MAX.
        let (width, height) = (s.width as u32, s.height as u32);
        let data = region::read_region(
            grid.as_ref(),
            &self.cache,
            Image::Associated(name),
            0,
            0,
            width,
            height,
        )
        .map_err(err)?;
        Ok(RgbaImage { width, height, data })
    }

    fn check_size(&self, width: u64, height: u64) -> error::Result<()> {
        let pixels = width.checked_mul(height);
        if pixels.is_none_or(|p| p > self.max_region_pixels)
            || width > u32::MAX as u64
            || height > u32::MAX as u64
        {
            return Err(SlideErrorKind::RegionTooLarge {
                width,
                height,
                cap: self.max_region_pixels,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slides_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::Slide>();
    }
}
