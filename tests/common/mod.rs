//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

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

/// Decodes a PNG into RGBA8.
pub fn read_png_rgba(path: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgba8();
    (img.width(), img.height(), img.into_raw())
}
