//! The command line end to end: output, exit codes and one-line errors.

mod common;

use common::{flashslide, shared_slides};

#[test]
fn info_and_region_on_a_real_slide() {
    let Some(root) = shared_slides("info_and_region_on_a_real_slide") else {
        return;
    };
    let svs = root.join("aperio/CMU-1-Small-Region.svs");
    let svs = svs.to_str().unwrap();
    let (code, out, _) = flashslide(&["info", svs]);
    assert_eq!(code, 0);
    assert!(
        out.contains("aperio") && out.contains("0.4990") && out.contains("aperio.MPP"),
        "{out}"
    );

    let (code, out, _) = flashslide(&["info", svs, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["vendor"], "aperio");
    assert_eq!(v["levels"][0]["width"], 2220);
    assert_eq!(v["mpp"]["source"], "aperio.MPP");
    assert_eq!(v["objective_power"], 20.0);
    assert_eq!(v["properties"]["openslide.mpp-x"], "0.499");

    let png = std::env::temp_dir().join(format!("flashslide-cli-{}.png", std::process::id()));
    let png_s = png.to_str().unwrap();
    let args = [
        "region", svs, "--level", "0", "--x", "-10", "--y", "100", "--width", "64", "--height", "32", "-o",
        png_s,
    ];
    let (code, _, err) = flashslide(&args);
    assert_eq!(code, 0, "{err}");
    let img = image::open(&png).unwrap().to_rgba8();
    assert_eq!(img.dimensions(), (64, 32));
    assert_eq!(
        img.get_pixel(0, 0).0,
        [0, 0, 0, 0],
        "left of the slide is transparent"
    );
    assert_eq!(img.get_pixel(20, 0).0[3], 255, "inside the slide is opaque");
    std::fs::remove_file(&png).unwrap();
}

#[test]
fn unusable_input_exits_2_with_one_line() {
    let missing = "/nonexistent/slide.svs";
    let (code, _, err) = flashslide(&["info", missing]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(missing), "{err}");

    let not_a_slide = std::env::temp_dir().join(format!("flashslide-cli-{}.txt", std::process::id()));
    std::fs::write(&not_a_slide, "just some text, not a slide").unwrap();
    let (code, _, err) = flashslide(&["info", not_a_slide.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("not a recognised slide format"), "{err}");
    std::fs::remove_file(&not_a_slide).unwrap();

    let (code, _, _) = flashslide(&["frobnicate"]);
    assert_eq!(code, 2);
}

#[test]
fn oversized_regions_are_refused() {
    let Some(root) = shared_slides("oversized_regions_are_refused") else {
        return;
    };
    let svs = root.join("aperio/CMU-1-Small-Region.svs");
    let png = std::env::temp_dir().join("never-written.png");
    let args = [
        "region",
        svs.to_str().unwrap(),
        "--x",
        "0",
        "--y",
        "0",
        "--width",
        "5000",
        "--height",
        "5000",
        "--max-pixels",
        "1000000",
        "-o",
        png.to_str().unwrap(),
    ];
    let (code, _, err) = flashslide(&args);
    assert_eq!(code, 2);
    assert!(err.contains("exceeds the cap"), "{err}");
    assert!(!png.exists());
}

#[test]
fn readme_main_command_reads_the_bundled_sample() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/synth-s101-000.svs");
    let (code, out, err) = flashslide(&["info", sample]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("aperio") && out.contains("0.5000 x 0.5000") && out.contains("20x"),
        "{out}"
    );
}

#[test]
fn synth_writes_a_slide_and_its_truth() {
    let dir = std::env::temp_dir().join(format!("flashslide-cli-synth-{}", std::process::id()));
    let (code, _, err) = flashslide(&[
        "synth",
        "--out",
        dir.to_str().unwrap(),
        "--seed",
        "5",
        "--width",
        "1500",
        "--height",
        "1200",
        "--lesions",
        "1,1,0",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    for ext in ["svs", "lesions.json", "lesions.geojson", "mask.tiff"] {
        assert!(dir.join(format!("synth-s5-000.{ext}")).is_file(), "{ext} missing");
    }
    let (code, _, err) = flashslide(&["synth", "--out", dir.to_str().unwrap(), "--lesions", "1,2"]);
    assert_eq!(code, 2, "a bad --lesions is bad usage: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Without a usable GPU (as on CI), `--device cuda` is a one-line error and exit code 2, and
/// `--device auto` says why it falls back and runs on the CPU. Where a GPU is usable both
/// simply run.
#[test]
fn device_choice_without_cuda_is_a_clear_error_or_a_cpu_fallback() {
    if flashslide::backend::cuda::CudaBackend::open(0).is_ok() {
        eprintln!("a CUDA GPU is usable here: nothing to check");
        return;
    }
    let (code, _, err) = flashslide(&["bench", "attention", "--device", "cuda", "--seq", "64"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("CUDA is not usable") && err.lines().count() == 1,
        "{err}"
    );
    let (code, _, err) = flashslide(&["selftest"]);
    assert_eq!(code, 2, "{err}");
    // Several GPUs asked for: the same one line, before any slide is touched.
    let out = common::fresh_dir("cli-devices-without-cuda");
    let (code, _, err) = flashslide(&[
        "run",
        "samples",
        "--out",
        out.to_str().unwrap(),
        "--devices",
        "all",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("CUDA is not usable") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "nothing written");
    let (code, out, err) = flashslide(&[
        "bench",
        "attention",
        "--device",
        "auto",
        "--seq",
        "64",
        "--runs",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("running on the CPU (CUDA is not usable"), "{err}");
    assert!(out.contains("GFLOP/s"), "{out}");
}

#[test]
fn training_selftest_on_the_cpu_checks_the_hand_written_backward_pass() {
    // On the CPU the backend is its own reference: the check of the check, which also runs
    // the slide encoder's whole backward pass (RoPE, and RoPE with ALiBi).
    let (code, out, err) = flashslide(&["selftest", "--device", "cpu", "--training", "--seed", "3"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("slide encoder, RoPE + ALiBi: gradient slide.proj_in.weight"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("checks, 0 failed"), "{out}");
}

#[test]
fn encoders_selftest_checks_the_named_encoders_alone() {
    let config = "models/flashslide-synth-v1/config.json";
    let (code, out, err) = flashslide(&[
        "selftest",
        "--device",
        "cpu",
        "--encoders",
        "--configs",
        config,
        "--seed",
        "5",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tile encoder flashslide-synth-v1"), "{out}");
    assert!(!out.contains("layer norm"), "no operation checks: {out}");
    assert!(out.trim_end().ends_with("checks, 0 failed"), "{out}");
    let (code, _, err) = flashslide(&["selftest", "--device", "cpu", "--encoders"]);
    assert_ne!(code, 0);
    assert!(err.contains("name at least one"), "{err}");
}
