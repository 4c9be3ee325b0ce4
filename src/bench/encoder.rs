//! Tile-encoder throughput on the CPU: tiles per second for a model configuration, with
//! random weights (speed does not depend on their values) and random tiles.

use crate::backend::cpu::CpuBackend;
use crate::model::config::ModelConfig;
use crate::model::tile_encoder::TileEncoder;
use crate::model::ModelError;
use std::time::Instant;

/// Encodes `batches` batches of `batch` random tiles after one warm-up batch; tiles per
/// second over the timed batches.
pub fn tiles_per_second(config: &ModelConfig, batch: usize, batches: usize) -> Result<f64, ModelError> {
    let encoder = TileEncoder::random(&CpuBackend, config.clone())?;
    let s = config.image_size;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let tiles: Vec<u8> = (0..batch * s * s * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    encoder.forward(&tiles, batch, s)?;
    let start = Instant::now();
    for _ in 0..batches.max(1) {
        encoder.forward(&tiles, batch, s)?;
    }
    Ok((batch * batches.max(1)) as f64 / start.elapsed().as_secs_f64())
}
