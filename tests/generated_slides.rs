//! The reader on slides the real test set lacks, made by tools/make_test_slides.py
//! (tifffile, imagecodecs; openslide-python when installed): a multi-level Aperio SVS with
//! YCbCr 4:2:0 JPEG tiles, an Aperio SVS with JPEG 2000 tiles (33003 and 33005), a sparse
//! BigTIFF whose pixels lie past 4 GiB, and the real NDPI
//! re-laid past 4 GiB. References are tifffile's decode (libjpeg-turbo) and OpenSlide's.

mod common;

use common::{check_pixels, generated_by, read_png_rgba, Tolerance};
use flashslide::slide::Slide;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The generator's output, made once per test run; `None` after a SKIPPED line when Python
/// or its packages are missing.
fn generated(test: &str) -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let dir = DIR.get_or_init(|| generated_by("make_test_slides.py", "generated-slides", None));
    if dir.is_none() {
        eprintln!("SKIPPED {test}: python3 with tifffile, imagecodecs, numpy and pillow is needed");
    }
    dir.as_deref()
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Checks every region and associated-image reference of `file` in the manifest.
fn check_references(dir: &Path, file: &str, default_tol: Tolerance) -> usize {
    let slide = Slide::open(dir.join(file)).unwrap();
    let m = manifest(dir);
    let mut n = 0;
    for e in m["entries"].as_array().unwrap() {
        if e["file"] != file || e["kind"] == "file" {
            continue;
        }
        let name = e["name"].as_str().unwrap();
        let (w, h, want) = read_png_rgba(&dir.join(e["png"].as_str().unwrap()));
        let got = if e["kind"] == "associated" {
            slide.read_associated(name).unwrap()
        } else {
            let level = e["level"].as_u64().unwrap() as usize;
            let (x, y) = (e["x"].as_i64().unwrap(), e["y"].as_i64().unwrap());
            slide.read_region(level, x, y, w, h).unwrap()
        };
        assert_eq!((got.width, got.height), (w, h), "{file} {name}");
        let tol = if e["lossless"] == true {
            Tolerance::Exact
        } else {
            default_tol
        };
        check_pixels(
            &format!("{file} {name} vs {}", e["source"].as_str().unwrap()),
            &got.data,
            &want,
            tol,
        );
        n += 1;
    }
    n
}

/// Every property OpenSlide reports (but its own content hash) is reported the same.
fn check_openslide_properties(dir: &Path, file: &str, stem: &str) {
    let path = dir
        .join("references")
        .join(format!("{stem}.openslide.properties.json"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("(openslide-python not installed: properties of {file} not compared)");
        return;
    };
    let want: BTreeMap<String, String> = serde_json::from_str(&text).unwrap();
    let slide = Slide::open(dir.join(file)).unwrap();
    for (k, v) in want.iter().filter(|(k, _)| *k != "openslide.quickhash-1") {
        assert_eq!(slide.property(k), Some(v.as_str()), "{file}: property {k}");
    }
}

#[test]
fn aperio_with_ycbcr_420_tiles() {
    let Some(dir) = generated("aperio_with_ycbcr_420_tiles") else {
        return;
    };
    let slide = Slide::open(dir.join("aperio_ycbcr.svs")).unwrap();
    assert_eq!(slide.vendor(), "aperio");
    assert_eq!(slide.levels().len(), 3);
    assert_eq!(
        slide.associated_names().collect::<Vec<_>>(),
        ["label", "macro", "thumbnail"]
    );
    assert_eq!(slide.objective_power(), Some(20.0));
    let n = check_references(dir, "aperio_ycbcr.svs", Tolerance::Jpeg);
    assert!(n >= 8);
    check_openslide_properties(dir, "aperio_ycbcr.svs", "aperio_ycbcr");
}

#[test]
fn bigtiff_with_pixels_past_4_gib() {
    let Some(dir) = generated("bigtiff_with_pixels_past_4_gib") else {
        return;
    };
    let path = dir.join("bigtiff_sparse.tiff");
    assert!(std::fs::metadata(&path).unwrap().len() > 1 << 32);
    let slide = Slide::open(&path).unwrap();
    assert_eq!(slide.vendor(), "generic-tiff");
    assert_eq!(slide.dimensions(), (65536, 40960));
    assert!((slide.mpp().unwrap().x - 0.25).abs() < 1e-12);
    let n = check_references(dir, "bigtiff_sparse.tiff", Tolerance::Exact);
    assert!(n >= 4);
    check_openslide_properties(dir, "bigtiff_sparse.tiff", "bigtiff_sparse");
}

#[test]
fn ndpi_with_strips_past_4_gib_reads_like_the_original() {
    let Some(dir) = generated("ndpi_with_strips_past_4_gib_reads_like_the_original") else {
        return;
    };
    let moved_path = dir.join("ndpi_past_4gib.ndpi");
    if !moved_path.exists() {
        eprintln!("SKIPPED ndpi_with_strips_past_4_gib: ../shared/slides is absent");
        return;
    }
    assert!(std::fs::metadata(&moved_path).unwrap().len() > 1 << 32);
    let original =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/slides/hamamatsu/test3-DAPI-2-387.ndpi");
    let (a, b) = (Slide::open(&original).unwrap(), Slide::open(&moved_path).unwrap());
    assert_eq!(a.properties(), b.properties());
    for (level, l) in a.levels().iter().enumerate() {
        let ds = l.downsample as i64;
        for (x, y, w, h) in [
            (0, 0, 300, 200),
            (l.width as i64 / 3, l.height as i64 / 2, 257, 129),
        ] {
            let ra = a.read_region(level, x * ds, y * ds, w, h).unwrap();
            let rb = b.read_region(level, x * ds, y * ds, w, h).unwrap();
            assert!(ra.data == rb.data, "level {level} region at {x},{y} differs");
        }
    }
    assert_eq!(
        a.read_associated("macro").unwrap(),
        b.read_associated("macro").unwrap()
    );
    check_references(dir, "ndpi_past_4gib.ndpi", Tolerance::Jpeg);
}

#[test]
fn aperio_with_jpeg_2000_tiles() {
    let Some(dir) = generated("aperio_with_jpeg_2000_tiles") else {
        return;
    };
    let slide = Slide::open(dir.join("aperio_j2k.svs")).unwrap();
    assert_eq!(slide.vendor(), "aperio");
    assert_eq!(slide.levels().len(), 2);
    // Level 0 (33003: YCbCr without a codestream transform) against OpenSlide's conversion
    // to RGB, within rounding; level 1 (33005, lossless RGB) exactly the source's pixels.
    let n = check_references(dir, "aperio_j2k.svs", Tolerance::Jpeg);
    assert!(n >= 4);
    check_openslide_properties(dir, "aperio_j2k.svs", "aperio_j2k");
}
