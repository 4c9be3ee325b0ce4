//! README's main command, `flashslide run samples/ --out DIR` with the bundled trained model
//! (models/flashslide-synth-v1, no --model): the micrometastasis of synth-s101-000 is found,
//! the tumour-free synth-s102-000 raises nothing, as `evaluate` scores them.

mod common;

use common::{flashslide, fresh_dir};

#[test]
fn the_bundled_model_finds_the_sample_micrometastasis_and_nothing_on_the_clean_slide() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = fresh_dir("bundled-model");
    let out_s = out.to_str().unwrap();
    let samples = format!("{root}/samples");
    // From the checkout, as README runs it: the default model is found from there.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_flashslide"))
        .current_dir(root)
        .args(["run", "samples", "--out", out_s, "--device", "cpu", "--quiet"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("synth-s101-000.svs/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["model"], "flashslide-synth-v1", "{summary}");

    let json = out.join("evaluation.json");
    let (code, _, err) = flashslide(&[
        "evaluate",
        out_s,
        "--truth",
        &samples,
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let e: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(e["froc"]["micro_sensitivity"], 1.0, "{e}");
    assert_eq!(e["froc"]["score"], 1.0, "{e}");
    assert_eq!(e["slide_auroc"], 1.0, "{e}");
    assert!(e["token_auroc"].as_f64().unwrap() > 0.9, "{e}");
    let clean = std::fs::read_to_string(out.join("synth-s102-000.svs/detections.csv")).unwrap();
    let above_half = clean
        .lines()
        .filter_map(|l| l.split(',').next()?.parse::<f32>().ok())
        .filter(|&c| c >= 0.5)
        .count();
    assert_eq!(above_half, 0, "the tumour-free sample: {clean}");
}
