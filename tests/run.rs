//! `flashslide run` end to end on the bundled samples with a model whose weights the test
//! creates (the bundled architecture, random weights): every output, its registration to
//! the slide, resume, a killed run, a corrupt slide among good ones, and a busy slide.

mod common;

use common::{bundled_config, fresh_dir as tmp, write_random_model};
use flashslide::slide::Slide;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One random-weight model for every test here.
fn model() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("run-model");
        write_random_model(&dir, &bundled_config(), None);
        dir
    })
    .clone()
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flashslide"))
        .arg("run")
        .args(args)
        .args(["--model", model().to_str().unwrap(), "--device", "cpu"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("batch-report.json")).unwrap()).unwrap()
}

fn outcomes(out: &Path) -> Vec<String> {
    report(out)["slides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["outcome"].as_str().unwrap().to_string())
        .collect()
}

/// Every output file but summary.json (which records timings) by name, with a hash of its
/// bytes; hidden files (a worker's lock, files being written) are not outputs.
fn outputs(dir: &Path) -> Vec<(String, u64)> {
    use std::hash::{Hash, Hasher};
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| name != "summary.json" && !name.starts_with('.'))
        .map(|(name, path)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(path).unwrap().hash(&mut h);
            (name, h.finish())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn writes_every_output_registered_to_the_slide() {
    let out = tmp("run-outputs");
    let (code, err) = run(&[
        samples().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--features",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    // The ground-truth masks beside the slides are flashslide's own images, not inputs.
    assert_eq!(outcomes(&out), vec!["done", "done"]);
    let dir = out.join("synth-s101-000.svs");
    for f in [
        "heatmap.png",
        "probability.tiff",
        "qupath.geojson",
        "tissue.geojson",
        "detections.csv",
        "features.safetensors",
        "summary.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let tokens = summary["tokens"].as_u64().unwrap() as usize;
    assert_eq!(summary["token_um"], 32.0);
    assert_eq!(tokens, summary["tissue_tiles"].as_u64().unwrap() as usize * 16);

    // probability.tiff: the slide's level-0 size and levels, MPP, and each tile object's
    // probability at its pixels.
    let slide = Slide::open(samples().join("synth-s101-000.svs")).unwrap();
    let map = Slide::open(dir.join("probability.tiff")).unwrap();
    assert_eq!(map.dimensions(), slide.dimensions());
    let dims = |s: &Slide| s.levels().iter().map(|l| (l.width, l.height)).collect::<Vec<_>>();
    assert_eq!(dims(&map), dims(&slide));
    assert!((map.mpp().unwrap().x - 0.5).abs() < 1e-6);

    let geo: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("qupath.geojson")).unwrap()).unwrap();
    let features = geo["features"].as_array().unwrap();
    let tiles: Vec<&serde_json::Value> = features
        .iter()
        .filter(|f| f["properties"]["objectType"] == "tile")
        .collect();
    assert_eq!(tiles.len(), tokens);
    let (w, h) = slide.dimensions();
    let corners = |f: &serde_json::Value| -> Vec<[f64; 2]> {
        f["geometry"]["coordinates"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
            .collect()
    };
    for t in tiles.iter().step_by(97) {
        let c = corners(t);
        assert!(c
            .iter()
            .all(|p| p[0] >= 0.0 && p[1] >= 0.0 && p[0] <= w as f64 + 64.0 && p[1] <= h as f64 + 64.0));
        let p = t["properties"]["measurements"]["tumor_probability"]
            .as_f64()
            .unwrap();
        let (cx, cy) = ((c[0][0] + c[2][0]) / 2.0, (c[0][1] + c[2][1]) / 2.0);
        if cx < w as f64 && cy < h as f64 {
            let px = map.read_region(0, cx as i64, cy as i64, 1, 1).unwrap().data[0];
            assert_eq!(px, (p * 255.0).round() as u8, "probability.tiff at ({cx}, {cy})");
        }
    }
    // A ground-truth lesion lands on the tiles covering it: its centroid is inside a tile
    // object (the lesions are in tissue).
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(samples().join("synth-s101-000.lesions.json")).unwrap(),
    )
    .unwrap();
    for lesion in truth["lesions"].as_array().unwrap() {
        let poly = lesion["polygon"].as_array().unwrap();
        let n = poly.len() as f64;
        let (lx, ly) = poly.iter().fold((0.0, 0.0), |a, p| {
            (a.0 + p[0].as_f64().unwrap() / n, a.1 + p[1].as_f64().unwrap() / n)
        });
        assert!(
            tiles.iter().any(|t| {
                let c = corners(t);
                lx >= c[0][0] && lx < c[2][0] && ly >= c[0][1] && ly < c[2][1]
            }),
            "lesion at ({lx}, {ly}) is on no tile"
        );
    }
    // detections.csv: confidence, x, y rows within the slide.
    let csv = std::fs::read_to_string(dir.join("detections.csv")).unwrap();
    for line in csv.lines() {
        let v: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        assert!(
            v.len() == 3 && (0.0..=1.0).contains(&v[0]) && v[1] < w as f64 + 64.0 && v[2] < h as f64 + 64.0
        );
    }
    let tissue: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tissue.geojson")).unwrap()).unwrap();
    assert!(!tissue["features"].as_array().unwrap().is_empty());
    let png = image::open(dir.join("heatmap.png")).unwrap();
    assert!(png.width() > 1000);
}

#[test]
fn resumes_and_a_killed_run_leaves_nothing_counted_as_done() {
    let input = tmp("run-kill-input");
    std::fs::copy(samples().join("synth-s101-000.svs"), input.join("a.svs")).unwrap();
    std::fs::copy(samples().join("synth-s102-000.svs"), input.join("b.svs")).unwrap();
    let clean = tmp("run-kill-clean");
    let (code, err) = run(&[
        input.to_str().unwrap(),
        "--out",
        clean.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    // Rerun: both skipped.
    let (code, _) = run(&[
        input.to_str().unwrap(),
        "--out",
        clean.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 0);
    assert_eq!(outcomes(&clean), vec!["skipped", "skipped"]);
    // Other settings make it run again.
    let (code, _) = run(&[
        input.to_str().unwrap(),
        "--out",
        clean.to_str().unwrap(),
        "--quiet",
        "--threshold",
        "0.6",
    ]);
    assert_eq!(code, 0);
    assert_eq!(outcomes(&clean), vec!["done", "done"]);
    let (code, _) = run(&[
        input.to_str().unwrap(),
        "--out",
        clean.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 0);

    // Killed at several moments, then rerun: the same outputs as the uninterrupted run.
    for delay_ms in [300u64, 900, 1500] {
        let out = tmp("run-kill");
        let mut child = Command::new(env!("CARGO_BIN_EXE_flashslide"))
            .args([
                "run",
                input.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--quiet",
                "--device",
                "cpu",
            ])
            .args(["--model", model().to_str().unwrap()])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Whatever exists, no slide counts as done without its summary and outputs.
        for name in ["a.svs", "b.svs"] {
            let dir = out.join(name);
            if dir.join("summary.json").exists() {
                assert_eq!(outputs(&dir), outputs(&clean.join(name)));
            }
        }
        // The dead worker's lock is still there: its pid is gone, so it is taken at once.
        let (code, err) = run(&[input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
        assert_eq!(code, 0, "{err}");
        for name in ["a.svs", "b.svs"] {
            assert_eq!(
                outputs(&out.join(name)),
                outputs(&clean.join(name)),
                "{name} after a kill at {delay_ms} ms"
            );
        }
    }
}

#[test]
fn a_corrupt_slide_fails_alone_and_a_busy_one_is_left_to_its_worker() {
    let input = tmp("run-corrupt-input");
    std::fs::copy(samples().join("synth-s101-000.svs"), input.join("good.svs")).unwrap();
    let bytes = std::fs::read(samples().join("synth-s102-000.svs")).unwrap();
    std::fs::write(input.join("truncated.svs"), &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(input.join("not-a-slide.svs"), b"hello").unwrap();
    std::fs::write(input.join("notes.txt"), b"not a slide, ignored").unwrap();
    let out = tmp("run-corrupt");
    let (code, err) = run(&[input.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let r = report(&out);
    let slides = r["slides"].as_array().unwrap();
    assert_eq!(slides.len(), 3);
    let by_name = |n: &str| slides.iter().find(|s| s["name"] == n).unwrap();
    assert_eq!(by_name("good.svs")["outcome"], "done");
    for bad in ["truncated.svs", "not-a-slide.svs"] {
        assert_eq!(by_name(bad)["outcome"], "failed");
        let reason = by_name(bad)["reason"].as_str().unwrap();
        assert!(reason.contains(bad), "{reason}");
        assert!(!out.join(bad).join("summary.json").exists());
    }
    assert!(err.contains("truncated.svs: FAILED"), "{err}");
    // index.html shows the good slide's heatmap and links, and the failures with reasons.
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        html.contains("good.svs/heatmap.png") && html.contains("good.svs/qupath.geojson"),
        "{html}"
    );
    assert!(html.contains("truncated") && html.contains("not-a-slide") && html.contains("2 failed"));

    // A live lock (fresh heartbeat) held by another worker: left alone, not a failure.
    let busy = tmp("run-busy");
    std::fs::create_dir_all(busy.join("good.svs")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(
        busy.join("good.svs/.lock"),
        format!(r#"{{"host":"node9","pid":1,"heartbeat":{now}}}"#),
    )
    .unwrap();
    let (code, err) = run(&[
        input.join("good.svs").to_str().unwrap(),
        "--out",
        busy.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(outcomes(&busy), vec!["busy"]);
    assert_eq!(report(&busy)["slides"][0]["holder"], "host node9, pid 1");
    assert!(
        err.contains("1 held by other live workers") && err.contains("good.svs (host node9, pid 1)"),
        "{err}"
    );
    assert!(!busy.join("good.svs/summary.json").exists());
}

#[test]
fn bad_usage_is_exit_code_2() {
    let out = tmp("run-usage");
    let (code, err) = run(&[
        samples().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--shard",
        "3/3",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--shard 3/3"), "{err}");
    let (code, err) = run(&["/nonexistent/slides", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/slides"), "{err}");
}

#[test]
fn a_region_of_interest_restricts_the_analysis_to_its_polygons() {
    let out = tmp("run-roi");
    let roi = out.join("roi.geojson");
    std::fs::write(
        &roi,
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},
            "geometry":{"type":"Polygon","coordinates":[[[1000,1000],[3000,1000],[3000,3000],[1000,3000],[1000,1000]]]}}]}"#,
    )
    .unwrap();
    let slide = samples().join("synth-s101-000.svs");
    let (code, err) = run(&[
        slide.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--roi",
        roi.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let geo: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("synth-s101-000.svs/qupath.geojson")).unwrap(),
    )
    .unwrap();
    let tiles: Vec<_> = geo["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["properties"]["objectType"] == "tile")
        .collect();
    assert!(!tiles.is_empty());
    // Every token lies in a 128-µm tile that overlaps the region (tiles straddle its edge).
    for t in tiles {
        let c = &t["geometry"]["coordinates"][0];
        let (x0, y0) = (c[0][0].as_f64().unwrap(), c[0][1].as_f64().unwrap());
        assert!(
            x0 > 1000.0 - 256.0 && x0 < 3000.0 + 256.0 && y0 > 1000.0 - 256.0 && y0 < 3000.0 + 256.0,
            "token at ({x0}, {y0})"
        );
    }
}

/// index.html in headless Chromium (Debian's `chromium`; CI installs it and sets
/// FLASHSLIDE_REQUIRE_CHROMIUM): every heatmap loads, and a screenshot shows them.
#[test]
fn the_index_page_loads_every_heatmap_in_a_browser() {
    let Some(chromium) = common::chromium("the_index_page_loads_every_heatmap_in_a_browser") else {
        return;
    };
    let out = tmp("run-index");
    let (code, err) = run(&[
        samples().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let url = format!("file://{}", out.join("index.html").display());
    let browser = |extra: &[&str]| {
        Command::new(chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--virtual-time-budget=10000",
            ])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let dom = String::from_utf8_lossy(&browser(&["--dump-dom"]).stdout).into_owned();
    assert!(
        dom.contains("data-images-loaded=\"2/2\""),
        "images did not all load: {}",
        &dom[..dom.len().min(400)]
    );
    let shot = out.join("index-screenshot.png");
    let done = browser(&[
        "--window-size=1200,900",
        &format!("--screenshot={}", shot.display()),
    ]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    // The screenshot shows the heatmaps: over 2.5% strongly coloured pixels (the two
    // heatmaps fill about a sixth of the page, their tissue a part of that).
    let img = image::open(&shot).unwrap().to_rgb8();
    let coloured = img
        .pixels()
        .filter(|p| p.0.iter().max().unwrap() - p.0.iter().min().unwrap() > 60)
        .count();
    assert!(
        coloured * 40 > (img.width() * img.height()) as usize,
        "{coloured} coloured pixels"
    );
}

/// Several devices (`run --devices`): one worker each, slides handed out largest first from
/// one queue. Two workers on the CPU stand in for two GPUs: every slide is done once, by one
/// of them, as the report and the slide's summary both say; the outputs are a one-worker
/// run's but for the device and timing fields.
#[test]
fn two_workers_share_a_batch_with_one_workers_outputs() {
    use flashslide::backend::cpu::CpuBackend;
    use flashslide::batch::{hand_out_order, run_batch, run_batch_on, BatchOptions, Outcome, Worker};
    use flashslide::model::Model;
    use flashslide::slide::discover::walk;

    let jobs = walk(&[samples()]).unwrap().jobs;
    assert_eq!(jobs.len(), 2);
    let order = hand_out_order(&jobs, 2);
    assert!(
        jobs[order[0]].name.starts_with("synth-s102"),
        "the larger slide (2.9 MB against 2.3) goes first"
    );
    assert_eq!(
        hand_out_order(&jobs, 1),
        vec![0, 1],
        "one worker keeps the jobs' order"
    );

    let dir = model();
    let first = Model::load(&dir, &CpuBackend).unwrap();
    let second = Model::load(&dir, &CpuBackend).unwrap();
    let one = tmp("run-one-worker");
    let reports = run_batch(&jobs, &first, &BatchOptions::new(one.clone()), &|_| {});
    assert!(reports.iter().all(|r| matches!(r.outcome, Outcome::Done { .. })));
    let cpu = flashslide::backend::Backend::describe(&CpuBackend);
    assert!(reports.iter().all(|r| r.device.as_deref() == Some(cpu.as_str())));

    let two = tmp("run-two-workers");
    let workers = [
        Worker {
            model: &first,
            device: "fake:0".into(),
        },
        Worker {
            model: &second,
            device: "fake:1".into(),
        },
    ];
    let reports = run_batch_on(&jobs, &workers, &BatchOptions::new(two.clone()), &|_| {});
    assert_eq!(reports.len(), 2);
    let summary = |out: &Path, name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(name).join("summary.json")).unwrap()).unwrap()
    };
    for (report, job) in reports.iter().zip(&jobs) {
        assert_eq!(report.name, job.name, "reports in the jobs' order");
        assert!(matches!(report.outcome, Outcome::Done { .. }), "{report:?}");
        let device = report.device.clone().unwrap();
        assert!(device == "fake:0" || device == "fake:1", "{device}");
        let (mut a, mut b) = (summary(&one, &job.name), summary(&two, &job.name));
        assert_eq!(
            b["device"],
            device.as_str(),
            "the summary names the report's device"
        );
        for s in [&mut a, &mut b] {
            let s = s.as_object_mut().unwrap();
            for timing in ["device", "seconds", "export_seconds", "peak_rss_bytes", "run"] {
                s.remove(timing);
            }
        }
        assert_eq!(a, b, "{}: summaries differ beyond device and timings", job.name);
        assert_eq!(
            outputs(&one.join(&job.name)),
            outputs(&two.join(&job.name)),
            "{}",
            job.name
        );
    }
}
