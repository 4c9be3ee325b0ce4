//! A batch of model tiles described by the stored JPEG tiles they are cut from, for a decoder
//! on the device: the GPU decodes each stored tile once and assembles the model's tiles from
//! them (box-averaged where the level is a whole multiple finer than the model), so decoding
//! leaves the CPU and no pixel crosses the bus. It applies where the level stores
//! stand-alone JPEG tiles and a model pixel is a whole number of level pixels; elsewhere the
//! CPU reads tiles ([`crate::analysis::plan::read_tile`]).

use crate::analysis::plan::{Tile, TilePlan};
use crate::backend::{JpegBatch, Placement};
use crate::slide::{Slide, SlideError, StoredTile};
use rayon::prelude::*;
use std::collections::HashMap;

/// The batch for `tiles` of `plan`, reading their stored tiles' bytes; `None` where a
/// device decoder cannot make them (the level is not stored as baseline JPEG tiles of its
/// tile size, or the model's tile is resampled rather than box-averaged).
pub fn read_jpeg_batch(
    slide: &Slide,
    plan: &TilePlan,
    tiles: &[Tile],
) -> Result<Option<JpegBatch>, SlideError> {
    if plan.read_px % plan.tile_px != 0 {
        return Ok(None);
    }
    let Some(level) = slide.jpeg_level(plan.level) else {
        return Ok(None);
    };
    let (tw, th) = level.tile_size();
    let (width, height) = level.dimensions();
    let read = plan.read_px as i64;
    // Each stored tile once, in the order first asked for.
    let mut wanted: Vec<(u64, u64)> = Vec::new();
    let mut index_of: HashMap<(u64, u64), u32> = HashMap::new();
    let mut origins = Vec::with_capacity(tiles.len());
    let mut starts = Vec::with_capacity(tiles.len() + 1);
    let mut placements = Vec::new();
    for tile in tiles {
        let (x, y) = level.pixel_at(tile.x, tile.y);
        origins.push([x, y]);
        starts.push(placements.len() as u32);
        for p in level.tiles_in(x, y, x + read, y + read) {
            let next = wanted.len() as u32;
            let source = *index_of.entry((p.col, p.row)).or_insert_with(|| {
                wanted.push((p.col, p.row));
                next
            });
            placements.push(Placement {
                source,
                corner: [p.x, p.y],
            });
        }
    }
    starts.push(placements.len() as u32);
    let stored: Vec<StoredTile> = wanted
        .par_iter()
        .map(|&(col, row)| level.stream(col, row))
        .collect::<Result<_, _>>()?;
    // Tiles the file leaves out become glass (their placements dropped); the others are
    // renumbered densely.
    let mut renumbered = Vec::with_capacity(stored.len());
    let mut streams = Vec::with_capacity(stored.len());
    for stream in stored {
        renumbered.push(match stream {
            StoredTile::Jpeg(s) => {
                streams.push(s);
                Some(streams.len() as u32 - 1)
            }
            StoredTile::Missing => None,
            StoredTile::Other => return Ok(None),
        });
    }
    let (mut kept, mut kept_starts) = (
        Vec::with_capacity(placements.len()),
        Vec::with_capacity(starts.len()),
    );
    for t in 0..tiles.len() {
        kept_starts.push(kept.len() as u32);
        for p in &placements[starts[t] as usize..starts[t + 1] as usize] {
            if let Some(source) = renumbered[p.source as usize] {
                kept.push(Placement { source, ..*p });
            }
        }
    }
    kept_starts.push(kept.len() as u32);
    Ok(Some(JpegBatch {
        streams,
        stored_size: [tw, th],
        level_size: [width as i64, height as i64],
        tile_px: plan.tile_px,
        factor: plan.read_px / plan.tile_px,
        origins,
        starts: kept_starts,
        placements: kept,
    }))
}

/// What a device decoder makes of `batch`, made on the CPU: each stored tile decoded by the
/// CPU's JPEG decoder (zune-jpeg, the reader's), the model tiles assembled as the batch says
/// ([`JpegBatch::assemble`], the device kernel's recipe): the reference batches are checked
/// against, exactly equal to reading the tiles.
pub fn assemble_on_cpu(batch: &JpegBatch) -> Result<Vec<u8>, String> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let decoded = batch
        .streams
        .iter()
        .map(|s| {
            let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
            zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(s.as_slice()), options)
                .decode()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(batch.assemble(&decoded))
}

#[cfg(test)]
mod tests {
    use super::read_jpeg_batch;
    use crate::analysis::plan::{read_tile, Tile, TilePlan};
    use crate::backend::JpegBatch;
    use crate::slide::Slide;

    const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/synth-s101-000.svs");

    fn assemble(batch: &JpegBatch) -> Vec<u8> {
        super::assemble_on_cpu(batch).unwrap()
    }

    /// Every way a model tile meets the stored tiles: aligned with them, straddling two or
    /// four, reaching past the slide's right and bottom edges, at 1 and 2 level pixels per
    /// model pixel. The device's recipe, run on the CPU, gives exactly `read_tile`'s pixels.
    #[test]
    fn batches_assemble_to_what_read_tile_reads() {
        let slide = Slide::open(SAMPLE).unwrap();
        let (w, h) = slide.dimensions();
        let (tw, th) = slide.jpeg_level(0).expect("samples store JPEG tiles").tile_size();
        assert_eq!((tw, th), (256, 256));
        for (tile_px, read_px) in [(256, 256), (128, 256), (96, 192)] {
            let plan = TilePlan::for_reading(0.5, tile_px, read_px);
            let corners = [
                (0, 0),
                (256, 512),
                (100, 300),
                (130, 250),
                (w as i64 - 100, 40),
                (40, h as i64 - 60),
                (w as i64 - read_px as i64 + 2, h as i64 - 10),
            ];
            let tiles: Vec<Tile> = corners
                .iter()
                .map(|&(x, y)| Tile { col: 0, row: 0, x, y })
                .collect();
            let batch = read_jpeg_batch(&slide, &plan, &tiles).unwrap().unwrap();
            assert_eq!(batch.len(), tiles.len());
            let expected: Vec<u8> = tiles
                .iter()
                .flat_map(|t| read_tile(&slide, &plan, t).unwrap())
                .collect();
            let got = assemble(&batch);
            assert_eq!(got.len(), expected.len());
            let differing = got.iter().zip(&expected).filter(|(a, b)| a != b).count();
            assert_eq!(
                differing, 0,
                "tile {tile_px} from {read_px}: {differing} values differ"
            );
        }
    }

    /// A model tile that is resampled (not a whole number of level pixels per model pixel)
    /// stays on the CPU.
    #[test]
    fn resampled_tiles_are_left_to_the_cpu() {
        let slide = Slide::open(SAMPLE).unwrap();
        let plan = TilePlan {
            slide_mpp: 0.3,
            model_mpp: 0.5,
            tile_px: 256,
            tile_level0: 426.67,
            level: 0,
            read_px: 427,
            cols: 1,
            rows: 1,
            tiles: Vec::new(),
        };
        let tile = Tile {
            col: 0,
            row: 0,
            x: 0,
            y: 0,
        };
        assert!(read_jpeg_batch(&slide, &plan, &[tile]).unwrap().is_none());
    }
}
