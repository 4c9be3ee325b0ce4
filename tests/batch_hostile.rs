//! `flashslide run` against what a share of thousands of slides and a cluster's scheduler
//! do to it: special files and symlink loops in the input, a hostile candidate, locks left
//! by dead or live workers, kill -9 / SIGTERM / SIGINT at random moments followed by a rerun
//! (whose outputs must equal an uninterrupted run's), a folder half rewritten under other
//! settings, a sibling slide of the same stem, and two runs on one output folder. Each
//! scenario is built here; runs use the bundled model on the CPU, under a time limit (a hang
//! is a failure, not a stuck CI job).

#![cfg(unix)]

mod common;

use common::fresh_dir as tmp;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

/// Two slides, `a.svs` and `b.svs`, in a folder of their own.
fn two_slides(name: &str) -> PathBuf {
    let input = tmp(name);
    std::fs::copy(samples().join("synth-s101-000.svs"), input.join("a.svs")).unwrap();
    std::fs::copy(samples().join("synth-s102-000.svs"), input.join("b.svs")).unwrap();
    input
}

fn start(inputs: &[&Path], out: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_flashslide"))
        .arg("run")
        .args(inputs)
        .args(["--out", out.to_str().unwrap(), "--device", "cpu"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` (a minute at most: longer is a hang); its exit code (None: killed by a
/// signal) and stderr.
fn finish(mut child: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("flashslide run hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(inputs: &[&Path], out: &Path, extra: &[&str]) -> (Option<i32>, String) {
    finish(start(inputs, out, extra))
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("batch-report.json")).unwrap()).unwrap()
}

/// Each slide's outcome in the report, by folder name.
fn outcomes(out: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = report(out)["slides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Every file of a slide's folder: its bytes, summary.json without its timings and run
/// metadata. Hidden files (a lock, a file being written) are not outputs.
fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| !name.starts_with('.'))
        .map(|(name, path)| {
            let mut bytes = std::fs::read(path).unwrap();
            if name == "summary.json" {
                let mut s: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                for key in [
                    "seconds",
                    "peak_rss_bytes",
                    "device_memory_bytes",
                    "export_seconds",
                    "tile_decoding",
                    "device",
                    "software",
                    "run",
                ] {
                    s.as_object_mut().unwrap().remove(key);
                }
                bytes = s.to_string().into_bytes();
            }
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

/// No slide folder of `out` holds a lock file.
fn no_locks(out: &Path) -> bool {
    std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .all(|d| !d.path().join(".lock").exists())
}

/// The folders (slides) of an uninterrupted run over `input`, made once per input.
fn reference(input: &Path, name: &str) -> PathBuf {
    let out = tmp(name);
    let (code, err) = run(&[input], &out, &["--quiet"]);
    assert_eq!(code, Some(0), "{err}");
    out
}

#[test]
fn special_files_loops_and_a_hostile_slide_leave_the_others_analysed() {
    use std::os::unix::fs::symlink;
    let input = tmp("hostile-input");
    std::fs::copy(samples().join("synth-s101-000.svs"), input.join("good.svs")).unwrap();
    // A FIFO, a socket and a device (by a link: judged by its target), whatever their names.
    let fifo = std::ffi::CString::new(input.join("fifo.svs").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the file.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let _socket = std::os::unix::net::UnixListener::bind(input.join("socket.tif")).unwrap();
    symlink("/dev/null", input.join("null.svs")).unwrap();
    // Two symlinks to the folder itself, a loop through the parent, a second path to the
    // good slide, and a link to nothing.
    symlink(".", input.join("self1")).unwrap();
    symlink(".", input.join("self2")).unwrap();
    std::fs::create_dir(input.join("sub")).unwrap();
    symlink("..", input.join("sub/up")).unwrap();
    symlink("../good.svs", input.join("sub/again.svs")).unwrap();
    symlink("missing.svs", input.join("dangling.svs")).unwrap();
    // Hostile candidates: a TIFF header over garbage, and an IFD pointing far past the end.
    let mut garbage = b"II*\0".to_vec();
    garbage.extend((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    std::fs::write(input.join("garbage.svs"), &garbage).unwrap();
    std::fs::write(input.join("far.tif"), b"II*\0\xff\xff\xff\x7f").unwrap();

    let out = tmp("hostile");
    let t = Instant::now();
    let (code, err) = run(&[&input], &out, &[]);
    eprintln!("hostile input: {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(code, Some(1), "the hostile files fail, alone: {err}");
    assert_eq!(
        outcomes(&out),
        [
            ("far.tif".into(), "failed".into()),
            ("garbage.svs".into(), "failed".into()),
            ("good.svs".into(), "done".into())
        ],
        "{err}"
    );
    let notes = report(&out)["skipped_files"].to_string();
    for said in [
        "a FIFO",
        "a socket",
        "a device",
        "not searched again",
        "dangling.svs",
    ] {
        assert!(notes.contains(said), "{said}: {notes}");
    }
    assert!(err.contains("note: ") && err.contains("FIFO"), "{err}");
    // One folder per slide: the loops neither grew the walk nor analysed good.svs twice.
    let mut folders: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir() && e.file_name() != flashslide::export::challenge::FOLDER)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    assert_eq!(folders, ["far.tif", "garbage.svs", "good.svs"]);
}

#[test]
fn dead_owners_locks_are_taken_at_once_live_ones_elsewhere_respected() {
    let input = two_slides("locks-input");
    let out = tmp("locks");
    let me = |pid: u32, start_time: u64| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        format!(
            r#"{{"host":"{}","pid":{pid},"start_time":{start_time},"boot_id":"{}","heartbeat":{now}}}"#,
            host.trim(),
            boot.trim()
        )
    };
    // a.svs: a process of this host that has exited; b.svs: this test's own (live) pid
    // recorded with another start time, as when a pid is reused. Heartbeats fresh.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    for (name, lock) in [("a.svs", me(dead, 1)), ("b.svs", me(std::process::id(), 1))] {
        std::fs::create_dir_all(out.join(name)).unwrap();
        std::fs::write(out.join(name).join(".lock"), lock).unwrap();
    }
    let (code, err) = run(&[&input], &out, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        outcomes(&out),
        [("a.svs".into(), "done".into()), ("b.svs".into(), "done".into())]
    );
    assert!(no_locks(&out));
}

/// kill -9 (twice), SIGTERM and SIGINT at random moments of a run, then a rerun: every slide done,
/// the same files with the same bytes as an uninterrupted run. SIGTERM and SIGINT leave a
/// report (the others marked interrupted), index.html and no lock, and exit 143 and 130.
#[test]
fn a_rerun_after_kill_term_or_int_finishes_every_slide_as_an_uninterrupted_run() {
    let input = two_slides("kill-input");
    let clean = reference(&input, "kill-clean");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    for (i, signal) in [libc::SIGKILL, libc::SIGKILL, libc::SIGTERM, libc::SIGINT]
        .into_iter()
        .enumerate()
    {
        // Between 0.3 and 2.8 s: from model loading to the second slide's outputs (an
        // uninterrupted run takes about 3 s).
        let mixed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(i as u64 * 1442695040888963407);
        let delay = 300 + (mixed >> 33) % 2500;
        let out = tmp(&format!("kill-{i}"));
        let child = start(&[&input], &out, &["--quiet"]);
        std::thread::sleep(Duration::from_millis(delay));
        // SAFETY: a plain kill(2) of our own child, which has not been waited for.
        unsafe { libc::kill(child.id() as i32, signal) };
        let (code, err) = finish(child);
        eprintln!("signal {signal} after {delay} ms: exit {code:?}");
        if signal != libc::SIGKILL && code != Some(0) {
            assert_eq!(code, Some(128 + signal), "{err}");
            let r = outcomes(&out);
            assert_eq!(r.len(), 2, "{r:?}");
            assert!(r.iter().all(|(_, o)| o == "done" || o == "interrupted"), "{r:?}");
            assert!(out.join("index.html").is_file());
            assert!(no_locks(&out), "locks left after signal {signal}");
        }
        // Whatever was left, no folder holds a summary over outputs other than its own.
        for name in ["a.svs", "b.svs"] {
            if out.join(name).join("summary.json").exists() {
                assert_eq!(outputs(&out.join(name)), outputs(&clean.join(name)));
            }
        }
        let (code, err) = run(&[&input], &out, &["--quiet"]);
        assert_eq!(code, Some(0), "rerun after signal {signal} at {delay} ms: {err}");
        for (name, outcome) in outcomes(&out) {
            assert!(outcome == "done" || outcome == "skipped", "{name}: {outcome}");
        }
        for name in ["a.svs", "b.svs"] {
            assert!(
                outputs(&out.join(name)) == outputs(&clean.join(name)),
                "{name} after signal {signal} at {delay} ms differs from an uninterrupted run"
            );
        }
    }
}

#[test]
fn a_rewrite_under_other_settings_withdraws_the_old_summary_first() {
    let input = tmp("rewrite-input");
    std::fs::copy(samples().join("synth-s101-000.svs"), input.join("s.svs")).unwrap();
    let out = tmp("rewrite");
    let (code, err) = run(&[&input], &out, &["--quiet"]);
    assert_eq!(code, Some(0), "{err}");
    let first = outputs(&out.join("s.svs"));
    // Rerun under other settings, failing half-way through its outputs (probability.tiff
    // cannot replace a folder): the others are replaced by then.
    std::fs::remove_file(out.join("s.svs/probability.tiff")).unwrap();
    std::fs::create_dir(out.join("s.svs/probability.tiff")).unwrap();
    let (code, err) = run(&[&input], &out, &["--quiet", "--threshold", "0.9"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        !out.join("s.svs/summary.json").exists(),
        "the first run's summary.json stands over the second's outputs"
    );
    // Under the first settings again: analysed anew (not "already done"), as the first time.
    std::fs::remove_dir(out.join("s.svs/probability.tiff")).unwrap();
    let (code, err) = run(&[&input], &out, &["--quiet"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(outcomes(&out), [("s.svs".into(), "done".into())]);
    assert!(outputs(&out.join("s.svs")) == first);
}

#[test]
fn folder_names_stay_when_a_sibling_of_the_same_stem_appears() {
    let input = tmp("names-input");
    std::fs::copy(samples().join("synth-s101-000.svs"), input.join("s.tif")).unwrap();
    let out = tmp("names");
    let (code, err) = run(&[&input], &out, &["--quiet"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.join("s.tif/summary.json").is_file());
    std::fs::copy(samples().join("synth-s102-000.svs"), input.join("s.svs")).unwrap();
    let (code, err) = run(&[&input], &out, &["--quiet"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        outcomes(&out),
        [
            ("s.svs".into(), "done".into()),
            ("s.tif".into(), "skipped".into())
        ]
    );
    let slide_of = |name: &str| {
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(name).join("summary.json")).unwrap())
                .unwrap();
        s["slide"].as_str().unwrap().to_string()
    };
    assert!(slide_of("s.tif").ends_with("/s.tif") && slide_of("s.svs").ends_with("/s.svs"));
}

#[test]
fn two_runs_on_one_folder_do_each_slide_once_and_report_every_slide() {
    let input = two_slides("concurrent-input");
    let out = tmp("concurrent");
    let first = start(&[&input], &out, &[]);
    let second = start(&[&input], &out, &[]);
    let (a, b) = (finish(first), finish(second));
    assert_eq!((a.0, b.0), (Some(0), Some(0)), "{}\n{}", a.1, b.1);
    // Each slide analysed by one of them; the report holds both slides, each done (or,
    // when the other run saw it after it was done, already done).
    let analysed = |err: &str| err.matches(": done in").count();
    assert_eq!(analysed(&a.1) + analysed(&b.1), 2, "{}\n{}", a.1, b.1);
    let r = outcomes(&out);
    assert_eq!(
        r.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["a.svs", "b.svs"]
    );
    assert!(r.iter().all(|(_, o)| o == "done" || o == "skipped"), "{r:?}");
    assert!(no_locks(&out));
}
