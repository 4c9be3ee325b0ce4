//! What a new user meets first: an input with no slides, a usage error on a machine without
//! a GPU, the bundled model used from any folder, and its notice on every result.

mod common;

use common::{flashslide, fresh_dir};
use std::path::Path;

/// `flashslide run INPUT --out OUT --device cpu --quiet`, then `extra`: (exit code, stderr).
fn run_cpu(input: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let args = [
        "run",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
    ];
    let (code, _, stderr) = flashslide(&[&args[..], extra].concat());
    (code, stderr)
}

/// OUT/FOLDER/summary.json.
fn summary(out: &Path, folder: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join(folder).join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_folder_without_slides_exits_2_saying_what_was_skipped() {
    let dir = fresh_dir("new-user-no-slides");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    // Two files that start as DICOM (the preamble's "DICM") but hold no whole-slide image, a
    // MIRAX index without its folder and a note: none is a slide.
    let mut dicom = vec![0u8; 128];
    dicom.extend_from_slice(b"DICM");
    dicom.extend_from_slice(&[0; 64]);
    std::fs::write(input.join("level-0.bin"), &dicom).unwrap();
    std::fs::write(input.join("level-1.dcm"), &dicom).unwrap();
    std::fs::write(input.join("slide.mrxs"), b"[GENERAL]\n").unwrap();
    std::fs::write(input.join("notes.txt"), b"hello").unwrap();
    let out = dir.join("out");
    let (code, _, stderr) = flashslide(&["run", input.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no slides found under"), "{stderr}");
    assert!(
        stderr.contains("2 DICOM files that are not whole-slide images: skipped"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "1 MIRAX .mrxs file without its folder of the same name (Slidedat.ini and data): skipped"
        ),
        "{stderr}"
    );
    // Said before anything about the device, and nothing written.
    assert!(!stderr.contains("CPU") && !stderr.contains("CUDA"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn the_bundled_model_works_from_any_folder_and_says_what_it_is() {
    let dir = fresh_dir("new-user-elsewhere");
    let slide = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/synth-s101-000.svs");
    let out = dir.join("out");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_flashslide"))
        .args(["run", slide, "--out", out.to_str().unwrap(), "--device", "cpu"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("trained on synthetic H&E slides only"),
        "{stderr}"
    );
    let summary = std::fs::read_to_string(out.join("synth-s101-000.svs/summary.json")).unwrap();
    assert!(
        summary.contains("\"model_notice\": \"trained on synthetic"),
        "{summary}"
    );
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        index.contains("trained on synthetic H&amp;E slides only"),
        "{index}"
    );
    // The built-in copy is the checkout's model, byte for byte: the same hash.
    let on_disk = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/flashslide-synth-v1/model.safetensors"
    );
    let hash = {
        use sha2::Digest;
        sha2::Sha256::digest(std::fs::read(on_disk).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert!(summary.contains(&hash), "{summary}");
    // embed takes the bundled model too.
    let features = dir.join("f.safetensors");
    let (code, _, stderr) = flashslide(&[
        "embed",
        slide,
        "-o",
        features.to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(features.is_file());
}

/// A mixed batch: one slide whose file states no usable MPP takes its size from a Trident
/// style `wsi,mpp` table; the other keeps its own.
#[test]
fn an_mpp_table_gives_each_listed_slide_its_pixel_size() {
    let dir = fresh_dir("new-user-mpp-csv");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/samples");
    let data = std::fs::read(format!("{samples}/synth-s101-000.svs")).unwrap();
    let at = data.windows(12).position(|w| w == b"MPP = 0.5000").unwrap();
    let mut patched = data.clone();
    patched[at..at + 12].copy_from_slice(b"MPP = 0     ");
    std::fs::write(input.join("zero.svs"), patched).unwrap();
    std::fs::copy(format!("{samples}/synth-s102-000.svs"), input.join("good.svs")).unwrap();
    let table = dir.join("mpp.csv");
    std::fs::write(&table, "wsi,mpp\nzero.svs,0.5\n").unwrap();
    let out = dir.join("out");
    let (code, stderr) = run_cpu(&input, &out, &["--mpp-csv", table.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary(&out, "zero.svs")["mpp_source"], "--mpp-csv");
    assert_eq!(summary(&out, "good.svs")["mpp_source"], "aperio.MPP");
    // CAMELYON16's submission layout: <slide>.csv in one folder.
    for stem in ["zero", "good"] {
        assert_eq!(
            std::fs::read(out.join(format!("camelyon16/{stem}.csv"))).unwrap(),
            std::fs::read(out.join(format!("{stem}.svs/detections.csv"))).unwrap()
        );
    }
    // A bad table is a usage error, before any work.
    std::fs::write(&table, "wsi,mpp\nzero.svs,-1\n").unwrap();
    let (code, _, stderr) = flashslide(&[
        "run",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--mpp-csv",
        table.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("mpp.csv: line 2"), "{stderr}");
}

/// `run --features` records what `embed` records, and the grid under Trident's attribute
/// names, as text that parses as Trident's types.
#[test]
fn run_features_carry_trident_attributes_and_provenance() {
    let dir = fresh_dir("new-user-features");
    let slide = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/synth-s101-000.svs");
    let out = dir.join("out");
    let (code, _, stderr) = flashslide(&[
        "run",
        slide,
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--features",
    ]);
    assert_eq!(code, 0, "{stderr}");
    if !cfg!(feature = "hdf5") {
        assert!(stderr.contains("features.h5 is not written"), "{stderr}");
    }
    let bytes = std::fs::read(out.join("synth-s101-000.svs/features.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = &header["__metadata__"];
    let text = |k: &str| {
        meta[k]
            .as_str()
            .unwrap_or_else(|| panic!("no {k} in {meta}"))
            .to_string()
    };
    for k in ["patch_size", "patch_size_level0", "overlap"] {
        text(k)
            .parse::<i64>()
            .unwrap_or_else(|_| panic!("{k} = {} is not an integer", text(k)));
    }
    for k in ["level0_magnification", "target_magnification", "mpp", "model_mpp"] {
        text(k).parse::<f64>().unwrap();
    }
    assert_eq!(text("patch_size"), "256");
    assert_eq!(text("level0_magnification"), "20");
    assert_eq!(text("mpp_source"), "aperio.MPP");
    assert!(
        text("device").contains("CPU") || text("device").contains("cpu"),
        "{meta}"
    );
    assert_eq!(text("model"), "flashslide-synth-v1");
}

/// Writes a 3,000 × 2,000 Aperio-style slide at 0.5 µm/px of one grey level.
fn uniform_slide(path: &Path, level: u8) {
    use flashslide::slide::writer::{PyramidOptions, PyramidWriter};
    let (w, h) = (3000u64, 2000u64);
    let mut writer = PyramidWriter::create(path, w, h, PyramidOptions::aperio(w, h, 0.5, 90)).unwrap();
    while writer.next_band_rows() > 0 {
        let rows = writer.next_band_rows() as u64;
        writer.write_band(&vec![level; (rows * w * 3) as usize]).unwrap();
    }
    writer.finish().unwrap();
}

/// A dark-background (fluorescence) slide is refused with the reason, unless asked for.
#[test]
fn a_dark_background_slide_is_refused_unless_asked_for() {
    let dir = fresh_dir("new-user-dark");
    let slide = dir.join("dapi.svs");
    uniform_slide(&slide, 12);
    let out = dir.join("out");
    let (code, stderr) = run_cpu(&slide, &out, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("dark") && stderr.contains("--allow-dark-background"),
        "{stderr}"
    );
    let (code, stderr) = run_cpu(&slide, &out, &["--allow-dark-background"]);
    assert_eq!(code, 0, "{stderr}");
    if let Some(root) = common::shared_slides("a_dark_background_slide_is_refused_unless_asked_for") {
        let dapi = root.join("hamamatsu/test3-DAPI-2-387.ndpi");
        let (code, stderr) = run_cpu(&dapi, &out, &[]);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("dark"), "{stderr}");
    }
}

/// A slide of bare glass: "no tissue" with the reason, not a probability of 0 that reads as
/// "no tumour"; and it counts as done on a rerun.
#[test]
fn a_slide_without_tissue_says_so_and_is_done() {
    let dir = fresh_dir("new-user-glass");
    let slide = dir.join("glass.svs");
    uniform_slide(&slide, 242);
    let out = dir.join("out");
    let (code, stderr) = run_cpu(&slide, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    let summary = summary(&out, "glass.svs");
    assert!(
        summary["slide_probability"].is_null() && summary["max_probability"].is_null(),
        "{summary}"
    );
    assert!(
        summary["no_tissue"]
            .as_str()
            .unwrap()
            .contains("no tile had tissue"),
        "{summary}"
    );
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(index.contains("no tissue"), "{index}");
    // Without --quiet, so that the closing line is printed.
    let (code, _, stderr) = flashslide(&[
        "run",
        slide.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("0 analysed, 1 already done"), "{stderr}");
}

/// A command that will not compute says nothing about the GPU: a missing input is the one
/// line it prints.
#[test]
fn a_missing_input_is_said_before_anything_about_the_device() {
    for args in [
        &["run", "/nonexistent/slides", "--out", "/tmp/flashslide-nowhere"][..],
        &[
            "embed",
            "/nonexistent/slide.svs",
            "-o",
            "/tmp/flashslide-nowhere.safetensors",
        ][..],
    ] {
        let (code, _, stderr) = flashslide(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("/nonexistent"), "{stderr}");
        assert!(
            !stderr.contains("CPU") && !stderr.contains("CUDA"),
            "{args:?}: {stderr}"
        );
    }
}
