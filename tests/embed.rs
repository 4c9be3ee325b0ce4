//! `flashslide embed` end to end, with a small timm-made model (the parity fixtures).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A model directory made once from the fixtures (tests run in parallel).
fn model_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("embed-model");
        std::fs::create_dir_all(&dir).unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm");
        std::fs::copy(fixtures.join("vit-s16-cls.config.json"), dir.join("config.json")).unwrap();
        std::fs::copy(
            fixtures.join("vit-s16-cls.model.safetensors"),
            dir.join("model.safetensors"),
        )
        .unwrap();
        dir
    })
    .clone()
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flashslide"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn embeds_every_tissue_tile_of_a_slide_and_a_single_image() {
    let model = model_dir();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sample.features.safetensors");
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/synth-s101-000.svs");
    let (code, err) = run(&[
        "embed",
        sample,
        "--model",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let t = candle_core::safetensors::load(&out, &candle_core::Device::Cpu).unwrap();
    let (n, d) = t["features"].dims2().unwrap();
    assert_eq!(d, 96);
    assert_eq!(t["coords"].dims2().unwrap(), (n, 2));
    assert!(n > 500, "{n} tiles");
    let coords = t["coords"].to_vec2::<i64>().unwrap();
    assert!(
        coords
            .iter()
            .all(|c| c[0] % 64 == 0 && c[1] % 64 == 0 && c[0] < 5000 && c[1] < 4000),
        "tile corners on the 64-px grid"
    );
    assert!(t["features"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|v| v.is_finite()));
    // The header carries the metadata MIL code needs.
    let bytes = std::fs::read(&out).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    let meta = &header["__metadata__"];
    assert_eq!(meta["tile_size_level0"], "64");
    assert_eq!(meta["mpp"], "0.5");
    assert_eq!(meta["model"], "vit-s16-cls");
    assert_eq!(meta["model_sha256"].as_str().unwrap().len(), 64);
    // The tile encoder's own hash, and the slide's identity (for `train --reuse-features`).
    assert_eq!(meta["tile_encoder_sha256"].as_str().unwrap().len(), 64);
    assert_ne!(meta["tile_encoder_sha256"], meta["model_sha256"]);
    let print = flashslide::slide::fingerprint::fingerprint(Path::new(sample)).unwrap();
    assert_eq!(meta["slide_size"], print.size.to_string().as_str());
    assert_eq!(meta["slide_head_tail_sha256"], print.head_tail_sha256.as_str());

    // One image of the model's input size: one feature vector.
    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tile64.png");
    image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 128]))
        .save(&png)
        .unwrap();
    let one = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tile64.safetensors");
    let (code, err) = run(&[
        "embed",
        png.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "-o",
        one.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let t = candle_core::safetensors::load(&one, &candle_core::Device::Cpu).unwrap();
    assert_eq!(t["features"].dims2().unwrap(), (1, 96));
}

#[test]
fn bad_model_or_image_is_a_clear_error() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("never.safetensors");
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/synth-s101-000.svs");
    let (code, err) = run(&[
        "embed",
        sample,
        "--model",
        "/nonexistent-model",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent-model/config.json"), "{err}");
    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tile10.png");
    image::RgbImage::new(10, 10).save(&png).unwrap();
    let (code, err) = run(&[
        "embed",
        png.to_str().unwrap(),
        "--model",
        model_dir().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("multiple of 16"), "{err}");
    assert!(!out.exists());
}

/// Without the `hdf5` feature, an .h5 output is refused before any work, saying how to get it.
#[cfg(not(feature = "hdf5"))]
#[test]
fn hdf5_output_without_the_feature_says_how_to_build_it() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("never.h5");
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/synth-s101-000.svs");
    let model = model_dir();
    let (code, err) = run(&[
        "embed",
        sample,
        "--model",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("never.h5") && err.contains("--features hdf5"),
        "{err}"
    );
    assert!(!out.exists());
}
