//! heatmap.png as index.html's cards show it: its size on the samples and the real slides,
//! labels of at least 2% of its long side, the tint on tissue only and the regions at the
//! threshold outlined.

mod common;

use common::{fresh_dir, shared_slides};
use flashslide::analysis::tissue::{detect_tissue, TissueMask, TissueOptions};
use flashslide::export::font::{draw_text, text_width};
use flashslide::export::heatmap::{render, thumbnail, write_heatmap, Heatmap, Thumbnail, OUTLINE};
use flashslide::export::ProbabilityGrid;
use flashslide::slide::Slide;
use std::path::Path;

/// Probabilities rising from the top-left corner to the bottom-right on the cells of
/// `cell` level-0 pixels holding tissue, NaN elsewhere (as the pipeline leaves them).
fn gradient_grid(mask: &TissueMask, cell: f64, width: u64, height: u64) -> ProbabilityGrid {
    let (cols, rows) = (
        (width as f64 / cell).ceil() as usize,
        (height as f64 / cell).ceil() as usize,
    );
    let values = (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            if mask.fraction(c as f64 * cell, r as f64 * cell, cell, cell) > 0.1 {
                (r + c) as f32 / (rows + cols - 2).max(1) as f32
            } else {
                f32::NAN
            }
        })
        .collect();
    ProbabilityGrid {
        rows,
        cols,
        cell,
        values,
        mpp: 0.5,
    }
}

/// The rendered height of a label at the heatmap's size: the box of its dark pixels.
fn rendered_label_height(heatmap: &Heatmap, label: &str) -> usize {
    let cap = heatmap.label_px;
    let (width, height) = (text_width(label, cap) + 20, (3.0 * cap) as usize);
    let mut img = vec![255u8; width * height * 3];
    draw_text(&mut img, width, 10, cap as usize, label, cap, [0, 0, 0]);
    let rows: Vec<usize> = (0..height)
        .filter(|&y| (0..width).any(|x| img[(y * width + x) * 3] < 128))
        .collect();
    rows.last().unwrap() - rows.first().unwrap() + 1
}

/// Writes the heatmap of `path` as a run does (1,600 px asked) and checks its size and labels.
fn check_slide(path: &Path) {
    let slide = Slide::open(path).unwrap();
    let (w0, h0) = slide.dimensions();
    let mask = detect_tissue(&slide, 0.5, &TissueOptions::default()).unwrap();
    let grid = gradient_grid(&mask, 256.0, w0, h0);
    let name = path.file_name().unwrap().to_string_lossy();
    // One folder a slide: the sample and real-slide tests run in parallel.
    let out = fresh_dir(&format!("heatmap-size-{name}")).join("heatmap.png");
    write_heatmap(&out, &slide, &grid, &mask, 0.5, 1600).unwrap();
    let png = image::open(&out).unwrap();
    assert!(
        png.width() <= 2000 && png.height() <= 2000,
        "{name}: {}x{}",
        png.width(),
        png.height()
    );
    // The slide part: the budget used, not exceeded.
    let thumb = thumbnail(&slide, 1600).unwrap();
    assert_eq!(
        thumb.width.max(thumb.height) as u64,
        w0.max(h0).min(1600),
        "{name}: thumbnail {}x{} of {w0}x{h0}",
        thumb.width,
        thumb.height
    );
    let heatmap = render(&thumb, &grid, &mask, 0.5);
    assert_eq!(heatmap.image.dimensions(), (png.width(), png.height()));
    let long = png.width().max(png.height()) as f64;
    for label in ["0.5", "1 mm", TITLE_SAMPLE] {
        let h = rendered_label_height(&heatmap, label);
        assert!(
            h as f64 >= 0.02 * long,
            "{name}: {label:?} {h} px tall on a {long}-px picture"
        );
    }
}

/// Capitals only (descenders would inflate the measured height).
const TITLE_SAMPLE: &str = "HE";

#[test]
fn sample_heatmaps_fit_index_cards() {
    for name in ["synth-s101-000", "synth-s102-000"] {
        check_slide(&Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("samples/{name}.svs")));
    }
}

#[test]
fn real_slide_heatmaps_fit_index_cards() {
    let Some(dir) = shared_slides("real_slide_heatmaps_fit_index_cards") else {
        return;
    };
    // CMU-1-Small-Region has one level, 2220 x 2967: its heatmap came out 2310 x 2967.
    for file in ["aperio/CMU-1-Small-Region.svs", "generic-tiff/yb10kx5k.zstd.tiff"] {
        check_slide(&dir.join(file));
    }
}

/// A uniform grey slide picture, `side` pixels square, at `scale` level-0 pixels per pixel.
fn grey(side: usize, scale: f64) -> Thumbnail {
    Thumbnail {
        rgb: vec![180; side * side * 3],
        width: side,
        height: side,
        scale,
    }
}

/// A disk of tissue (centre and radius in level-0 pixels) on a mask of `downsample`.
fn disk_mask(side0: f64, downsample: f64, centre: f64, radius: f64) -> TissueMask {
    let n = (side0 / downsample).ceil() as usize;
    let tissue = (0..n * n)
        .map(|i| {
            let (x, y) = (
                ((i % n) as f64 + 0.5) * downsample,
                ((i / n) as f64 + 0.5) * downsample,
            );
            (x - centre).hypot(y - centre) <= radius
        })
        .collect();
    TissueMask {
        width: n,
        height: n,
        downsample,
        tissue,
        threshold: 0,
        median_brightness: 240,
    }
}

#[test]
fn tint_and_outline_stay_on_the_tissue() {
    // 800 level-0 pixels square at 4 per thumbnail pixel; tissue a disk of radius 250 in the
    // middle; every token (64 px) holds a probability, as whole tiles at its edge would.
    let (side, scale, centre, radius) = (200usize, 4.0, 400.0, 250.0);
    // Masks coarser (8) and finer (2) than the thumbnail: interpolated and averaged.
    for downsample in [8.0, 2.0] {
        let mask = disk_mask(800.0, downsample, centre, radius);
        for (p, outlined) in [(0.9f32, true), (0.3, false)] {
            let grid = ProbabilityGrid {
                rows: 13,
                cols: 13,
                cell: 64.0,
                values: vec![p; 169],
                mpp: 0.5,
            };
            let heatmap = render(&grey(side, scale), &grid, &mask, 0.5);
            let (mut tinted, mut outline) = (0, 0);
            for y in 0..side {
                for x in 0..side {
                    let px = heatmap.image.get_pixel(x as u32, y as u32).0;
                    let d = ((x as f64 + 0.5) * scale - centre).hypot((y as f64 + 0.5) * scale - centre);
                    // Beyond the disk by more than a mask pixel and a thumbnail pixel: untouched.
                    if d > radius + downsample + scale * 1.5 {
                        assert_eq!(px, [180; 3], "mask /{downsample}, p {p}: ({x}, {y}) changed");
                    }
                    if px == OUTLINE {
                        outline += 1;
                        assert!(d <= radius + scale, "outline off the tissue at ({x}, {y})");
                        assert!(
                            d >= radius - 6.0 * scale,
                            "outline inside the region at ({x}, {y})"
                        );
                    } else if px != [180; 3] {
                        tinted += 1;
                    }
                }
            }
            assert!(tinted > 5000, "mask /{downsample}, p {p}: {tinted} tinted");
            assert_eq!(
                outline > 0,
                outlined,
                "mask /{downsample}, p {p}: {outline} outline pixels"
            );
        }
    }
}
