//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod counting_alloc;
pub mod dicom_builder;
pub mod tiff_builder;

use std::path::{Path, PathBuf};

/// `../shared/slides` beside the checkout, or `None` (after saying so) when it is absent,
/// as in a user's fresh clone.
pub fn shared_slides(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/slides");
    if dir.join("reference/manifest.json").is_file() {
        Some(dir)
    } else {
        eprintln!("SKIPPED {test}: ../shared/slides is absent (real test slides are not bundled)");
        None
    }
}

/// Runs `tools/<script> --out <target tmp>/<folder> [--shared ../shared/slides]` once per
/// test binary and keeps its output while the tools' Python (the script, the modules it
/// imports) is unchanged; `None` when Python or
/// one of the script's packages is missing (it exits 3), unless `require` names an
/// environment variable that is set (CI's promise that they are installed).
pub fn generated_by(script: &str, folder: &str, require: Option<&str>) -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools").join(script);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(folder);
    let stamp = out.join("script.stamp");
    let source = python_sources(&script);
    if out.join("manifest.json").is_file() && std::fs::read(&stamp).ok().as_ref() == Some(&source) {
        return Some(out);
    }
    let _ = std::fs::remove_dir_all(&out);
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/slides");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(&script).arg("--out").arg(&out);
    if shared.is_dir() {
        cmd.arg("--shared").arg(&shared);
    }
    let missing = match cmd.output() {
        Ok(o) if o.status.success() => {
            std::fs::write(&stamp, &source).unwrap();
            return Some(out);
        }
        Ok(o) if o.status.code() == Some(3) => String::from_utf8_lossy(&o.stderr).into_owned(),
        Ok(o) => panic!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("python3 not runnable: {e}"),
    };
    if let Some(var) = require {
        assert!(
            std::env::var_os(var).is_none(),
            "{var} is set but {} could not run: {missing}",
            script.display()
        );
    }
    eprintln!("{missing}");
    None
}

/// The script and every Python file beside it and in tools/vendor_slides/, in one buffer.
fn python_sources(script: &Path) -> Vec<u8> {
    let tools = script.parent().unwrap();
    let mut files: Vec<PathBuf> = [tools.to_path_buf(), tools.join("vendor_slides")]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .collect();
    files.sort();
    let mut all = std::fs::read(script).unwrap();
    for f in files {
        all.extend(f.to_string_lossy().as_bytes());
        all.extend(std::fs::read(&f).unwrap());
    }
    all
}

/// Reads from every level of `slide` (two regions, and the stored JPEG streams a GPU decoder
/// would get) and every associated image, as the hostile-input tests do: the first error's
/// text, if any.
pub fn read_everything(slide: &mut flashslide::slide::Slide) -> Option<String> {
    // What a caller reading associated images whole would allow (64 MiB of RGBA).
    slide.set_max_region_pixels(1 << 24);
    let mut first_error: Option<String> = None;
    let mut note = |r: Result<(), String>| {
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    };
    let text = |e: flashslide::slide::SlideError| e.to_string();
    for (i, l) in slide.levels().iter().enumerate() {
        let ds = l.downsample;
        let centre = ((l.width / 2) as f64 * ds) as i64;
        let middle = ((l.height / 2) as f64 * ds) as i64;
        note(slide.read_region(i, 0, 0, 256, 256).map(drop).map_err(text));
        note(
            slide
                .read_region(i, centre, middle, 300, 200)
                .map(drop)
                .map_err(text),
        );
        if let Some(jpeg) = slide.jpeg_level(i) {
            let (tw, th) = jpeg.tile_size();
            for (c, r) in [(0, 0), (l.width / 2 / tw as u64, l.height / 2 / th as u64)] {
                note(jpeg.stream(c, r).map(drop).map_err(text));
            }
        }
    }
    let names: Vec<String> = slide.associated_names().map(str::to_string).collect();
    for n in names {
        note(slide.read_associated(&n).map(drop).map_err(text));
    }
    first_error
}

/// Per-channel absolute differences between two equally sized RGBA buffers:
/// (mean, 99.9th percentile, max).
pub fn diff_stats(a: &[u8], b: &[u8]) -> (f64, u8, u8) {
    assert_eq!(a.len(), b.len());
    let mut hist = [0u64; 256];
    let mut sum = 0u64;
    for (x, y) in a.iter().zip(b) {
        let d = x.abs_diff(*y);
        hist[d as usize] += 1;
        sum += d as u64;
    }
    let n = a.len() as u64;
    let mut acc = 0u64;
    let mut p999 = 0u8;
    for (d, &c) in hist.iter().enumerate() {
        acc += c;
        if acc * 1000 >= n * 999 {
            p999 = d as u8;
            break;
        }
    }
    let max = hist.iter().rposition(|&c| c > 0).unwrap_or(0) as u8;
    (sum as f64 / n.max(1) as f64, p999, max)
}

/// How closely a read must match its reference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tolerance {
    /// Lossless data: bit-exact.
    Exact,
    /// JPEG decoded by another decoder: mean |Δ| ≤ 0.5, 99.9th percentile ≤ 4 per channel.
    Jpeg,
    /// Levels the reference makes by scaled JPEG decoding: mean ≤ 2, p99.9 ≤ 16.
    ScaledJpeg,
    /// The reference resamples: report the difference, no bound.
    Report,
}

/// Compares a read with its reference within `tol` (transparency exactly, except under
/// `Report`), printing one line; panics with `label` on a mismatch.
pub fn check_pixels(label: &str, got: &[u8], want: &[u8], tol: Tolerance) {
    let (mean, p999, max) = diff_stats(got, want);
    match tol {
        Tolerance::Exact => assert_eq!(max, 0, "{label}: must be bit-exact (mean {mean}, max {max})"),
        Tolerance::Jpeg => assert!(mean <= 0.5 && p999 <= 4, "{label}: mean {mean:.3}, p99.9 {p999}"),
        Tolerance::ScaledJpeg => assert!(mean <= 2.0 && p999 <= 16, "{label}: mean {mean:.3}, p99.9 {p999}"),
        Tolerance::Report => {}
    }
    if tol != Tolerance::Report {
        let alpha_diff = got
            .iter()
            .zip(want)
            .skip(3)
            .step_by(4)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            alpha_diff, 0,
            "{label}: transparency differs in {alpha_diff} pixels"
        );
    }
    eprintln!("{label:64} mean {mean:.4} p99.9 {p999:3} max {max:3}  {tol:?}");
}

/// Checks a slide's properties against OpenSlide's (a properties.json of a generator's
/// references): every one OpenSlide reports, but its content hash, and no other.
pub fn check_openslide_properties(label: &str, slide: &flashslide::slide::Slide, properties_json: &Path) {
    let text = std::fs::read_to_string(properties_json).unwrap();
    let want: std::collections::BTreeMap<String, String> = serde_json::from_str(&text).unwrap();
    for (k, v) in want.iter().filter(|(k, _)| *k != "openslide.quickhash-1") {
        assert_eq!(slide.property(k), Some(v.as_str()), "{label}: property {k}");
    }
    let extra: Vec<&String> = slide
        .properties()
        .keys()
        .filter(|k| !want.contains_key(*k))
        .collect();
    assert!(
        extra.is_empty(),
        "{label}: properties OpenSlide does not have: {extra:?}"
    );
}

/// Reads what a generator's reference entry (`kind` region or associated, `name`, `level`,
/// `x`, `y`) shows, at the size of its PNG `png`; returns (read RGBA, reference RGBA).
pub fn read_reference_entry(
    slide: &flashslide::slide::Slide,
    entry: &serde_json::Value,
    png: &Path,
) -> (Vec<u8>, Vec<u8>) {
    let name = entry["name"].as_str().unwrap();
    let (w, h, want) = read_png_rgba(png);
    let got = if entry["kind"] == "associated" {
        slide.read_associated(name).unwrap()
    } else {
        let level = entry["level"].as_u64().unwrap() as usize;
        let (x, y) = (entry["x"].as_i64().unwrap(), entry["y"].as_i64().unwrap());
        slide.read_region(level, x, y, w, h).unwrap()
    };
    assert_eq!((got.width, got.height), (w, h), "{name}");
    (got.data, want)
}

/// Decodes a PNG into RGBA8.
pub fn read_png_rgba(path: &Path) -> (u32, u32, Vec<u8>) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgba8();
    (img.width(), img.height(), img.into_raw())
}

/// The bundled architecture (bench/configs/flashslide-synth-v1.json).
pub fn bundled_config() -> flashslide::model::config::ModelConfig {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/bench/configs/flashslide-synth-v1.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Writes `config` and random weights for both stages (leaving out `omit`), stored in bf16
/// as the bundled model is, into `dir`.
pub fn write_random_model(dir: &Path, config: &flashslide::model::config::ModelConfig, omit: Option<&str>) {
    use candle_core::{DType, Device, Tensor};
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(config).unwrap(),
    )
    .unwrap();
    let mut shapes = flashslide::model::tile_encoder::expected_shapes(config);
    shapes.extend(config.slide_encoder.as_ref().unwrap().expected_shapes());
    let tensors: std::collections::HashMap<String, Tensor> = shapes
        .into_iter()
        .filter(|(n, _)| Some(n.as_str()) != omit)
        .enumerate()
        .map(|(i, (n, s))| {
            let count: usize = s.iter().product();
            let values: Vec<f32> = (0..count)
                .map(|j| {
                    let h = (i * 1_000_003 + j).wrapping_mul(2_654_435_761) % 10_007;
                    (h as f32 / 10_007.0 - 0.5) * 0.1
                })
                .collect();
            let t = Tensor::from_vec(values, s, &Device::Cpu)
                .unwrap()
                .to_dtype(DType::BF16)
                .unwrap();
            (n, t)
        })
        .collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
}

/// Runs the flashslide binary: (exit code, stdout, stderr).
pub fn flashslide(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flashslide"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An empty folder of this name under the target's temporary directory.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium's command (Debian's `chromium`; CI installs it and sets
/// FLASHSLIDE_REQUIRE_CHROMIUM), or `None` after a SKIPPED line naming `test`.
pub fn chromium(test: &str) -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("FLASHSLIDE_REQUIRE_CHROMIUM").is_none(),
            "FLASHSLIDE_REQUIRE_CHROMIUM is set but chromium is not installed"
        );
        eprintln!("SKIPPED {test}: chromium is not installed");
    }
    found
}
