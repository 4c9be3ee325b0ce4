//! probability.tiff: the probability map as a tiled pyramidal 8-bit greyscale TIFF
//! (probability × 255, 0 off tissue) whose level 0 has exactly the slide's level-0 size and
//! whose levels follow the slide's downsamples, with resolution tags and MPP, so any viewer
//! overlays it 1:1. Deflate tiles: the constant blocks cost almost nothing. Streamed band
//! by band; nothing holds a level-0-sized canvas.

use super::ProbabilityGrid;
use crate::slide::writer::{Compression, PyramidOptions, PyramidWriter, Samples};
use crate::slide::{Slide, SlideError};
use std::path::Path;

pub fn write_probability_tiff(path: &Path, slide: &Slide, grid: &ProbabilityGrid) -> Result<(), SlideError> {
    let (width, height) = slide.dimensions();
    // The slide's levels as whole ratios between neighbours (4× for Aperio, 2× for NDPI).
    let level_factors: Vec<u32> = slide
        .levels()
        .windows(2)
        .map(|w| (w[1].downsample / w[0].downsample).round() as u32)
        .filter(|&f| f >= 2)
        .collect();
    let options = PyramidOptions {
        tile_size: 256,
        compression: Compression::Deflate,
        samples: Samples::Grey,
        level_factors,
        mpp: Some(grid.mpp),
        description: Some("flashslide tumour probability x 255, registered to the slide's level 0".into()),
        thumbnail: false,
    };
    let mut writer = PyramidWriter::create(path, width, height, options)?;
    // One row of the token grid in pixels, rebuilt only when the band moves to a new row.
    let row_pixels = |r: usize| -> Vec<u8> {
        let mut row = vec![0u8; width as usize];
        for c in 0..grid.cols {
            let p = grid.values[r * grid.cols + c];
            if p.is_nan() {
                continue;
            }
            let x0 = ((c as f64 * grid.cell).round() as usize).min(width as usize);
            let x1 = (((c + 1) as f64 * grid.cell).round() as usize).min(width as usize);
            row[x0..x1].fill((p.clamp(0.0, 1.0) * 255.0).round() as u8);
        }
        row
    };
    let blank = vec![0u8; width as usize];
    let mut cached: Option<(usize, Vec<u8>)> = None;
    let mut y = 0u64;
    while y < height {
        let rows = writer.next_band_rows();
        let mut band = Vec::with_capacity(rows as usize * width as usize);
        for yy in y..y + rows as u64 {
            let r = ((yy as f64 + 0.5) / grid.cell).floor() as usize;
            if r >= grid.rows {
                band.extend_from_slice(&blank);
                continue;
            }
            if cached.as_ref().map(|c| c.0) != Some(r) {
                cached = Some((r, row_pixels(r)));
            }
            band.extend_from_slice(&cached.as_ref().expect("just filled").1);
        }
        writer.write_band(&band)?;
        y += rows as u64;
    }
    writer.finish()
}
