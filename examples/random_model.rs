//! Writes a model directory with random weights (bf16) for speed benchmarks, where weights
//! do not matter: `cargo run --release --example random_model CONFIG.json OUT_DIR`. The
//! configuration needs a slide encoder (`run` uses both stages).

use candle_core::{DType, Device, Tensor};
use flashslide::model::config::ModelConfig;
use std::collections::HashMap;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, config, out] = &args[..] else {
        anyhow::bail!("usage: random_model CONFIG.json OUT_DIR");
    };
    let config: ModelConfig = serde_json::from_str(&std::fs::read_to_string(config)?)?;
    let slide = config
        .slide_encoder
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the configuration has no slide encoder"))?;
    let mut shapes = flashslide::model::tile_encoder::expected_shapes(&config);
    shapes.extend(slide.expected_shapes());
    let dir = std::path::Path::new(out);
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    let mut tensors = HashMap::new();
    for (i, (name, shape)) in shapes.into_iter().enumerate() {
        let count: usize = shape.iter().product();
        // A hash, not an RNG: the same weights every time, at about timm's initial scale.
        let values: Vec<f32> = (0..count)
            .map(|j| ((i * 1_000_003 + j).wrapping_mul(2_654_435_761) % 10_007) as f32 / 10_007.0 - 0.5)
            .map(|v| v * 0.04)
            .collect();
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(DType::BF16)?;
        tensors.insert(name, t);
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    Ok(())
}
