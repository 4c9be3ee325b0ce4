//! DICOM WSI series made by tools/make_dicom_slides.py (pydicom, imagecodecs, OpenSlide 4.0.1)
//! from CMU-1-Small-Region's pixels (synthetic ones without ../shared/slides): TILED_FULL
//! JPEG with a level split across two files (a concatenation) and label, overview and
//! thumbnail images; TILED_SPARSE JPEG with missing tiles and frames out of order; native
//! RGB frames with partial edge tiles; JPEG 2000 frames (lossless, lossy, and a thumbnail
//! with the reversible transform). Each is opened from a different
//! kind of file of its series, and compared with OpenSlide's properties and regions.

mod common;

use common::{
    check_openslide_properties, check_pixels, generated_by, read_png_rgba, read_reference_entry, Tolerance,
};
use flashslide::analysis::jpeg_tiles::{assemble_on_cpu, read_jpeg_batch};
use flashslide::analysis::plan::{read_tile, Tile, TilePlan};
use flashslide::slide::Slide;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The generator's output, made once per test run; `None` after a SKIPPED line when Python
/// or its packages are missing.
fn generated(test: &str) -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        generated_by(
            "make_dicom_slides.py",
            "dicom-slides",
            Some("FLASHSLIDE_REQUIRE_PYDICOM"),
        )
    });
    if dir.is_none() {
        eprintln!("SKIPPED {test}: python3 with pydicom, imagecodecs, numpy, pillow and openslide is needed");
    }
    dir.as_deref()
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

fn series<'a>(m: &'a Value, name: &str) -> &'a Value {
    m["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["series"] == name)
        .unwrap()
}

/// Opens a series from the file OpenSlide was given, checks its shape and every property
/// OpenSlide reports (but its own content hash), then every region and associated image
/// against OpenSlide's pixels; returns the slide.
fn check_series(dir: &Path, name: &str) -> Slide {
    let m = manifest(dir);
    let s = series(&m, name);
    let os = &s["openslide"];
    let file = dir
        .join(s["folder"].as_str().unwrap())
        .join(s["file_passed"].as_str().unwrap());
    let slide = Slide::open(&file).unwrap();
    assert_eq!(slide.vendor(), "dicom");
    let members = s["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f.get("decoy").is_none())
        .count();
    let why = slide.detected_by();
    assert!(
        why.contains("VL Whole Slide Microscopy") && why.contains(&format!("{members} files")),
        "{why}"
    );
    let dims: Vec<(u64, u64)> = slide.levels().iter().map(|l| (l.width, l.height)).collect();
    let want: Vec<(u64, u64)> = os["level_dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d[0].as_u64().unwrap(), d[1].as_u64().unwrap()))
        .collect();
    assert_eq!(dims, want, "{name}: levels");
    let names: Vec<&str> = slide.associated_names().collect();
    let want: Vec<&str> = os["associated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, want, "{name}: associated images");

    check_openslide_properties(name, &slide, &dir.join(os["properties"].as_str().unwrap()));

    let mut checked = 0;
    for e in m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["series"] == name)
    {
        let entry = e["name"].as_str().unwrap();
        let (got, want) = read_reference_entry(&slide, e, &dir.join(e["png"].as_str().unwrap()));
        let tol = if e["lossless"] == true {
            Tolerance::Exact
        } else {
            Tolerance::Jpeg
        };
        check_pixels(&format!("dicom {name} {entry}"), &got, &want, tol);
        checked += 1;
    }
    assert!(checked >= 5, "{name}: only {checked} references");
    slide
}

#[test]
fn tiled_full_jpeg_with_a_concatenation_and_associated_images() {
    let Some(dir) = generated("tiled_full_jpeg_with_a_concatenation_and_associated_images") else {
        return;
    };
    let slide = check_series(dir, "full-jpeg");
    assert_eq!(slide.objective_power(), Some(20.0));
    // Opened from any of its files, or from its folder (which also holds a decoy of another
    // series), it is the same slide.
    let folder = dir.join("full-jpeg");
    let mut from: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    from.sort();
    let levels = |s: &Slide| s.levels().iter().map(|l| (l.width, l.height)).collect::<Vec<_>>();
    let mut opened = 0;
    for path in from {
        match Slide::open(&path) {
            // The decoy: a one-level slide of its own series.
            Ok(s) if s.levels().len() == 1 => assert_eq!(levels(&s), [(64, 64)]),
            Ok(s) => {
                assert_eq!(levels(&s), levels(&slide), "{}", path.display());
                opened += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(opened, 7);
}

#[test]
fn folder_of_one_series_is_a_slide_and_of_two_is_refused_by_name() {
    let Some(dir) = generated("folder_of_one_series_is_a_slide_and_of_two_is_refused_by_name") else {
        return;
    };
    let slide = Slide::open(dir.join("sparse-jpeg")).unwrap();
    assert_eq!(slide.levels().len(), 2);
    // full-jpeg/ holds the slide and a decoy of another series.
    let e = Slide::open(dir.join("full-jpeg")).unwrap_err().to_string();
    assert!(e.contains("2 DICOM series"), "{e}");
}

#[test]
fn tiled_sparse_jpeg_with_missing_tiles() {
    let Some(dir) = generated("tiled_sparse_jpeg_with_missing_tiles") else {
        return;
    };
    check_series(dir, "sparse-jpeg");
}

/// Frames at camera-field positions off the tile grid, overlapping, one missing a level:
/// OpenSlide 4.0.1 refuses the series (libdicom: "unsupported frame alignment"); each region
/// is checked against the generator's own decode, painted in OpenSlide's tilemap order. The
/// fields are tinted apart, so a frame painted in the wrong order shows.
#[test]
fn frames_off_the_tile_grid_overlap_in_openslides_tilemap_order() {
    let Some(dir) = generated("frames_off_the_tile_grid_overlap_in_openslides_tilemap_order") else {
        return;
    };
    let m = manifest(dir);
    let s = series(&m, "positioned");
    if let Some(os) = s["openslide"].as_object() {
        assert_eq!(
            os["opened"], false,
            "OpenSlide now reads off-grid frames: compare with it"
        );
    }
    let slide = Slide::open(dir.join("positioned")).unwrap();
    let dims: Vec<(u64, u64)> = slide.levels().iter().map(|l| (l.width, l.height)).collect();
    assert_eq!(dims, [(720, 560), (360, 280)]);
    let mut checked = 0;
    for e in m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["series"] == "positioned")
    {
        let (w, h, want) = read_png_rgba(&dir.join(e["decoded_png"].as_str().unwrap()));
        let level = e["level"].as_u64().unwrap() as usize;
        let (x, y) = (e["x"].as_i64().unwrap(), e["y"].as_i64().unwrap());
        let got = slide.read_region(level, x, y, w, h).unwrap();
        let tol = if e["lossless"] == true {
            Tolerance::Exact
        } else {
            Tolerance::Jpeg
        };
        check_pixels(&format!("positioned {}", e["name"]), &got.data, &want, tol);
        checked += 1;
    }
    assert_eq!(checked, 7);

    // The device decoder's recipe (its kernel computes JpegBatch::assemble), run here with
    // the CPU's JPEG decoder, gives read_tile's pixels exactly: model tiles over overlaps,
    // the missing field and the edges, at 1 and 2 level pixels per model pixel.
    for (tile_px, read_px) in [(224u32, 224u32), (128, 256)] {
        let plan = TilePlan::for_reading(0.25, tile_px, read_px);
        let tiles: Vec<Tile> = [(0, 0), (100, 50), (230, 110), (500, 330), (600, 460)]
            .iter()
            .map(|&(x, y)| Tile { col: 0, row: 0, x, y })
            .collect();
        let batch = read_jpeg_batch(&slide, &plan, &tiles)
            .unwrap()
            .expect("level 0 stores JPEG frames");
        let want: Vec<u8> = tiles
            .iter()
            .flat_map(|t| read_tile(&slide, &plan, t).unwrap())
            .collect();
        let got = assemble_on_cpu(&batch).unwrap();
        let differing = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(
            (got.len(), differing),
            (want.len(), 0),
            "{tile_px} px from {read_px}"
        );
    }
}

#[test]
fn native_rgb_frames_with_partial_edge_tiles() {
    let Some(dir) = generated("native_rgb_frames_with_partial_edge_tiles") else {
        return;
    };
    let slide = check_series(dir, "native");
    let mpp = slide.mpp().unwrap();
    assert!(
        (mpp.x - 0.502).abs() < 1e-9 && (mpp.y - 0.498).abs() < 1e-9,
        "{mpp:?}"
    );
}

#[test]
fn jpeg_2000_frames_lossless_and_lossy() {
    let Some(dir) = generated("jpeg_2000_frames_lossless_and_lossy") else {
        return;
    };
    check_series(dir, "jpeg2000");
}

#[test]
fn discovery_lists_each_series_once_and_the_fingerprint_follows_every_file() {
    let Some(dir) = generated("discovery_lists_each_series_once_and_the_fingerprint_follows_every_file")
    else {
        return;
    };
    let m = manifest(dir);
    let uid = |name: &str| {
        series(&m, name)["series_instance_uid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let found = flashslide::slide::discover::walk(&[dir.to_path_buf()]).unwrap();
    let mut names: Vec<String> = found.jobs.iter().map(|j| j.name.clone()).collect();
    names.sort();
    // full-jpeg/ holds two series (the slide and a decoy): each named by folder and UID.
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(
        names.contains(&format!("full-jpeg__{}", uid("full-jpeg"))),
        "{names:?}"
    );
    for single in ["jpeg2000", "native", "positioned", "sparse-jpeg"] {
        assert!(names.contains(&single.to_string()), "{names:?}");
        let job = found.jobs.iter().find(|j| j.name == single).unwrap();
        assert_eq!(job.path, dir.join(single));
    }
    // Two files of one series named as inputs: one slide, named by its folder.
    let sparse = dir.join("sparse-jpeg");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&sparse)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let found = flashslide::slide::discover::walk(&files).unwrap();
    assert_eq!(found.jobs.len(), 1, "{:?}", found.jobs);
    assert_eq!(found.jobs[0].name, "sparse-jpeg");

    // The fingerprint of a multi-file slide covers each file: rewriting one changes it.
    let copy = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dicom-fingerprint");
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&copy).unwrap();
    for f in &files {
        std::fs::copy(f, copy.join(f.file_name().unwrap())).unwrap();
    }
    let fingerprint = |p: &Path| flashslide::slide::fingerprint::fingerprint(p).unwrap();
    let before = fingerprint(&copy);
    assert_eq!(before, fingerprint(&copy.join(files[1].file_name().unwrap())));
    assert_eq!(
        before.size,
        files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum::<u64>()
    );
    let last = copy.join(files[1].file_name().unwrap());
    let mut bytes = std::fs::read(&last).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xFF;
    std::fs::write(&last, &bytes).unwrap();
    assert_ne!(before.head_tail_sha256, fingerprint(&copy).head_tail_sha256);
}

/// `run` end to end over one folder of every format read: an Aperio SVS (the bundled
/// sample), generated DICOM series (JPEG, JPEG 2000, uncompressed), and from
/// ../shared/slides where it is present a generic TIFF, an NDPI and a real DICOM pyramid.
#[test]
fn run_over_a_folder_of_every_format() {
    let Some(dir) = generated("run_over_a_folder_of_every_format") else {
        return;
    };
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("every-format");
    let _ = std::fs::remove_dir_all(&root);
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let link = |from: &Path, name: &str| std::os::unix::fs::symlink(from, input.join(name)).unwrap();
    let project = Path::new(env!("CARGO_MANIFEST_DIR"));
    link(&project.join("samples/synth-s101-000.svs"), "aperio.svs");
    let mut want = vec!["aperio.svs", "sparse-jpeg", "jpeg2000", "native"];
    for series in ["sparse-jpeg", "jpeg2000", "native"] {
        link(&dir.join(series), series);
    }
    let shared = project.join("../shared/slides");
    if shared.is_dir() {
        link(&shared.join("generic-tiff/small_HE_levels.tiff"), "generic.tiff");
        link(&shared.join("hamamatsu/test3-DAPI-2-387.ndpi"), "hamamatsu.ndpi");
        link(&shared.join("dicom/cmu-1-small-region"), "cmu-dicom");
        want.extend(["generic.tiff", "hamamatsu.ndpi", "cmu-dicom"]);
    } else {
        eprintln!("(../shared/slides absent: generic TIFF, NDPI and the real DICOM pyramid left out)");
    }
    let out = root.join("out");
    // The generic TIFF states 352.9 µm/px (a 72-dpi resolution): --mpp gives it one; the
    // NDPI is fluorescence (a dark background).
    let status = Command::new(env!("CARGO_BIN_EXE_flashslide"))
        .args(["run", input.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args([
            "--device",
            "cpu",
            "--mpp",
            "0.5",
            "--allow-dark-background",
            "--quiet",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "{stderr}");
    for name in want {
        let summary = out.join(name).join("summary.json");
        assert!(summary.is_file(), "{name}: no summary.json ({stderr})");
    }
}
