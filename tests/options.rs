//! Options that mean nothing (a NaN or negative pixel size, a probability above 1, an empty
//! batch) are refused at the command line, exit 2 naming the option, before any work.

mod common;

use common::{flashslide, fresh_dir};

#[test]
fn nonsense_option_values_exit_2_naming_the_option() {
    let out = fresh_dir("options-nonsense");
    let out = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["run", "samples", "--out", out, "--mpp", "NaN"], "--mpp"),
        (&["run", "samples", "--out", out, "--mpp", "0"], "--mpp"),
        (&["run", "samples", "--out", out, "--mpp=-1"], "--mpp"),
        (&["run", "samples", "--out", out, "--mpp=-inf"], "--mpp"),
        (&["run", "samples", "--out", out, "--mpp", "7.45e-9"], "--mpp"),
        (
            &["run", "samples", "--out", out, "--threshold", "NaN"],
            "--threshold",
        ),
        (
            &["run", "samples", "--out", out, "--threshold", "1.5"],
            "--threshold",
        ),
        (
            &["run", "samples", "--out", out, "--min-tissue=-0.1"],
            "--min-tissue",
        ),
        (&["run", "samples", "--out", out, "--batch", "0"], "--batch"),
        (&["run", "samples", "--out", out, "--devices", "0,0"], "--devices"),
        (
            &["run", "samples", "--out", out, "--devices", "gpu1"],
            "--devices",
        ),
        (
            &[
                "run",
                "samples",
                "--out",
                out,
                "--devices",
                "0",
                "--device",
                "cpu",
            ],
            "--devices",
        ),
        (
            &[
                "embed",
                "samples/synth-s101-000.svs",
                "--model",
                "models/flashslide-synth-v1",
                "-o",
                "x.safetensors",
                "--mpp",
                "inf",
            ],
            "--mpp",
        ),
        (&["synth", "--out", out, "--mpp", "0"], "--mpp"),
        (
            &["train", "--cohort", out, "--out", out, "--mpp", "1e-300"],
            "--mpp",
        ),
    ];
    for (args, option) in cases {
        let (code, _, stderr) = flashslide(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(option), "{args:?}: {stderr}");
    }
    // Nothing was written.
    assert_eq!(std::fs::read_dir(out).unwrap().count(), 0);
}

/// A slide whose description states MPP 0 (a zero in the scanner's settings): `run` fails
/// it with the reason and the advice, and `--mpp` analyses it.
#[test]
fn a_slide_stating_an_implausible_mpp_fails_with_the_advice() {
    let dir = fresh_dir("options-mpp-zero");
    let data = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/synth-s101-000.svs")).unwrap();
    let at = data.windows(12).position(|w| w == b"MPP = 0.5000").unwrap();
    let mut patched = data.clone();
    patched[at..at + 12].copy_from_slice(b"MPP = 0     ");
    let slide = dir.join("zero.svs");
    std::fs::write(&slide, patched).unwrap();
    let (slide, out) = (slide.to_str().unwrap(), dir.join("out"));
    let out = out.to_str().unwrap();
    let (code, _, stderr) = flashslide(&["run", slide, "--out", out, "--device", "cpu", "--quiet"]);
    assert_eq!(code, 1, "{stderr}");
    let report = std::fs::read_to_string(dir.join("out/batch-report.json")).unwrap();
    assert!(
        report.contains("MPP 0") && report.contains("implausible") && report.contains("pass --mpp"),
        "{report}"
    );
    let (code, _, stderr) = flashslide(&[
        "run", slide, "--out", out, "--device", "cpu", "--quiet", "--mpp", "0.5",
    ]);
    assert_eq!(code, 0, "{stderr}");
}
