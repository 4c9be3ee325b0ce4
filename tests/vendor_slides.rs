//! Scanner formats made by tools/make_vendor_slides.py from CMU-1-Small-Region's pixels
//! (synthetic ones without ../shared/slides): MIRAX, Philips TIFF, Leica SCN, Ventana BIF
//! against OpenSlide 4.0.1 (levels, every property, regions, associated images), OME-TIFF
//! against tifffile; slides a reader must refuse are refused with their reason.

mod common;

use common::{check_openslide_properties, check_pixels, generated_by, read_reference_entry, Tolerance};
use flashslide::slide::Slide;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The generator's output, made once per test run; `None` after a SKIPPED line when Python
/// or its packages are missing.
fn generated(test: &str) -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        generated_by(
            "make_vendor_slides.py",
            "vendor-slides",
            Some("FLASHSLIDE_REQUIRE_PYDICOM"),
        )
    });
    if dir.is_none() {
        eprintln!(
            "SKIPPED {test}: python3 with tifffile, imagecodecs, numpy, pillow and openslide is needed"
        );
    }
    dir.as_deref()
}

/// The slides the generator makes to be refused, and words flashslide's error must hold.
const REFUSALS: &[(&str, &str)] = &[
    ("philips-spacing-count", "3 pixel spacings for 2 tiled levels"),
    ("philips-two-wsi", "2 whole-slide images"),
    (
        "ome-fluorescence-uint16",
        "OME-TIFF of 3 channels in separate planes",
    ),
    (
        "ome-fluorescence-uint8",
        "OME-TIFF of 3 channels in separate planes",
    ),
    ("ome-zstack-rgb", "3 z-planes"),
    ("scn-fluorescence", "without a brightfield image"),
    (
        "mirax-refuse-index-version",
        "MIRAX index of a version other than 01.02",
    ),
    ("mirax-refuse-position-size", "MIRAX position record of 27 bytes"),
    ("mirax-refuse-image-y", "lies past the last row"),
    ("bif-dp200", "Ventana joints in direction \"LEFT\""),
];

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Checks every slide of one format; returns how many were read (refused ones not counted).
fn check_format(dir: &Path, format: &str, vendor: &str) -> usize {
    check_format_resampled(dir, format, vendor, &[])
}

/// [`check_format`], with the regions (`slide/entry`) where the reference resamples (fields
/// between pixels): their differences reported, not bounded.
fn check_format_resampled(dir: &Path, format: &str, vendor: &str, resampled: &[&str]) -> usize {
    let m = manifest(dir);
    let slides: Vec<&Value> = m["slides"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["format"] == format)
        .collect();
    assert!(!slides.is_empty(), "no {format} slides in the manifest");
    let mut read = 0;
    for s in slides {
        let name = s["name"].as_str().unwrap();
        let path = dir.join(s["path"].as_str().unwrap());
        if s["refuse"].is_string() {
            let e = Slide::open(&path)
                .err()
                .unwrap_or_else(|| panic!("{name}: opened; it must be refused"));
            let (_, words) = REFUSALS
                .iter()
                .find(|(slide, _)| *slide == name)
                .unwrap_or_else(|| panic!("{name}: refused slide without its expected error here"));
            assert!(e.to_string().contains(words), "{name}: {e} (wants \"{words}\")");
            eprintln!("{name}: refused: {e}");
            continue;
        }
        assert_eq!(
            s["opened"], true,
            "{name}: the reference reader failed: {}",
            s["error"]
        );
        let slide = Slide::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(slide.vendor(), vendor, "{name}");
        check_slide(dir, &m, s, &slide, resampled);
        read += 1;
    }
    read
}

fn check_slide(dir: &Path, m: &Value, s: &Value, slide: &Slide, resampled: &[&str]) {
    let name = s["name"].as_str().unwrap();
    let dims: Vec<(u64, u64)> = slide.levels().iter().map(|l| (l.width, l.height)).collect();
    let want: Vec<(u64, u64)> = s["level_dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d[0].as_u64().unwrap(), d[1].as_u64().unwrap()))
        .collect();
    assert_eq!(dims, want, "{name}: levels");
    let names: Vec<&str> = slide.associated_names().collect();
    let want: Vec<&str> = s["associated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, want, "{name}: associated images");

    if s["reference"] == "openslide" {
        check_openslide_properties(name, slide, &dir.join(s["properties"].as_str().unwrap()));
    }

    let mut checked = 0;
    for e in m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["slide"] == name)
    {
        let entry = e["name"].as_str().unwrap();
        let png = e["png"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} {entry}: no reference: {}", e["reference_error"]));
        let (got, want) = read_reference_entry(slide, e, &dir.join(png));
        let tol = if resampled.contains(&format!("{name}/{entry}").as_str()) {
            Tolerance::Report
        } else if e["lossless"] == true {
            Tolerance::Exact
        } else {
            Tolerance::Jpeg
        };
        check_pixels(&format!("{name} {entry}"), &got, &want, tol);
        checked += 1;
    }
    assert!(checked >= 3, "{name}: only {checked} references");
}

#[test]
fn ome_tiff_brightfield_pyramids_match_tifffile_and_others_are_refused() {
    let Some(dir) = generated("ome_tiff_brightfield_pyramids_match_tifffile_and_others_are_refused") else {
        return;
    };
    assert!(check_format(dir, "ometiff", "ome-tiff") >= 1);
}

#[test]
fn philips_tiff_sparse_padded_levels_and_xml_images_match_openslide() {
    let Some(dir) = generated("philips_tiff_sparse_padded_levels_and_xml_images_match_openslide") else {
        return;
    };
    assert_eq!(check_format(dir, "philips", "philips"), 2);
}

#[test]
fn leica_scn_main_images_on_the_glass_match_openslide() {
    let Some(dir) = generated("leica_scn_main_images_on_the_glass_match_openslide") else {
        return;
    };
    assert_eq!(check_format(dir, "scn", "leica"), 3);
}

/// Ventana BIF: fields on one grid stepped by the joints' mean overlap (weighted by
/// confidence), numbered from the bottom row in a serpentine, several scanned areas placed
/// by their positions; the older Ventana TIFF as plain levels.
#[test]
fn ventana_bif_fields_stitched_as_openslide_stitches_them() {
    let Some(dir) = generated("ventana_bif_fields_stitched_as_openslide_stitches_them") else {
        return;
    };
    // A step of 230.4 × 204.8 pixels: OpenSlide resamples every field; flashslide places
    // each at the nearest pixel.
    let resampled: Vec<String> = manifest(dir)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["slide"] == "bif-subpixel" && e["kind"] == "region")
        .map(|e| format!("bif-subpixel/{}", e["name"].as_str().unwrap()))
        .collect();
    let resampled: Vec<&str> = resampled.iter().map(String::as_str).collect();
    assert_eq!(check_format_resampled(dir, "bif", "ventana", &resampled), 4);
}

/// MIRAX: overlapping camera fields from a zlib or plain position record or a nominal grid,
/// JPEG, PNG and BMP images, images split per field at coarser levels, missing fields, two
/// data files, index pages out of order; label, macro and thumbnail.
#[test]
fn mirax_fields_in_openslides_order_match_openslide() {
    let Some(dir) = generated("mirax_fields_in_openslides_order_match_openslide") else {
        return;
    };
    // OpenSlide resamples fields whose positions fall between pixels (coarser levels);
    // flashslide places them at the nearest pixel.
    let resampled = ["mirax-png-subpixel/l1-inside", "mirax-png-subpixel/l2-inside"];
    assert_eq!(check_format_resampled(dir, "mirax", "mirax", &resampled), 4);
}

/// Discovery, `info` and `run` over a folder of every format (a MIRAX slide with its folder):
/// each found once and analysed; a second run skips all; a
/// changed byte in a MIRAX data file makes that slide new again (its fingerprint covers its
/// folder's files).
#[test]
fn run_over_a_folder_of_every_format_resumes_and_follows_mirax_data_files() {
    let Some(dir) = generated("run_over_a_folder_of_every_format_resumes_and_follows_mirax_data_files")
    else {
        return;
    };
    let input = common::fresh_dir("vendor-run-in");
    for file in [
        "philips/philips-sparse.tiff",
        "scn/scn-brightfield.scn",
        "ometiff/ome-subifd-jpeg.ome.tif",
        "bif/bif-stitched.bif",
        "mirax/mirax-jpeg-stitching.mrxs",
    ] {
        let from = dir.join(file);
        std::fs::copy(&from, input.join(from.file_name().unwrap())).unwrap();
    }
    let data = input.join("mirax-jpeg-stitching");
    std::fs::create_dir(&data).unwrap();
    for e in std::fs::read_dir(dir.join("mirax/mirax-jpeg-stitching")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), data.join(e.file_name())).unwrap();
    }
    for (file, vendor) in [
        ("philips-sparse.tiff", "philips"),
        ("scn-brightfield.scn", "leica"),
        ("ome-subifd-jpeg.ome.tif", "ome-tiff"),
        ("mirax-jpeg-stitching.mrxs", "mirax"),
        ("bif-stitched.bif", "ventana"),
    ] {
        let (code, out, err) = common::flashslide(&["info", input.join(file).to_str().unwrap()]);
        assert_eq!(code, 0, "{file}: {err}");
        assert!(out.contains(vendor), "{file}: {out}");
    }

    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vendor-run-out");
    let _ = std::fs::remove_dir_all(&out);
    let run = || {
        let (code, _, err) = common::flashslide(&[
            "run",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--device",
            "cpu",
            "--quiet",
        ]);
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("batch-report.json")).unwrap()).unwrap();
        let outcomes: BTreeMap<String, String> = report["slides"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["outcome"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (code, err, outcomes)
    };
    let (_, err, outcomes) = run();
    assert_eq!(outcomes.len(), 5, "{outcomes:?} {err}");
    for name in [
        "philips-sparse.tiff",
        "scn-brightfield.scn",
        "ome-subifd-jpeg.ome.tif",
        "mirax-jpeg-stitching.mrxs",
        "bif-stitched.bif",
    ] {
        assert_eq!(outcomes[name], "done", "{name}: {err}");
        assert!(out.join(name).join("summary.json").is_file(), "{name}");
    }
    let (_, _, again) = run();
    assert!(again.values().all(|o| o == "skipped"), "{again:?}");
    // One byte of the MIRAX slide's last data file changed: that slide alone is analysed again.
    let last = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dat") && p.file_name().unwrap() != "Index.dat")
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&last, bytes).unwrap();
    let (_, err, third) = run();
    assert_eq!(third["mirax-jpeg-stitching.mrxs"], "done", "{third:?} {err}");
    assert_eq!(third["philips-sparse.tiff"], "skipped", "{third:?}");
}
