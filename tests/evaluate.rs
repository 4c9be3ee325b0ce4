//! `flashslide evaluate`: scoring run outputs against ground truth. A fabricated perfect
//! result scores 1 on every metric; a real run (random weights) is scored end to end; bad
//! input names the file.

mod common;

use common::{bundled_config, flashslide, fresh_dir as tmp, write_random_model};
use std::path::{Path, PathBuf};

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

/// A results folder as `run` writes it, made by hand: a detection on every lesion at 0.9
/// and one false positive at 0.1 far from any; 64-px tokens, at 0.9 inside lesions and 0.1
/// elsewhere; the slide's highest probability 0.9 with lesions, 0.2 without.
fn fabricate(out: &Path, stem: &str) {
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(samples().join(format!("{stem}.lesions.json"))).unwrap(),
    )
    .unwrap();
    let lesions = truth["lesions"].as_array().unwrap();
    let dir = out.join(stem);
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv: Vec<String> = lesions
        .iter()
        .map(|l| format!("0.9,{},{}", l["centroid"][0], l["centroid"][1]))
        .collect();
    csv.push("0.1,10,10".into());
    std::fs::write(dir.join("detections.csv"), csv.join("\n") + "\n").unwrap();
    // Even-odd point-in-polygon over the lesion outlines.
    let inside = |x: f64, y: f64| {
        lesions.iter().any(|l| {
            let pts: Vec<(f64, f64)> = l["polygon"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            let mut odd = false;
            for i in 0..pts.len() {
                let ((xi, yi), (xj, yj)) = (pts[i], pts[(i + pts.len() - 1) % pts.len()]);
                if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                    odd = !odd;
                }
            }
            odd
        })
    };
    let mut features = Vec::new();
    for r in 0..62 {
        for c in 0..78 {
            let (x0, y0) = (c as f64 * 64.0, r as f64 * 64.0);
            let p = if inside(x0 + 32.0, y0 + 32.0) { 0.9 } else { 0.1 };
            features.push(serde_json::json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x0 + 64.0, y0], [x0 + 64.0, y0 + 64.0], [x0, y0 + 64.0], [x0, y0]]]},
                "properties": {"objectType": "tile", "measurements": {"tumor_probability": p}}
            }));
        }
    }
    let geojson = serde_json::json!({"type": "FeatureCollection", "features": features});
    std::fs::write(dir.join("qupath.geojson"), geojson.to_string()).unwrap();
    let summary = serde_json::json!({
        "software": "test", "slide": format!("/data/{stem}.svs"), "fingerprint": {"size": 0, "modified": [0, 0], "head_tail_sha256": ""},
        "model": "m", "model_sha256": "", "settings": {}, "device": "cpu", "mpp": 0.5, "mpp_source": "test",
        "dimensions": [5000, 4000], "tissue_tiles": 1, "tokens": 1, "token_um": 32.0,
        "seconds": {"tissue": 0.0, "read": 0.0, "stage1": 0.0, "stage1_waiting": 0.0, "stage2": 0.0, "export": 0.0, "total": 2.0},
        "peak_rss_bytes": 1000, "device_memory_bytes": null, "slide_probability": 0.5,
        "max_probability": if lesions.is_empty() { 0.2 } else { 0.9 },
        "tumour_area_mm2": 0.0, "tumour_regions": 0, "detections": csv.len(), "outputs": []
    });
    std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
}

#[test]
fn a_perfect_result_scores_one_everywhere() {
    let out = tmp("evaluate-perfect");
    fabricate(&out, "synth-s101-000");
    fabricate(&out, "synth-s102-000");
    let json = out.join("evaluation.json");
    let (code, stdout, stderr) = flashslide(&[
        "evaluate",
        out.to_str().unwrap(),
        "--truth",
        samples().to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("| FROC (CAMELYON16) | 1.000 |"), "{stdout}");
    let e: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(e["froc"]["score"], 1.0);
    assert_eq!(
        e["froc"]["lesions"], 1,
        "one micrometastasis; the ITC is not counted"
    );
    assert_eq!(e["froc"]["micro_sensitivity"], 1.0);
    assert_eq!(e["froc"]["itc_sensitivity"], 1.0);
    assert_eq!(e["token_auroc"], 1.0);
    assert_eq!(e["slide_auroc"], 1.0);
    assert_eq!(e["seconds_per_slide"], 2.0);
    assert_eq!(e["slides"][0]["lesions"], serde_json::json!([1, 1, 0]));
}

#[test]
fn a_real_run_is_scored_and_bad_input_names_the_file() {
    let model = Path::new(env!("CARGO_TARGET_TMPDIR")).join("evaluate-model");
    write_random_model(&model, &bundled_config(), None);
    let out = tmp("evaluate-run");
    let samples = samples();
    let (code, _, stderr) = flashslide(&[
        "run",
        samples.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let json = out.join("evaluation.json");
    let args = [
        "evaluate",
        out.to_str().unwrap(),
        "--truth",
        samples.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = flashslide(&[&args[..], &["--json", json.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("token AUROC"), "{stdout}");
    let e: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let score = e["froc"]["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score));
    let auroc = e["token_auroc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auroc));
    assert_eq!(e["slides"].as_array().unwrap().len(), 2);

    // Truth missing for a slide: the error names the file it looked for.
    let empty = tmp("evaluate-no-truth");
    let (code, _, stderr) = flashslide(&[
        "evaluate",
        out.to_str().unwrap(),
        "--truth",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("synth-s101-000.lesions.json"), "{stderr}");
    // A corrupt detections file: named, with the line.
    std::fs::write(out.join("synth-s101-000.svs/detections.csv"), "0.5,12\n").unwrap();
    let (code, _, stderr) = flashslide(&args);
    assert_eq!(code, 2);
    assert!(stderr.contains("detections.csv: line 1"), "{stderr}");
}
