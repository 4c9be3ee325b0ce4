//! A model directory holding both stages (the bundled architecture with random weights):
//! loading, the whole forward pass from tiles to per-token logits, and clear errors.

mod common;

use common::{bundled_config, write_random_model};
use flashslide::backend::{cpu::CpuBackend, Backend};
use flashslide::model::config::ModelConfig;
use flashslide::model::{Model, ModelError};
use std::path::{Path, PathBuf};

/// A fresh model directory under the test target dir.
fn write_model(name: &str, config: &ModelConfig, omit: Option<&str>) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    write_random_model(&dir, config, omit);
    dir
}

#[test]
fn both_stages_run_from_tiles_to_token_logits() {
    let config = bundled_config();
    let dir = write_model("model-both-stages", &config, None);
    let model = Model::load(&dir, &CpuBackend).unwrap();
    assert_eq!(model.hash.len(), 64);
    let slide = model.slide_encoder.as_ref().expect("config has a slide encoder");
    let (tiles, side) = (3usize, config.image_size);
    let rgb: Vec<u8> = (0..tiles * side * side * 3)
        .map(|i| (i * 7919 % 251) as u8)
        .collect();
    let encoded = model.tile_encoder.forward(&rgb, tiles, side).unwrap();
    let tile_positions = [[0u32, 0], [0, 1], [5, 2]];
    let (features, positions) = slide
        .tokens_from_tiles(&config, &encoded, &tile_positions)
        .unwrap();
    // 32-px patches in 2 × 2 groups: 64-px tokens, 16 per 256-px tile.
    assert_eq!(positions.len(), tiles * 16);
    assert_eq!(CpuBackend.shape(&features), (tiles * 16, config.width));
    assert_eq!(positions[2 * 16], [20.0, 8.0], "tile (5, 2), first group");
    let out = slide.forward(&features, &positions).unwrap();
    assert_eq!(out.token_logits.len(), tiles * 16);
    assert!(out.token_logits.iter().all(|x| x.is_finite()) && out.slide_logit.is_finite());
}

#[test]
fn a_missing_tensor_or_inconsistent_config_is_a_clear_error() {
    let config = bundled_config();
    let dir = write_model(
        "model-missing-tensor",
        &config,
        Some("slide.blocks.1.mlp.fc2.weight"),
    );
    match Model::load(&dir, &CpuBackend) {
        Err(e @ ModelError::Weights { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("model.safetensors") && msg.contains("slide.blocks.1.mlp.fc2.weight"),
                "{msg}"
            );
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a model with a missing tensor loaded"),
    }
    let mut bad = config.clone();
    bad.slide_encoder.as_mut().unwrap().input_dim = 64;
    let dir = write_model("model-bad-config", &config, None);
    std::fs::write(dir.join("config.json"), serde_json::to_string(&bad).unwrap()).unwrap();
    let msg = Model::load(&dir, &CpuBackend).err().unwrap().to_string();
    assert!(msg.contains("config.json") && msg.contains("64-wide"), "{msg}");
    let mut bad = config;
    bad.slide_encoder.as_mut().unwrap().group_patches = Some(3);
    std::fs::write(dir.join("config.json"), serde_json::to_string(&bad).unwrap()).unwrap();
    let msg = Model::load(&dir, &CpuBackend).err().unwrap().to_string();
    assert!(msg.contains("groups of 3"), "{msg}");
}

/// The error `config` (written over a good model directory's config.json) gives at load.
fn load_error(name: &str, edit: impl Fn(&mut serde_json::Value)) -> String {
    let dir = write_model(name, &bundled_config(), None);
    let mut value = serde_json::to_value(bundled_config()).unwrap();
    edit(&mut value);
    std::fs::write(dir.join("config.json"), value.to_string()).unwrap();
    match Model::load(&dir, &CpuBackend) {
        Ok(_) => panic!("{name}: a hostile config loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn hostile_configs_are_refused_before_anything_is_allocated_for_them() {
    use serde_json::json;
    type Edit = dyn Fn(&mut serde_json::Value);
    let cases: [(&str, &Edit, &str); 10] = [
        (
            "depth-1e9",
            &|v| v["depth"] = json!(1_000_000_000u64),
            "depth 1000000000",
        ),
        (
            "slide-depth-1e8",
            &|v| v["slide_encoder"]["depth"] = json!(100_000_000u64),
            "depth 100000000",
        ),
        // Within the limits, but more parameters than the small weight file has bytes.
        ("depth-1000", &|v| v["depth"] = json!(1000), "holds only"),
        (
            "slide-depth-900",
            &|v| v["slide_encoder"]["depth"] = json!(900),
            "holds only",
        ),
        ("width-1e6", &|v| v["width"] = json!(1_000_000), "width 1000000"),
        (
            "mpp-2-25",
            &|v| v["mpp"] = json!(33554432.0),
            "not a plausible pixel size",
        ),
        ("mpp-0", &|v| v["mpp"] = json!(0.0), "not a plausible pixel size"),
        ("norm-eps-negative", &|v| v["norm_eps"] = json!(-1e-6), "norm_eps"),
        (
            "slide-norm-eps-0",
            &|v| v["slide_encoder"]["norm_eps"] = json!(0.0),
            "norm_eps",
        ),
        ("image-size-0", &|v| v["image_size"] = json!(0), "image_size 0"),
    ];
    for (name, edit, says) in cases {
        let msg = load_error(&format!("model-hostile-{name}"), edit);
        assert!(msg.contains("config.json") && msg.contains(says), "{name}: {msg}");
    }
}

#[test]
fn non_finite_weights_fail_at_load_naming_the_tensor() {
    use candle_core::{Device, Tensor};
    let dir = write_model("model-nan-weight", &bundled_config(), None);
    let file = dir.join("model.safetensors");
    for (bad, name) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let mut tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
        let t = &tensors["blocks.0.attn.proj.weight"];
        let mut values = t
            .flatten_all()
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        values[17] = bad;
        let poisoned = Tensor::from_vec(values, t.dims(), &Device::Cpu)
            .unwrap()
            .to_dtype(t.dtype())
            .unwrap();
        tensors.insert("blocks.0.attn.proj.weight".into(), poisoned);
        candle_core::safetensors::save(&tensors, &file).unwrap();
        let msg = Model::load(&dir, &CpuBackend)
            .err()
            .expect("poisoned weights loaded")
            .to_string();
        assert!(
            msg.contains("model.safetensors")
                && msg.contains("blocks.0.attn.proj.weight")
                && msg.contains(name),
            "{msg}"
        );
    }
}

/// Weights that are finite but overflow f32 on any tile: stage 1 gives infinities and NaN.
#[test]
fn non_finite_features_fail_the_slide_with_a_reason() {
    use candle_core::{Device, Tensor};
    use flashslide::analysis::pipeline::{analyse_planned, plan_slide, PipelineError, PipelineOptions};
    use flashslide::slide::Slide;
    let config = bundled_config();
    let dir = write_model("model-overflowing", &config, None);
    let file = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let t = &tensors["patch_embed.proj.weight"];
    let huge = Tensor::full(3.0e38f32, t.dims(), &Device::Cpu)
        .unwrap()
        .to_dtype(t.dtype())
        .unwrap();
    tensors.insert("patch_embed.proj.weight".into(), huge);
    candle_core::safetensors::save(&tensors, &file).unwrap();
    let model = Model::load(&dir, &CpuBackend).unwrap();
    let slide = Slide::open(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/synth-s101-000.svs")).unwrap();
    let options = PipelineOptions::default();
    let mpp = slide.mpp().unwrap().x;
    let planned = plan_slide(
        &slide,
        mpp,
        model.config.mpp,
        model.config.image_size as u32,
        &options,
        &|_| {},
    )
    .unwrap();
    assert!(!planned.plan.tiles.is_empty());
    match analyse_planned(&slide, planned, &model, &options, &|_, _| {}) {
        Err(e @ PipelineError::NonFinite(_)) => assert!(e.to_string().contains("stage 1"), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("NaN probabilities were reported as a result"),
    }
}
