//! A backend's tile decoders checked against the CPU's reading of the same slide: model
//! tiles decoded and assembled on the device against [`read_tile`], read at the level's own
//! resolution and 2 × 2 averaged, aligned with the stored tiles and straddling them, at the
//! slide's edges. The two JPEG decoders round differently (IDCT, chroma upsampling), so pixel
//! values differ by a few levels; a misplaced tile would differ by far more.

use super::jpeg_tiles::read_jpeg_batch;
use super::plan::{read_tile, Tile, TilePlan};
use crate::backend::check::{compare, Check};
use crate::backend::{Backend, BackendError};
use crate::slide::{Slide, SlideError};

#[derive(Debug, thiserror::Error)]
pub enum DecoderCheckError {
    #[error(transparent)]
    Slide(#[from] SlideError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("the slide's level 0 is not stored as stand-alone JPEG tiles: no batch for a device decoder")]
    NotJpegTiles,
}

/// The first of `b`'s tile decoders on `slide` (level 0 at `mpp` µm/px; tiles spread over
/// 2,000 px on each side, or over the slide where it is smaller); no checks when `b` has no
/// decoder of its own.
pub fn check_tile_decoders<B: Backend>(
    b: &B,
    slide: &Slide,
    mpp: f64,
) -> Result<Vec<Check>, DecoderCheckError> {
    let Some(mut decoder) = b.tile_decoders().into_iter().next() else {
        return Ok(Vec::new());
    };
    let mut checks = Vec::new();
    for (tile_px, read_px) in [(256u32, 256u32), (256, 512)] {
        let plan = TilePlan::for_reading(mpp, tile_px, read_px);
        let corners = [
            (0, 0),
            (512, 256),
            (300, 700),
            (1000, 130),
            (1900, 1500),
            (1600, 60),
            (5, 1400),
        ];
        // Inside a smaller slide, the corners move in from its right and bottom edges.
        let (width, height) = slide.dimensions();
        let (max_x, max_y) = (
            width.saturating_sub(read_px as u64) as i64,
            height.saturating_sub(read_px as u64) as i64,
        );
        let tiles: Vec<Tile> = corners
            .iter()
            .map(|&(x, y)| Tile {
                col: 0,
                row: 0,
                x: x.min(max_x),
                y: y.min(max_y),
            })
            .collect();
        let batch = read_jpeg_batch(slide, &plan, &tiles)?.ok_or(DecoderCheckError::NotJpegTiles)?;
        let mut decode = || -> Result<Vec<u8>, BackendError> { b.download_pixels(&decoder.decode(&batch)?) };
        let got = decode()?;
        let repeatable = decode()? == got;
        let want: Vec<f64> = tiles
            .iter()
            .map(|t| read_tile(slide, &plan, t))
            .collect::<Result<Vec<_>, _>>()?
            .concat()
            .into_iter()
            .map(f64::from)
            .collect();
        let got: Vec<f32> = got.iter().map(|&v| v as f32).collect();
        checks.push(compare(
            format!(
                "tiles by {}, {} px from {read_px}, {} tiles",
                decoder.describe(),
                tile_px,
                tiles.len()
            ),
            &got,
            &want,
            repeatable,
        ));
    }
    Ok(checks)
}
