//! HDF5 features (cargo feature `hdf5`): `run --features` and `embed -o *.h5` write the
//! layout CLAM, Trident and TITAN read, with the same numbers as the safetensors file.
//! CI runs this with `cargo test --release --features hdf5 --test features_hdf5`.
#![cfg(feature = "hdf5")]

mod common;

use common::{bundled_config, write_random_model};
use hdf5::types::VarLenUnicode;
use std::path::{Path, PathBuf};
use std::process::Command;

fn flashslide(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_flashslide"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/synth-s101-000.svs")
}

/// (features [N·D], D, coords [N·2]) of a safetensors features file.
fn safetensors_features(path: &Path) -> (Vec<f32>, usize, Vec<i64>) {
    let t = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    let d = t["features"].dims2().unwrap().1;
    let f = t["features"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let c = t["coords"].flatten_all().unwrap().to_vec1::<i64>().unwrap();
    (f, d, c)
}

/// Checks features.h5 against the safetensors file beside it and returns `coords`' attributes.
fn check_against_safetensors(h5: &Path, safetensors: &Path) -> hdf5::Dataset {
    let (features, dim, coords) = safetensors_features(safetensors);
    let file = hdf5::File::open(h5).unwrap();
    let f = file.dataset("features").unwrap();
    let c = file.dataset("coords").unwrap();
    assert_eq!(f.shape(), vec![coords.len() / 2, dim]);
    assert_eq!(c.shape(), vec![coords.len() / 2, 2]);
    assert!(coords.len() > 100, "{} tiles", coords.len() / 2);
    assert_eq!(f.read_raw::<f32>().unwrap(), features);
    assert_eq!(c.read_raw::<i64>().unwrap(), coords);
    c
}

fn attr_i64(d: &hdf5::Dataset, name: &str) -> i64 {
    d.attr(name).unwrap().read_scalar::<i64>().unwrap()
}

#[test]
fn run_writes_features_h5_beside_the_safetensors() {
    let model = Path::new(env!("CARGO_TARGET_TMPDIR")).join("h5-model");
    write_random_model(&model, &bundled_config(), None);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("h5-run");
    let _ = std::fs::remove_dir_all(&out);
    flashslide(&[
        "run",
        sample().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--device",
        "cpu",
        "--features",
        "--quiet",
    ]);
    let dir = out.join("synth-s101-000.svs");
    let coords = check_against_safetensors(&dir.join("features.h5"), &dir.join("features.safetensors"));
    // The bundled architecture: 256-px tiles at 0.5 µm on a 0.5 µm slide.
    assert_eq!(attr_i64(&coords, "patch_size_level0"), 256);
    assert_eq!(attr_i64(&coords, "patch_size"), 256);
    let magnification = |name: &str| coords.attr(name).unwrap().read_scalar::<f64>().unwrap();
    assert_eq!(magnification("level0_magnification"), 20.0);
    assert_eq!(magnification("target_magnification"), 20.0);
    let model_name: VarLenUnicode = coords.attr("model").unwrap().read_scalar().unwrap();
    assert_eq!(model_name.as_str(), "flashslide-synth-v1");
    let summary = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    assert!(summary.contains("\"features.h5\""), "summary lists features.h5");
    check_with_h5py(&dir.join("features.h5"));
}

#[test]
fn embed_writes_hdf5_for_an_h5_output() {
    let model = Path::new(env!("CARGO_TARGET_TMPDIR")).join("h5-embed-model");
    write_random_model(&model, &bundled_config(), None);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (h5, st) = (dir.join("embed.h5"), dir.join("embed.safetensors"));
    let (sample, model) = (sample(), model.to_str().unwrap().to_string());
    for out in [&h5, &st] {
        let out = out.to_str().unwrap();
        let sample = sample.to_str().unwrap();
        flashslide(&[
            "embed", sample, "--model", &model, "--device", "cpu", "--quiet", "-o", out,
        ]);
    }
    let coords = check_against_safetensors(&h5, &st);
    assert_eq!(attr_i64(&coords, "patch_size_level0"), 256);
}

/// What the Python readers see, through h5py (as CLAM and Trident open the file), when h5py
/// is installed (CI installs it and sets FLASHSLIDE_REQUIRE_H5PY=1).
fn check_with_h5py(path: &Path) {
    let script = "import sys, h5py\n\
        with h5py.File(sys.argv[1], 'r') as f:\n\
        \x20   n, d = f['features'].shape\n\
        \x20   assert f['coords'].shape == (n, 2) and f['coords'].dtype == 'int64'\n\
        \x20   assert f['features'].dtype == 'float32'\n\
        \x20   print(n, d, int(f['coords'].attrs['patch_size_level0']))\n";
    let out = Command::new("python3")
        .args(["-c", script, path.to_str().unwrap()])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(text.trim().ends_with(" 256"), "h5py read: {text}");
        }
        Ok(o) if std::env::var_os("FLASHSLIDE_REQUIRE_H5PY").is_none() => {
            eprintln!(
                "SKIPPED h5py check: {}",
                String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")
            );
        }
        other => panic!("h5py could not read {}: {other:?}", path.display()),
    }
}
