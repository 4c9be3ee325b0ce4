//! `flashslide train` end to end on the bundled samples, a few steps of each stage: the
//! loops, validation, checkpoints, the same seed giving the same weights, the stage-1
//! checkpoint loading into the tile encoder, and the model directory it ends with loading
//! as `run` loads models; then `bench baseline` with that model as its one arm. And the
//! one-image baseline (`--whole-slide-image`), which `run` analyses as a single tile.

mod common;

use common::bundled_config;
use flashslide::backend::cpu::CpuBackend;
use flashslide::model::tile_encoder::TileEncoder;
use flashslide::model::weights::read_safetensors;
use flashslide::model::Model;
use std::path::{Path, PathBuf};
use std::process::Command;

fn train(out: &Path, seed: &str) -> String {
    let _ = std::fs::remove_dir_all(out);
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let args = [
        "--steps",
        "4",
        "--batch",
        "4",
        "--checkpoint-every",
        "2",
        "--seed",
        seed,
        "--slide-steps",
        "2",
        "--crops",
        "2",
        "--quiet",
    ];
    let o = Command::new(env!("CARGO_BIN_EXE_flashslide"))
        .args([
            "train",
            "--cohort",
            samples.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(out.join("train_log.json")).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[test]
fn trains_checkpoints_and_reloads_deterministically() {
    let (a, b, c) = (tmp("train-a"), tmp("train-b"), tmp("train-c"));
    let log: serde_json::Value = serde_json::from_str(&train(&a, "3")).unwrap();
    // Two samples: one trains, one validates.
    assert_eq!(log["train_slides"].as_array().unwrap().len(), 1);
    assert_eq!(log["validation_slides"].as_array().unwrap().len(), 1);
    let checkpoints = log["checkpoints"].as_array().unwrap();
    assert_eq!(
        checkpoints
            .iter()
            .map(|c| c["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![2, 4]
    );
    for c in checkpoints {
        assert!(c["train_loss"].as_f64().unwrap().is_finite());
        assert!(c["validation_loss"].as_f64().unwrap().is_finite());
    }
    let weights = |dir: &Path| {
        let mut bytes = std::fs::read(dir.join("tile_stage.safetensors")).unwrap();
        bytes.extend(std::fs::read(dir.join("model.safetensors")).unwrap());
        bytes
    };
    train(&b, "3");
    assert!(weights(&a) == weights(&b), "the same seed gives the same weights");
    train(&c, "4");
    assert!(weights(&a) != weights(&c), "another seed, other weights");

    // The checkpoint holds the tile encoder under the names a model directory uses.
    let path = a.join("tile_stage.safetensors");
    let host = read_safetensors(&path).unwrap();
    assert_eq!(host["tile_head.weight"].shape, vec![1, 128]);
    let encoder = TileEncoder::new(&CpuBackend, bundled_config(), &host, &path).unwrap();
    let tile = vec![200u8; 256 * 256 * 3];
    let pooled = encoder.forward(&tile, 1, 256).unwrap().pooled;
    let values = pooled.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(values.iter().all(|v| v.is_finite()));

    // Stage 2 ends with a model directory (both stages, bf16) that loads as run loads one.
    let model = Model::load(&a, &CpuBackend).unwrap();
    assert!(model.slide_encoder.is_some());
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("train_log_slide.json")).unwrap()).unwrap();
    let last = log.as_array().unwrap().last().unwrap();
    assert_eq!(last["step"], 2);
    // The validating sample has no lesion: no FROC is made up (train::slide_stage's tests
    // score one that has).
    assert!(last.get("validation_froc").is_none(), "{last}");
    assert!(std::fs::metadata(a.join("model.safetensors")).unwrap().len() < 4 << 20);

    // The benchmark over the same two slides with that model as its only arm.
    let out = tmp("baseline");
    let _ = std::fs::remove_dir_all(&out);
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let o = Command::new(env!("CARGO_BIN_EXE_flashslide"))
        .args(["bench", "baseline", "--device", "cpu", "--quiet", "--cohort"])
        .args([&samples, Path::new("--out"), &out, Path::new("--model"), &a])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = std::fs::read_to_string(out.join("baseline.md")).unwrap();
    assert!(table.contains("| train-a | 0.5 |"), "{table}");
    let arms: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("baseline.json")).unwrap()).unwrap();
    let evaluation = &arms[0]["evaluation"];
    assert_eq!(evaluation["slides"].as_array().unwrap().len(), 2);
    assert!(evaluation["froc"]["score"].as_f64().unwrap() >= 0.0);
    let plot = image::open(out.join("froc.png")).unwrap();
    assert_eq!((plot.width(), plot.height()), (900, 560));
    assert!(out
        .join("train-a")
        .join("synth-s101-000.svs")
        .join("detections.csv")
        .is_file());
}

#[test]
fn trains_the_one_image_baseline_that_run_analyses_as_one_tile() {
    let out = tmp("one-image");
    let _ = std::fs::remove_dir_all(&out);
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let o = Command::new(env!("CARGO_BIN_EXE_flashslide"))
        .args([
            "train",
            "--whole-slide-image",
            "256",
            "--steps",
            "2",
            "--batch",
            "2",
        ])
        .args(["--checkpoint-every", "1", "--quiet", "--cohort"])
        .args([&samples, Path::new("--out"), &out])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("train_log.json")).unwrap()).unwrap();
    assert_eq!(log.as_array().unwrap().len(), 2);
    let model = Model::load(&out, &CpuBackend).unwrap();
    let c = &model.config;
    assert_eq!((c.image_size, c.patch_size), (256, 32));
    assert_eq!(c.slide_encoder.as_ref().unwrap().group_patches, Some(1));
    // The largest sample fits 256 pixels at this resolution, and no coarser one is needed.
    let largest = ["synth-s101-000.svs", "synth-s102-000.svs"]
        .iter()
        .map(|name| {
            let slide = flashslide::slide::Slide::open(samples.join(name)).unwrap();
            let (w, h) = slide.dimensions();
            w.max(h) as f64 * slide.mpp().unwrap().x
        })
        .fold(0.0, f64::max);
    assert!(
        largest / c.mpp <= 256.0 && largest / (c.mpp - 0.01) > 256.0,
        "{}",
        c.mpp
    );

    // `run` analyses each slide as one tile of 8 × 8 patch tokens.
    let results = tmp("one-image-run");
    let _ = std::fs::remove_dir_all(&results);
    let o = Command::new(env!("CARGO_BIN_EXE_flashslide"))
        .args(["run", "--device", "cpu", "--quiet"])
        .args([&samples, Path::new("--out"), &results, Path::new("--model"), &out])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for stem in ["synth-s101-000", "synth-s102-000"] {
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(results.join(format!("{stem}.svs")).join("summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (summary["tissue_tiles"].as_u64(), summary["tokens"].as_u64()),
            (Some(1), Some(64))
        );
    }
}

/// `train --tile-encoder DIR`: the bundled model's tile encoder frozen as a "foundation"
/// encoder, a new head trained on its tokens; the tokens kept a slide a file and taken from
/// there by the next training; the model directory written holds the encoder's weights as
/// they were and loads as `run` loads models; a head whose grouping the encoder cannot give
/// is refused naming the encoder's config.
#[test]
fn a_head_trains_on_a_frozen_encoder_whose_tokens_are_kept() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (samples, encoder) = (root.join("samples"), root.join("models/flashslide-synth-v1"));
    let out = tmp("train-frozen");
    let _ = std::fs::remove_dir_all(&out);
    let train = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flashslide"))
            .args([
                "train",
                "--device",
                "cpu",
                "--quiet",
                "--slide-steps",
                "2",
                "--crops",
                "2",
            ])
            .args(["--checkpoint-every", "2", "--cohort"])
            .args([
                &samples,
                Path::new("--out"),
                &out,
                Path::new("--tile-encoder"),
                &encoder,
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = train(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let kept: Vec<PathBuf> = std::fs::read_dir(out.join("tokens"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let written = |p: &PathBuf| std::fs::metadata(p).unwrap().modified().unwrap();
    let first: Vec<_> = kept.iter().map(written).collect();

    // The encoder's weights unchanged (both bf16), the head new; `run` loads the directory.
    let (theirs, ours) = (
        read_safetensors(&encoder.join("model.safetensors")).unwrap(),
        read_safetensors(&out.join("model.safetensors")).unwrap(),
    );
    assert_eq!(
        ours["blocks.1.mlp.fc2.weight"].data,
        theirs["blocks.1.mlp.fc2.weight"].data
    );
    assert_ne!(
        ours["slide.blocks.0.attn.qkv.weight"].data,
        theirs["slide.blocks.0.attn.qkv.weight"].data
    );
    let model = Model::load(&out, &CpuBackend).unwrap();
    assert!(model.slide_encoder.is_some());

    // Trained again (another seed): the kept tokens are read, not made again.
    let o = train(&["--seed", "9"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(kept.iter().map(written).collect::<Vec<_>>(), first);

    // A head grouping 5 × 5 patch tokens of an encoder with 8 a side.
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(encoder.join("config.json")).unwrap()).unwrap();
    config["slide_encoder"]["group_patches"] = 5.into();
    let path = tmp("head-groups-5.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let o = train(&["--config", path.to_str().unwrap()]);
    let message = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && message.contains("flashslide-synth-v1/config.json"),
        "{message}"
    );
}

/// `train --reuse-features`: after `run --features` with the bundled model, a head of one
/// token a tile on its frozen tile encoder takes every slide's tokens from those files, the
/// very tokens encoding gives; a copy of the slides (another modification time) or a head
/// grouping patch tokens encodes instead.
#[test]
fn a_head_takes_its_tokens_from_run_features_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (samples, encoder) = (root.join("samples"), root.join("models/flashslide-synth-v1"));
    let (results, copies) = (tmp("reuse-run"), tmp("reuse-copies"));
    for dir in [&results, &copies] {
        let _ = std::fs::remove_dir_all(dir);
    }
    let o = Command::new(env!("CARGO_BIN_EXE_flashslide"))
        .args(["run", "--device", "cpu", "--quiet", "--features"])
        .args([&samples, Path::new("--out"), &results])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(encoder.join("config.json")).unwrap()).unwrap();
    config["slide_encoder"]["group_patches"] = serde_json::Value::Null;
    let pooled = tmp("head-pooled.json");
    std::fs::write(&pooled, config.to_string()).unwrap();
    let train = |cohort: &Path, out: &str, config: &Path, reuse: bool| {
        let out = tmp(out);
        let _ = std::fs::remove_dir_all(&out);
        let mut c = Command::new(env!("CARGO_BIN_EXE_flashslide"));
        c.args(["train", "--device", "cpu", "--slide-steps", "1", "--crops", "1"])
            .args(["--cohort".as_ref(), cohort, "--out".as_ref(), &out])
            .args(["--tile-encoder".as_ref(), encoder.as_path()])
            .args(["--config".as_ref(), config]);
        if reuse {
            c.args(["--reuse-features".as_ref(), results.as_path()]);
        }
        let o = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{stderr}");
        (out, stderr)
    };
    let (reused, said) = train(&samples, "reuse-train", &pooled, true);
    assert!(
        said.contains("from features files 2 (of 2 found), encoded 0"),
        "{said}"
    );
    let (encoded, said) = train(&samples, "reuse-train-encoded", &pooled, false);
    assert!(
        said.contains("from features files 0 (of 0 found), encoded 2"),
        "{said}"
    );
    // The kept tokens of both trainings: the same slides, the same values.
    let kept = |dir: &Path| {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("tokens"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                let bytes = std::fs::read(f).unwrap();
                let t = safetensors::SafeTensors::deserialize(&bytes).unwrap();
                let floats = |name: &str| -> Vec<f32> {
                    let data = t.tensor(name).unwrap().data().to_vec();
                    data.chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect()
                };
                (floats("features"), floats("cells"))
            })
            .collect::<Vec<_>>()
    };
    let (a, b) = (kept(&reused), kept(&encoded));
    assert_eq!(a.len(), 2);
    for ((fa, ca), (fb, cb)) in a.iter().zip(&b) {
        // The same tiles, perhaps in another order: compare row by row, by cell.
        let dim = fa.len() / (ca.len() / 2);
        let rows = |f: &[f32], c: &[f32]| {
            let mut r: Vec<(Vec<u32>, Vec<f32>)> = c
                .chunks_exact(2)
                .zip(f.chunks_exact(dim))
                .map(|(c, f)| (vec![c[0] as u32, c[1] as u32], f.to_vec()))
                .collect();
            r.sort_by(|x, y| x.0.cmp(&y.0));
            r
        };
        for ((cell_a, row_a), (cell_b, row_b)) in rows(fa, ca).iter().zip(&rows(fb, cb)) {
            assert_eq!(cell_a, cell_b);
            for (x, y) in row_a.iter().zip(row_b) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{cell_a:?}: {x} vs {y}");
            }
        }
    }

    // Copies of the slides are other files (their times): encoded, not taken.
    std::fs::create_dir_all(&copies).unwrap();
    for e in std::fs::read_dir(&samples).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, copies.join(p.file_name().unwrap())).unwrap();
    }
    let (_, said) = train(&copies, "reuse-train-copies", &pooled, true);
    assert!(
        said.contains("from features files 0 (of 2 found), encoded 2"),
        "{said}"
    );
    // A head grouping patch tokens cannot take pooled features.
    let (_, said) = train(
        &samples,
        "reuse-train-grouped",
        &encoder.join("config.json"),
        true,
    );
    assert!(
        said.contains("from features files 0 (of 2 found), encoded 2"),
        "{said}"
    );
}
