//! Helpers shared by the integration tests.
#![allow(dead_code)]

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

/// Decodes a PNG into RGBA8.
pub fn read_png_rgba(path: &Path) -> (u32, u32, Vec<u8>) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgba8();
    (img.width(), img.height(), img.into_raw())
}
