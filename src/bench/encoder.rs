//! Encoder throughput on any backend, with random weights (speed does not depend on their
//! values) and random inputs: tile-encoder tiles per second, and the seconds of one
//! slide-encoder pass over N tokens. Each timed region ends by reading the result back, so
//! asynchronous devices are timed to completion.

use crate::backend::testing::random_inputs;
use crate::backend::Backend;
use crate::model::config::ModelConfig;
use crate::model::slide_encoder::{SlideEncoder, SlideEncoderConfig};
use crate::model::tile_encoder::TileEncoder;
use crate::model::ModelError;
use std::time::Instant;

/// Encodes `batches` batches of `batch` random tiles after two warm-up batches (as
/// bench/encoder_reference.py warms PyTorch; the second also fills the GPU backend's second
/// upload buffer); tiles per second over the timed batches.
pub fn tiles_per_second<B: Backend>(
    backend: &B,
    config: &ModelConfig,
    batch: usize,
    batches: usize,
) -> Result<f64, ModelError> {
    let (encoder, tiles) = random_encoder(backend, config, batch)?;
    encode(&encoder, &tiles, batch, 2)?;
    let start = Instant::now();
    encode(&encoder, &tiles, batch, batches.max(1))?;
    Ok((batch * batches.max(1)) as f64 / start.elapsed().as_secs_f64())
}

/// `passes` forward passes of a random-weight encoder over `batch` random tiles, each read
/// back, after two warm-up passes: what `tiles_per_second` times, for a profiler to watch;
/// `watch(true)` before the passes and `watch(false)` after.
pub fn watched_passes<B: Backend>(
    backend: &B,
    config: &ModelConfig,
    batch: usize,
    passes: usize,
    watch: &dyn Fn(bool),
) -> Result<(), ModelError> {
    let (encoder, tiles) = random_encoder(backend, config, batch)?;
    encode(&encoder, &tiles, batch, 2)?;
    watch(true);
    let result = encode(&encoder, &tiles, batch, passes);
    watch(false);
    result
}

fn random_encoder<B: Backend>(
    backend: &B,
    config: &ModelConfig,
    batch: usize,
) -> Result<(TileEncoder<B>, Vec<u8>), ModelError> {
    let encoder = TileEncoder::random(backend, config.clone())?;
    let s = config.image_size;
    let tiles: Vec<u8> = random_inputs(batch * s * s * 3, 3)
        .iter()
        .map(|x| ((x + 2.0) * 63.9) as u8)
        .collect();
    Ok((encoder, tiles))
}

/// `passes` passes over `tiles` (u8 from the host), each's pooled features read back. The
/// next pass's tiles are sent before this pass's features are read, as a pipeline feeding
/// the encoder would, so a backend that uploads on a stream of its own overlaps the two.
fn encode<B: Backend>(
    encoder: &TileEncoder<B>,
    tiles: &[u8],
    batch: usize,
    passes: usize,
) -> Result<(), ModelError> {
    let (side, be) = (encoder.config.image_size, encoder.backend());
    let mut pixels = be.upload_pixels(tiles)?;
    for pass in 0..passes {
        let encoded = encoder.forward_pixels(&pixels, batch, side)?;
        if pass + 1 < passes {
            pixels = be.upload_pixels(tiles)?;
        }
        be.download(&encoded.pooled)?;
    }
    Ok(())
}

/// Seconds of one slide-encoder pass over `tokens` random features on a square grid, after
/// a warm-up pass over a few tokens.
pub fn slide_encoder_seconds<B: Backend>(
    backend: &B,
    config: &SlideEncoderConfig,
    tokens: usize,
) -> Result<f64, ModelError> {
    let encoder = SlideEncoder::random(backend, config.clone())?;
    let side = (tokens as f64).sqrt().ceil() as usize;
    let positions: Vec<[f32; 2]> = (0..tokens)
        .map(|i| [(i / side) as f32, (i % side) as f32])
        .collect();
    let features = backend.upload(
        &random_inputs(tokens * config.input_dim, 8),
        tokens,
        config.input_dim,
    )?;
    let warm = tokens.min(256);
    let warm_features = backend.upload(&random_inputs(warm * config.input_dim, 9), warm, config.input_dim)?;
    encoder.forward(&warm_features, &positions[..warm])?;
    let start = Instant::now();
    encoder.forward(&features, &positions)?;
    Ok(start.elapsed().as_secs_f64())
}
