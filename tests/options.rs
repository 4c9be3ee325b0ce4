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
