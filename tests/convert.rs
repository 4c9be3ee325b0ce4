//! `flashslide convert` on every foundation encoder's layout, and its refusals.
//!
//! Each fixture in tests/fixtures/encoders (tools/make_encoder_fixtures.py, run where timm
//! and transformers are installed) is a recipe: the vendor checkpoint's tensor names and
//! shapes, value ranges for a generator repeated here bit for bit, the config files and the
//! README's convert arguments, and the reference library's pooled features (float64) for
//! generated tiles. The test writes the checkpoint, converts it with the binary, encodes the
//! tiles on the CPU and compares.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{flashslide, fresh_dir};
use flashslide::backend::{cpu::CpuBackend, Backend};
use flashslide::model::Model;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The pooled features' largest difference from the reference, relative to their largest
/// magnitude.
const PARITY: f64 = 1e-5;

#[derive(Deserialize)]
struct Fixture {
    name: String,
    dtype: String,
    files: HashMap<String, serde_json::Value>,
    convert: Vec<String>,
    /// (name, shape, lo, hi)
    tensors: Vec<(String, Vec<usize>, f64, f64)>,
    /// (count, side)
    images: (usize, usize),
    feature_dim: usize,
    expected: Vec<Vec<f64>>,
}

// The generator of tools/make_encoder_fixtures.py.
fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01B3)
    })
}

fn sequence(name: &str, n: usize) -> impl Iterator<Item = u64> {
    let key = fnv1a64(name);
    (1..=n as u64).map(move |i| {
        let mut z = key.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

fn values(name: &str, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    let (lo, hi) = (lo as f32, hi as f32);
    let span = hi - lo;
    sequence(name, n)
        .map(|z| lo + span * ((z >> 40) as f32 / (1u32 << 24) as f32))
        .collect()
}

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/encoders")
        .join(name)
}

/// Writes the fixture's checkpoint (safetensors) and config files into `dir`; returns the
/// checkpoint's path.
fn write_checkpoint(f: &Fixture, dir: &Path) -> PathBuf {
    let dtype = match f.dtype.as_str() {
        "float32" => DType::F32,
        "bfloat16" => DType::BF16,
        "float16" => DType::F16,
        other => panic!("dtype {other}"),
    };
    let tensors: HashMap<String, Tensor> = f
        .tensors
        .iter()
        .map(|(name, shape, lo, hi)| {
            let v = values(name, shape.iter().product::<usize>().max(1), *lo, *hi);
            let t = Tensor::from_vec(v, shape.as_slice(), &Device::Cpu)
                .and_then(|t| t.to_dtype(dtype))
                .unwrap();
            (name.clone(), t)
        })
        .collect();
    let path = dir.join("checkpoint.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    for (file, content) in &f.files {
        std::fs::write(dir.join(file), serde_json::to_string(content).unwrap()).unwrap();
    }
    path
}

fn convert_and_compare(name: &str) {
    let f: Fixture =
        serde_json::from_str(&std::fs::read_to_string(fixture_path(&format!("{name}.json"))).unwrap())
            .unwrap();
    let dir = fresh_dir(&format!("convert-{}", f.name));
    let checkpoint = write_checkpoint(&f, &dir);
    let out = dir.join("model");
    let mut args = vec![
        "convert".to_string(),
        checkpoint.display().to_string(),
        out.display().to_string(),
    ];
    args.extend(
        f.convert
            .iter()
            .map(|a| a.replace("{dir}", &dir.display().to_string())),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = flashslide(&args);
    assert_eq!(code, 0, "{name}: convert failed:\n{stdout}\n{stderr}");
    let model = Model::load(&out, &CpuBackend).unwrap();
    assert_eq!(model.config.feature_dim(), f.feature_dim, "{name}: feature width");
    let source = model.config.source.as_ref().expect("the source is recorded");
    assert_eq!(source.sha256, sha256(&checkpoint), "{name}: checkpoint hash");
    let (count, side) = f.images;
    let rgb: Vec<u8> = sequence("images", count * side * side * 3)
        .map(|z| (z >> 56) as u8)
        .collect();
    let pooled = CpuBackend
        .download(&model.tile_encoder.forward(&rgb, count, side).unwrap().pooled)
        .unwrap();
    let want: Vec<f64> = f.expected.concat();
    assert_eq!(pooled.len(), want.len(), "{name}: pooled size");
    let largest = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    let diff = pooled
        .iter()
        .zip(&want)
        .fold(0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
    eprintln!(
        "{name}: {count} tiles, {}-d features, max |Δ| {diff:.2e}, relative {:.2e}; {}",
        f.feature_dim,
        diff / largest,
        stdout.lines().next().unwrap_or("")
    );
    assert!(
        diff / largest <= PARITY,
        "{name}: max |Δ| {diff:.2e} of {largest:.2e}"
    );
}

fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn uni() {
    convert_and_compare("uni");
}

#[test]
fn uni2_h() {
    convert_and_compare("uni2-h");
}

#[test]
fn virchow2() {
    convert_and_compare("virchow2");
}

#[test]
fn h_optimus_0() {
    convert_and_compare("h-optimus-0");
}

#[test]
fn prov_gigapath() {
    convert_and_compare("prov-gigapath");
}

#[test]
fn conch_vision_trunk() {
    convert_and_compare("conch");
}

#[test]
fn phikon() {
    convert_and_compare("phikon");
}

/// The small timm ViT of tests/fixtures/timm and the arguments that describe it.
fn small_vit() -> (HashMap<String, Tensor>, Vec<&'static str>) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm/vit-s16-cls.model.safetensors");
    let tensors = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let args = vec![
        "--arg",
        "img_size=64",
        "--arg",
        "patch_size=16",
        "--arg",
        "embed_dim=96",
        "--arg",
        "depth=2",
        "--arg",
        "num_heads=3",
        "--mean",
        "0.485,0.456,0.406",
        "--std",
        "0.229,0.224,0.225",
        "--mpp",
        "0.5",
    ];
    (tensors, args)
}

fn convert_small(dir: &Path, tensors: &HashMap<String, Tensor>, extra: &[&str]) -> (i32, String, String) {
    let checkpoint = dir.join("checkpoint.safetensors");
    candle_core::safetensors::save(tensors, &checkpoint).unwrap();
    let out = dir.join("model");
    let (c, o) = (checkpoint.display().to_string(), out.display().to_string());
    let mut args = vec!["convert", c.as_str(), o.as_str()];
    args.extend(small_vit().1);
    args.extend(extra);
    flashslide(&args)
}

#[test]
fn the_small_vit_converts_and_matches_timm() {
    let dir = fresh_dir("convert-small");
    let (tensors, _) = small_vit();
    let (code, stdout, stderr) = convert_small(&dir, &tensors, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let model = Model::load(&dir.join("model"), &CpuBackend).unwrap();
    let io = candle_core::safetensors::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm/vit-s16-cls.io.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let images = io["images"].flatten_all().unwrap().to_vec1::<u8>().unwrap();
    let pooled = CpuBackend
        .download(&model.tile_encoder.forward(&images, 3, 64).unwrap().pooled)
        .unwrap();
    let want = io["pooled"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff = pooled
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-4, "max |Δ| {diff}");
}

#[test]
fn renamed_missing_and_extra_tensors_are_each_named() {
    let dir = fresh_dir("convert-mismatch");
    let (mut tensors, _) = small_vit();
    let renamed = tensors.remove("blocks.0.attn.proj.weight").unwrap();
    tensors.insert("blocks.0.attn.project.weight".into(), renamed);
    tensors.remove("blocks.1.norm2.bias").unwrap();
    tensors.insert(
        "extra.scale".into(),
        Tensor::ones(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let (code, _, stderr) = convert_small(&dir, &tensors, &[]);
    assert_ne!(code, 0);
    for name in [
        "blocks.0.attn.proj.weight",
        "blocks.0.attn.project.weight",
        "blocks.1.norm2.bias",
        "extra.scale",
    ] {
        assert!(stderr.contains(name), "{name} not named:\n{stderr}");
    }
    assert!(
        stderr.contains("checkpoint.safetensors"),
        "the file is not named:\n{stderr}"
    );
    assert!(
        !dir.join("model/config.json").exists(),
        "a refused conversion left a model"
    );
}

#[test]
fn wrong_shapes_and_architecture_are_refused_with_hints() {
    let dir = fresh_dir("convert-shapes");
    let (tensors, _) = small_vit();
    // Told 4 blocks and layer scale the checkpoint does not have.
    let (code, _, stderr) = convert_small(&dir, &tensors, &["--arg", "depth=4", "--arg", "init_values=1e-5"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("blocks.[2-3].mlp.fc2.weight") && stderr.contains("depth=2"),
        "{stderr}"
    );
    assert!(
        stderr.contains("blocks.[0-3].ls1.gamma") && stderr.contains("no layer scale"),
        "{stderr}"
    );
    // A typo in an argument, an unknown name, a pooling nobody asked for.
    for (extra, says) in [
        (&["--arg", "embed_dims=96"][..], "embed_dims"),
        (
            &["--arch", "vit_base_patch16_siglip_224"][..],
            "vit_base_patch16_siglip_224",
        ),
        (&["--arg", "global_pool=\"\""][..], "--pool"),
    ] {
        let (code, _, stderr) = convert_small(&dir, &tensors, extra);
        assert_ne!(code, 0, "{extra:?} accepted");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
    }
}

#[test]
fn mean_std_and_mpp_are_never_defaulted() {
    let dir = fresh_dir("convert-normalisation");
    let (tensors, _) = small_vit();
    let checkpoint = dir.join("checkpoint.safetensors");
    candle_core::safetensors::save(&tensors, &checkpoint).unwrap();
    let c = checkpoint.display().to_string();
    let o = dir.join("model").display().to_string();
    let (code, _, stderr) = flashslide(&[
        "convert",
        &c,
        &o,
        "--arch",
        "vit_small_patch16_224",
        "--mpp",
        "0.5",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--mean"), "{stderr}");
    let (code, _, stderr) = flashslide(&[
        "convert",
        &c,
        &o,
        "--arch",
        "vit_small_patch16_224",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.5,0.5,0.5",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--mpp"), "{stderr}");
}

#[test]
fn hostile_checkpoints_are_refused_by_name() {
    let dir = fresh_dir("convert-hostile");
    let (tensors, args) = small_vit();
    let good = dir.join("good.safetensors");
    candle_core::safetensors::save(&tensors, &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.bin", Vec::new()),
        (
            "noise.bin",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("truncated.safetensors", bytes[..bytes.len() / 2].to_vec()),
        // A header that claims more than the file holds.
        ("lying-header.safetensors", {
            let mut b = bytes.clone();
            b[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
            b
        }),
        ("truncated.pth", {
            let mut b = b"PK\x03\x04".to_vec();
            b.extend(&bytes[..100]);
            b
        }),
        ("lying-sizes.pth", lying_pytorch_checkpoint()),
    ];
    for (name, content) in cases {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        let p = path.display().to_string();
        let o = dir.join("model").display().to_string();
        let mut a = vec!["convert", p.as_str(), o.as_str()];
        a.extend(&args);
        let (code, _, stderr) = flashslide(&a);
        assert!(code != 0 && code != 101, "{name}: exit {code}\n{stderr}");
        assert!(stderr.contains(name), "{name} not named:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        eprintln!("{name}: {}", stderr.trim());
    }
}

/// A PyTorch zip checkpoint, built byte by byte, whose one tensor claims 40,000 × 50,000
/// floats (8 GB) over a storage of 16 bytes.
fn lying_pytorch_checkpoint() -> Vec<u8> {
    let unicode = |s: &str| {
        let mut b = vec![b'X'];
        b.extend((s.len() as u32).to_le_bytes());
        b.extend(s.as_bytes());
        b
    };
    let int = |v: i32| {
        let mut b = vec![b'J'];
        b.extend(v.to_le_bytes());
        b
    };
    let mut p = vec![0x80, 2, b'}'];
    p.extend(unicode("w"));
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    p.push(b'(');
    p.extend(unicode("storage"));
    p.extend(b"ctorch\nFloatStorage\n");
    p.extend(unicode("0"));
    p.extend(unicode("cpu"));
    p.extend(int(2_000_000_000));
    p.extend(b"tQ");
    p.extend(int(0));
    p.push(b'(');
    p.extend(int(40_000));
    p.extend(int(50_000));
    p.extend(b"t(");
    p.extend(int(50_000));
    p.extend(int(1));
    p.extend(b"t\x89ccollections\nOrderedDict\n)RtRs.");
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, content) in [("archive/data.pkl", p), ("archive/data/0", vec![0u8; 16])] {
        zip.start_file(name, stored).unwrap();
        std::io::Write::write_all(&mut zip, &content).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

#[test]
fn a_pytorch_training_checkpoint_converts() {
    // torch.save({"state_dict": {"module.…": …}, "epoch": 7}) of the small timm ViT.
    let checkpoint =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm/vit-s16-cls.pytorch_model.bin");
    let dir = fresh_dir("convert-pytorch");
    let out = dir.join("model");
    let (c, o) = (checkpoint.display().to_string(), out.display().to_string());
    let mut args = vec!["convert", c.as_str(), o.as_str()];
    args.extend(small_vit().1);
    let (code, stdout, stderr) = flashslide(&args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("module."),
        "the stripped prefix is reported: {stdout}"
    );
    let converted = candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    let (original, _) = small_vit();
    assert_eq!(converted.len(), original.len());
    for (name, t) in &original {
        let a = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = converted[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn a_folder_of_other_files_is_not_overwritten() {
    // Converting a hub download in place would replace its config.json.
    let dir = fresh_dir("convert-in-place");
    let (tensors, args) = small_vit();
    let checkpoint = dir.join("pytorch_model.safetensors");
    candle_core::safetensors::save(&tensors, &checkpoint).unwrap();
    let hub_config = r#"{"architecture": "vit_small_patch16_224"}"#;
    std::fs::write(dir.join("config.json"), hub_config).unwrap();
    let (c, o) = (checkpoint.display().to_string(), dir.display().to_string());
    let mut a = vec!["convert", c.as_str(), o.as_str()];
    a.extend(&args);
    let (code, _, stderr) = flashslide(&a);
    assert_ne!(code, 0);
    assert!(stderr.contains("no conversion wrote"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("config.json")).unwrap(),
        hub_config
    );
    // An earlier conversion is replaced.
    let out = dir.join("model").display().to_string();
    let mut a = vec!["convert", c.as_str(), out.as_str()];
    a.extend(&args);
    assert_eq!(flashslide(&a).0, 0);
    assert_eq!(flashslide(&a).0, 0, "a second conversion into the same folder");
}
