//! Writing tiled pyramidal TIFF (BigTIFF when the file could pass 4 GiB) in bounded memory.
//!
//! The caller streams level 0 as bands one tile high, top to bottom. Each band's tiles are
//! encoded in parallel and appended in order; the band, box-averaged by the next level's
//! factor, feeds that level's band, and so on down the pyramid, so no level is ever held
//! whole (the coarsest, at most a few megapixels, is kept for the thumbnail). Directories
//! are written last; the file appears under its name only when complete.
//!
//! The same writer serves synthetic slides (Aperio-style, JPEG) and exported maps
//! (greyscale, Deflate).

mod tiff_out;

use super::error::{SlideError, SlideErrorKind};
use super::resample::box_downsample;
use jpeg_encoder::EncodingError;
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tiff_out::{Directory, TiffOut, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Baseline JPEG, YCbCr 4:2:0 for colour, at this quality (1–100).
    Jpeg { quality: u8 },
    /// zlib at this level (1 fastest … 9 smallest).
    Deflate { level: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Samples {
    Rgb,
    Grey,
}

impl Samples {
    pub fn per_pixel(self) -> usize {
        match self {
            Samples::Rgb => 3,
            Samples::Grey => 1,
        }
    }
}

/// What to write. [`PyramidOptions::aperio`] gives the layout OpenSlide reads as "aperio".
#[derive(Clone, Debug)]
pub struct PyramidOptions {
    pub tile_size: u32,
    pub compression: Compression,
    pub samples: Samples,
    /// Size ratio of each level after the first to the level before it.
    pub level_factors: Vec<u32>,
    /// Microns per level-0 pixel, written as resolution tags (and kept per level).
    pub mpp: Option<f64>,
    /// Level 0's ImageDescription.
    pub description: Option<String>,
    /// Write a thumbnail (≤ 768 px on its long side) as the second directory, as Aperio does.
    pub thumbnail: bool,
}

/// Levels each `factor`× smaller than the last until the long side is at most `max_side`.
pub fn level_factors_until(width: u64, height: u64, factor: u32, max_side: u64) -> Vec<u32> {
    let mut long = width.max(height);
    let mut factors = Vec::new();
    while long > max_side && factor > 1 {
        factors.push(factor);
        long = long.div_ceil(factor as u64);
    }
    factors
}

impl PyramidOptions {
    /// An Aperio-style slide: JPEG tiles of 256 px, levels 4× apart down to ≤ 1,024 px, a
    /// thumbnail, and an ImageDescription carrying MPP and AppMag.
    pub fn aperio(width: u64, height: u64, mpp: f64, quality: u8) -> PyramidOptions {
        let magnification = (10.0 / mpp).round();
        let description = format!(
            "Aperio Image Library flashslide {}\r\n{width}x{height} [0,0 {width}x{height}] (256x256) JPEG/YCC Q={quality}\
             |AppMag = {magnification}|MPP = {mpp:.4}|ScanScope ID = flashslide-synth",
            env!("CARGO_PKG_VERSION")
        );
        PyramidOptions {
            tile_size: 256,
            compression: Compression::Jpeg { quality },
            samples: Samples::Rgb,
            level_factors: level_factors_until(width, height, 4, 1024),
            mpp: Some(mpp),
            description: Some(description),
            thumbnail: true,
        }
    }
}

/// A tile of a painted pyramid: its level, its column and row in that level's tile grid,
/// and the level-0 pixels per pixel of the level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileAt {
    pub level: usize,
    pub col: u64,
    pub row: u64,
    pub scale: u64,
}

/// What a painter did with a tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paint {
    /// Every pixel has these samples (the first one for grey); the buffer is untouched.
    Uniform([u8; 3]),
    /// The buffer holds the tile.
    Painted,
}

struct LevelState {
    width: u64,
    height: u64,
    /// Ratio to the level before (1 for level 0).
    factor: u32,
    /// Rows waiting to make up this level's next band.
    pending: Vec<u8>,
    pending_rows: u32,
    rows_done: u64,
    offsets: Vec<u64>,
    counts: Vec<u64>,
    /// The whole level, kept for the coarsest one only (for the thumbnail).
    retained: Option<Vec<u8>>,
}

/// A pyramidal TIFF being written. Feed it level 0 with [`PyramidWriter::write_band`], then
/// call [`PyramidWriter::finish`]; dropped unfinished, it removes its partial file.
pub struct PyramidWriter {
    path: PathBuf,
    partial: PathBuf,
    out: Option<TiffOut>,
    options: PyramidOptions,
    levels: Vec<LevelState>,
}

fn io_error(path: &Path, e: std::io::Error) -> SlideError {
    SlideError::new(path, SlideErrorKind::Io(e))
}

fn encoding_failed(path: &Path, e: EncodingError) -> SlideError {
    SlideError::new(path, SlideErrorKind::BadRequest(format!("JPEG encoding: {e}")))
}

impl PyramidWriter {
    pub fn create(
        path: impl AsRef<Path>,
        width: u64,
        height: u64,
        options: PyramidOptions,
    ) -> Result<Self, SlideError> {
        let path = path.as_ref().to_path_buf();
        let bad = |msg: String| SlideError::new(&path, SlideErrorKind::BadRequest(msg));
        let t = options.tile_size;
        if width == 0 || height == 0 || t == 0 || t % 16 != 0 {
            return Err(bad(format!(
                "cannot write a {width}x{height} image in {t}-px tiles"
            )));
        }
        if options.level_factors.iter().any(|&f| f < 2) {
            return Err(bad(format!(
                "level factors {:?} must be at least 2",
                options.level_factors
            )));
        }
        let mut levels = vec![];
        let (mut w, mut h, mut factor) = (width, height, 1u32);
        for i in 0..=options.level_factors.len() {
            if i > 0 {
                factor = options.level_factors[i - 1];
                w = w.div_ceil(factor as u64);
                h = h.div_ceil(factor as u64);
            }
            levels.push(LevelState {
                width: w,
                height: h,
                factor,
                pending: Vec::new(),
                pending_rows: 0,
                rows_done: 0,
                offsets: Vec::new(),
                counts: Vec::new(),
                retained: None,
            });
        }
        if let Some(last) = levels.last_mut() {
            if options.thumbnail {
                last.retained = Some(Vec::new());
            }
        }
        // BigTIFF when even a poorly compressed file could pass 4 GiB.
        let raw: u64 = levels
            .iter()
            .map(|l| l.width * l.height * options.samples.per_pixel() as u64)
            .sum();
        let big = raw.saturating_mul(2) > (u32::MAX as u64) - (64 << 20);
        let partial = crate::util::atomic::partial_path(&path);
        let file = File::create(&partial).map_err(|e| io_error(&partial, e))?;
        let out = TiffOut::create(file, big).map_err(|e| io_error(&partial, e))?;
        Ok(PyramidWriter {
            path,
            partial,
            out: Some(out),
            options,
            levels,
        })
    }

    /// Level 0's width and height.
    pub fn dimensions(&self) -> (u64, u64) {
        (self.levels[0].width, self.levels[0].height)
    }

    /// Rows of level 0 the next band must have: the tile size, or what is left at the bottom.
    pub fn next_band_rows(&self) -> u32 {
        let l = &self.levels[0];
        (l.height - l.rows_done).min(self.options.tile_size as u64) as u32
    }

    /// Writes the next band of level 0: `next_band_rows()` rows of the full width, samples
    /// interleaved (RGB or grey, as the options say).
    pub fn write_band(&mut self, band: &[u8]) -> Result<(), SlideError> {
        let bad = |msg: String| SlideError::new(&self.path, SlideErrorKind::BadRequest(msg));
        // Bands pass down the pyramid whole, so each level's factor must divide the tile
        // size; painted pyramids (`write_painted`) take any factor.
        let t = self.options.tile_size;
        if self.options.level_factors.iter().any(|&f| t % f != 0) {
            return Err(bad(format!(
                "level factors {:?} must divide the tile size {t} to write in bands",
                self.options.level_factors
            )));
        }
        let rows = self.next_band_rows();
        let expected = rows as usize * self.levels[0].width as usize * self.options.samples.per_pixel();
        if rows == 0 || band.len() != expected {
            return Err(bad(format!("band of {} bytes, expected {expected}", band.len())));
        }
        self.accept(0, band, rows)
    }

    /// Encodes one band of `level` and passes its downsampled rows to the next level.
    fn accept(&mut self, level: usize, band: &[u8], rows: u32) -> Result<(), SlideError> {
        let spp = self.options.samples.per_pixel();
        let width = self.levels[level].width;
        let tiles = encode_band(band, width as usize, rows as usize, &self.options)
            .map_err(|e| encoding_failed(&self.path, e))?;
        let out = self.out.as_mut().expect("writer is open");
        for data in tiles {
            let at = out.append(&data).map_err(|e| io_error(&self.partial, e))?;
            let l = &mut self.levels[level];
            l.offsets.push(at);
            l.counts.push(data.len() as u64);
        }
        let l = &mut self.levels[level];
        l.rows_done += rows as u64;
        let finished = l.rows_done == l.height;
        if let Some(all) = l.retained.as_mut() {
            all.extend_from_slice(band);
        }
        if level + 1 == self.levels.len() {
            return Ok(());
        }
        let factor = self.levels[level + 1].factor as usize;
        let (small, _, small_rows) = box_downsample(band, width as usize, rows as usize, spp, factor);
        let next = &mut self.levels[level + 1];
        next.pending.extend_from_slice(&small);
        next.pending_rows += small_rows as u32;
        let full = next.pending_rows >= self.options.tile_size || finished;
        if full && next.pending_rows > 0 {
            let band = std::mem::take(&mut next.pending);
            let rows = std::mem::take(&mut next.pending_rows);
            self.accept(level + 1, &band, rows)?;
        }
        Ok(())
    }

    /// Writes every level tile by tile from `paint` and finishes the file: for images that
    /// are cheap to compute at any scale (probability maps, masks), so nothing is
    /// downsampled and no band is built. `paint` fills a tile-sized buffer (edge tiles
    /// padded as it likes) or reports the tile uniform, and uniform tiles share one
    /// encoding per value. Instead of [`PyramidWriter::write_band`], not with it.
    pub fn write_painted(
        mut self,
        paint: impl Fn(TileAt, &mut [u8]) -> Paint + Sync,
    ) -> Result<(), SlideError> {
        if self.options.thumbnail || self.levels[0].rows_done > 0 {
            return Err(SlideError::new(
                &self.path,
                SlideErrorKind::BadRequest("painted pyramids have no thumbnail and no bands".into()),
            ));
        }
        let t = self.options.tile_size as usize;
        let spp = self.options.samples.per_pixel();
        let compression = self.options.compression;
        let uniform: Mutex<HashMap<[u8; 3], Arc<Vec<u8>>>> = Mutex::default();
        let encode_uniform = |samples: [u8; 3]| -> Result<Arc<Vec<u8>>, EncodingError> {
            if let Some(hit) = uniform.lock().expect("no panics while held").get(&samples) {
                return Ok(hit.clone());
            }
            let pixels: Vec<u8> = samples[..spp].iter().copied().cycle().take(t * t * spp).collect();
            // Encoded once per value, so worth the strongest setting.
            let strongest = match compression {
                Compression::Deflate { .. } => Compression::Deflate { level: 9 },
                jpeg => jpeg,
            };
            let data = Arc::new(encode_tile(&pixels, t, t, spp, strongest)?);
            uniform
                .lock()
                .expect("no panics while held")
                .insert(samples, data.clone());
            Ok(data)
        };
        let mut scale = 1u64;
        for level in 0..self.levels.len() {
            scale *= self.levels[level].factor as u64;
            let (width, height) = (self.levels[level].width, self.levels[level].height);
            for row in 0..height.div_ceil(t as u64) {
                let tiles: Vec<_> = (0..width.div_ceil(t as u64))
                    .into_par_iter()
                    .map_init(
                        || vec![0u8; t * t * spp],
                        |buf, col| match paint(
                            TileAt {
                                level,
                                col,
                                row,
                                scale,
                            },
                            buf,
                        ) {
                            Paint::Uniform(samples) => encode_uniform(samples),
                            Paint::Painted => encode_tile(buf, t, t, spp, compression).map(Arc::new),
                        },
                    )
                    .collect::<Result<_, _>>()
                    .map_err(|e| encoding_failed(&self.path, e))?;
                let out = self.out.as_mut().expect("writer is open");
                let l = &mut self.levels[level];
                for data in tiles {
                    l.offsets
                        .push(out.append(&data).map_err(|e| io_error(&self.partial, e))?);
                    l.counts.push(data.len() as u64);
                }
            }
            self.levels[level].rows_done = height;
        }
        self.finish()
    }

    /// Writes the directories and gives the file its name.
    pub fn finish(mut self) -> Result<(), SlideError> {
        if self.levels[0].rows_done != self.levels[0].height {
            return Err(SlideError::new(
                &self.path,
                SlideErrorKind::BadRequest("finish called before every row was written".into()),
            ));
        }
        let mut out = self.out.take().expect("writer is open");
        let mut directories: Vec<Directory> = Vec::new();
        for (i, l) in self.levels.iter().enumerate() {
            directories.push(self.level_directory(i, l));
        }
        if self.options.thumbnail {
            let thumb = self.thumbnail_directory(&mut out)?;
            directories.insert(1, thumb);
        }
        let file = out.finish(directories).map_err(|e| io_error(&self.partial, e))?;
        file.sync_all().map_err(|e| io_error(&self.partial, e))?;
        drop(file);
        std::fs::rename(&self.partial, &self.path).map_err(|e| io_error(&self.path, e))?;
        Ok(())
    }

    fn common_tags(&self, width: u64, height: u64, downsample: f64, compression: Compression) -> Directory {
        let spp = self.options.samples.per_pixel();
        let mut d: Directory = vec![
            (256, Value::Long(vec![width as u32])),
            (257, Value::Long(vec![height as u32])),
            (258, Value::Short(vec![8; spp])),
            (
                259,
                Value::Short(vec![if matches!(compression, Compression::Jpeg { .. }) {
                    7
                } else {
                    8
                }]),
            ),
            (277, Value::Short(vec![spp as u16])),
            (284, Value::Short(vec![1])),
            (
                305,
                Value::Ascii(format!("flashslide {}", env!("CARGO_PKG_VERSION"))),
            ),
        ];
        let photometric = match (self.options.samples, compression) {
            (Samples::Grey, _) => 1,
            (Samples::Rgb, Compression::Jpeg { .. }) => 6,
            (Samples::Rgb, Compression::Deflate { .. }) => 2,
        };
        d.push((262, Value::Short(vec![photometric])));
        if photometric == 6 {
            d.push((530, Value::Short(vec![2, 2])));
        }
        if let Some(mpp) = self.options.mpp {
            // Pixels per centimetre, to 1/1000.
            let per_cm = (10000.0 / (mpp * downsample) * 1000.0).round() as u32;
            d.push((282, Value::Rational(per_cm, 1000)));
            d.push((283, Value::Rational(per_cm, 1000)));
            d.push((296, Value::Short(vec![3])));
        }
        d
    }

    fn level_directory(&self, index: usize, l: &LevelState) -> Directory {
        let (w0, h0) = (self.levels[0].width, self.levels[0].height);
        let downsample = (w0 as f64 / l.width as f64 + h0 as f64 / l.height as f64) / 2.0;
        let mut d = self.common_tags(l.width, l.height, downsample, self.options.compression);
        d.push((254, Value::Long(vec![if index == 0 { 0 } else { 1 }])));
        let description = match (&self.options.description, index) {
            (Some(desc), 0) => Some(desc.clone()),
            (Some(desc), _) if desc.starts_with("Aperio") => Some(format!(
                "Aperio Image Library flashslide\r\n{w0}x{h0} -> {}x{}",
                l.width, l.height
            )),
            _ => None,
        };
        if let Some(desc) = description {
            d.push((270, Value::Ascii(desc)));
        }
        let t = self.options.tile_size;
        d.push((322, Value::Short(vec![t as u16])));
        d.push((323, Value::Short(vec![t as u16])));
        d.push((324, Value::Offsets(l.offsets.clone())));
        d.push((325, Value::Offsets(l.counts.clone())));
        d
    }

    /// The thumbnail: the coarsest level shrunk to ≤ 768 px, one JPEG strip.
    fn thumbnail_directory(&self, out: &mut TiffOut) -> Result<Directory, SlideError> {
        let last = self.levels.last().expect("a level");
        let spp = self.options.samples.per_pixel();
        let pixels = last.retained.as_deref().unwrap_or_default();
        let factor = last.width.max(last.height).div_ceil(768).max(1) as usize;
        let (thumb, tw, th) = box_downsample(pixels, last.width as usize, last.height as usize, spp, factor);
        let compression = Compression::Jpeg { quality: 90 };
        let data =
            encode_tile(&thumb, tw, th, spp, compression).map_err(|e| encoding_failed(&self.path, e))?;
        let at = out.append(&data).map_err(|e| io_error(&self.partial, e))?;
        let (w0, h0) = (self.levels[0].width, self.levels[0].height);
        let downsample = (w0 as f64 / tw as f64 + h0 as f64 / th as f64) / 2.0;
        let mut d = self.common_tags(tw as u64, th as u64, downsample, compression);
        d.push((254, Value::Long(vec![1])));
        if self
            .options
            .description
            .as_deref()
            .is_some_and(|s| s.starts_with("Aperio"))
        {
            d.push((
                270,
                Value::Ascii(format!(
                    "Aperio Image Library flashslide\r\n{w0}x{h0} -> {tw}x{th}"
                )),
            ));
        }
        d.push((273, Value::Offsets(vec![at])));
        d.push((278, Value::Long(vec![th as u32])));
        d.push((279, Value::Offsets(vec![data.len() as u64])));
        Ok(d)
    }
}

impl Drop for PyramidWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Cuts a band into tile-sized pieces (edge tiles padded by repeating the last row and
/// column, which costs JPEG the least) and encodes them in parallel, in order.
fn encode_band(
    band: &[u8],
    width: usize,
    rows: usize,
    o: &PyramidOptions,
) -> Result<Vec<Vec<u8>>, EncodingError> {
    let t = o.tile_size as usize;
    let spp = o.samples.per_pixel();
    let across = width.div_ceil(t);
    (0..across)
        .into_par_iter()
        .map(|c| {
            let mut tile = vec![0u8; t * t * spp];
            let x0 = c * t;
            let w = (width - x0).min(t);
            for y in 0..t {
                let src_row = y.min(rows - 1);
                let src = &band[(src_row * width + x0) * spp..(src_row * width + x0 + w) * spp];
                let dst = &mut tile[y * t * spp..(y + 1) * t * spp];
                dst[..w * spp].copy_from_slice(src);
                let last = &src[(w - 1) * spp..w * spp];
                for x in w..t {
                    dst[x * spp..(x + 1) * spp].copy_from_slice(last);
                }
            }
            encode_tile(&tile, t, t, spp, o.compression)
        })
        .collect()
}

fn encode_tile(
    pixels: &[u8],
    width: usize,
    height: usize,
    spp: usize,
    compression: Compression,
) -> Result<Vec<u8>, EncodingError> {
    match compression {
        Compression::Jpeg { quality } => {
            let mut out = Vec::with_capacity(width * height / 4);
            let mut enc = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
            let colour = if spp == 3 {
                enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
                jpeg_encoder::ColorType::Rgb
            } else {
                jpeg_encoder::ColorType::Luma
            };
            enc.encode(pixels, width as u16, height as u16, colour)?;
            Ok(out)
        }
        Compression::Deflate { level } => Ok(miniz_oxide::deflate::compress_to_vec_zlib(pixels, level)),
    }
}
