//! The tiled pyramidal TIFF writer, read back by flashslide's reader.

use flashslide::slide::writer::{level_factors_until, Compression, PyramidOptions, PyramidWriter, Samples};
use flashslide::slide::Slide;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("writer");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A deterministic test image with detail at every scale.
fn pixel(x: u64, y: u64, c: u64) -> u8 {
    ((x * (3 + c) + y * (5 + 2 * c) + (x * y) / 97) % 251) as u8
}

fn write(path: &Path, w: u64, h: u64, options: PyramidOptions) {
    let spp = options.samples.per_pixel() as u64;
    let mut writer = PyramidWriter::create(path, w, h, options).unwrap();
    let mut y = 0;
    while y < h {
        let rows = writer.next_band_rows() as u64;
        let band: Vec<u8> = (0..rows * w * spp)
            .map(|i| pixel((i / spp) % w, y + (i / spp) / w, i % spp))
            .collect();
        writer.write_band(&band).unwrap();
        y += rows;
    }
    writer.finish().unwrap();
}

fn deflate(samples: Samples, w: u64, h: u64) -> PyramidOptions {
    PyramidOptions {
        tile_size: 256,
        compression: Compression::Deflate { level: 6 },
        samples,
        level_factors: level_factors_until(w, h, 4, 256),
        mpp: Some(0.25),
        description: None,
        thumbnail: false,
    }
}

#[test]
fn deflate_pyramid_round_trips_exactly() {
    let (w, h) = (1500u64, 1100u64); // not multiples of the tile size
    let path = scratch("deflate.tiff");
    write(&path, w, h, deflate(Samples::Rgb, w, h));
    let slide = Slide::open(&path).unwrap();
    assert_eq!(slide.vendor(), "generic-tiff");
    let dims: Vec<(u64, u64)> = slide.levels().iter().map(|l| (l.width, l.height)).collect();
    assert_eq!(dims, [(1500, 1100), (375, 275), (94, 69)]);
    assert!((slide.mpp().unwrap().x - 0.25).abs() < 1e-6);
    let img = slide.read_region(0, 0, 0, w as u32, h as u32).unwrap();
    for y in 0..h {
        for x in 0..w {
            let p = &img.data[((y * w + x) * 4) as usize..][..4];
            assert_eq!(
                p,
                [pixel(x, y, 0), pixel(x, y, 1), pixel(x, y, 2), 255],
                "pixel {x},{y}"
            );
        }
    }
    // Level 1 is the 4 × 4 box average of level 0 (edges average what they hold).
    let l1 = slide.read_region(1, 0, 0, 375, 275).unwrap();
    for (x, y) in [(0u64, 0u64), (100, 50), (374, 274)] {
        let mut sum = [0u32; 3];
        let mut n = 0;
        for sy in y * 4..((y + 1) * 4).min(h) {
            for sx in x * 4..((x + 1) * 4).min(w) {
                (0..3).for_each(|c| sum[c] += pixel(sx, sy, c as u64) as u32);
                n += 1;
            }
        }
        for (c, total) in sum.iter().enumerate() {
            assert_eq!(
                l1.data[((y * 375 + x) * 4) as usize + c] as u32,
                (total + n / 2) / n,
                "level 1 at {x},{y}"
            );
        }
    }
}

#[test]
fn greyscale_and_jpeg_aperio_layouts() {
    let (w, h) = (1200u64, 900u64);
    let grey = scratch("grey.tiff");
    write(&grey, w, h, deflate(Samples::Grey, w, h));
    let slide = Slide::open(&grey).unwrap();
    let img = slide.read_region(0, 600, 450, 2, 1).unwrap();
    assert_eq!(
        img.data[..4],
        [pixel(600, 450, 0), pixel(600, 450, 0), pixel(600, 450, 0), 255]
    );

    let svs = scratch("aperio.svs");
    write(&svs, w, h, PyramidOptions::aperio(w, h, 0.5, 90));
    let slide = Slide::open(&svs).unwrap();
    assert_eq!(slide.vendor(), "aperio");
    assert_eq!(slide.objective_power(), Some(20.0));
    assert_eq!(slide.mpp().unwrap().x, 0.5);
    assert_eq!(
        slide.levels().len(),
        2,
        "1200 px needs one 4x level to reach 1,024 px or less"
    );
    assert!(slide.associated_names().any(|n| n == "thumbnail"));
}

#[test]
fn bigtiff_when_the_file_could_pass_4_gib() {
    // 48k x 48k greyscale: 2.3 GB raw, so a poorly compressed file could pass 4 GiB.
    let (w, h) = (48_000u64, 48_000u64);
    let path = scratch("big.tiff");
    let mut options = deflate(Samples::Grey, w, h);
    options.level_factors = level_factors_until(w, h, 4, 1024);
    let mut writer = PyramidWriter::create(&path, w, h, options).unwrap();
    let band = vec![7u8; (256 * w) as usize];
    let mut y = 0;
    while y < h {
        let rows = writer.next_band_rows() as u64;
        writer.write_band(&band[..(rows * w) as usize]).unwrap();
        y += rows;
    }
    writer.finish().unwrap();
    let head = std::fs::read(&path).unwrap();
    assert_eq!(&head[..4], b"II+\0", "BigTIFF header");
    let slide = Slide::open(&path).unwrap();
    assert_eq!(slide.dimensions(), (w, h));
    assert_eq!(
        slide.read_region(0, 47_000, 47_000, 1, 1).unwrap().data,
        [7, 7, 7, 255]
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn nothing_appears_until_finished() {
    let path = scratch("unfinished.tiff");
    let _ = std::fs::remove_file(&path);
    let mut writer = PyramidWriter::create(&path, 600, 600, deflate(Samples::Grey, 600, 600)).unwrap();
    writer.write_band(&vec![1u8; 256 * 600]).unwrap();
    assert!(!path.exists());
    assert!(
        writer.write_band(&[0u8; 10]).is_err(),
        "a band of the wrong size is refused"
    );
    drop(writer);
    assert!(!path.exists());
    let leftovers = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".unfinished.tiff.partial")
        })
        .count();
    assert_eq!(leftovers, 0, "the partial file is removed");
}

/// Valid pyramids with level ratios that do not divide 256 (3, 5) or are very large (512):
/// probability.tiff follows the slide's levels whatever their ratios.
#[test]
fn probability_tiff_follows_any_level_ratio() {
    use flashslide::export::probability_tiff::write_probability_tiff;
    use flashslide::export::ProbabilityGrid;
    for (name, tile, factors, w, h) in [
        ("ratios-3-5.tiff", 240u32, vec![3u32, 5], 2000u64, 1500u64),
        ("ratio-512.tiff", 512, vec![512], 3000, 2600),
    ] {
        let path = scratch(name);
        let mut options = deflate(Samples::Rgb, w, h);
        options.tile_size = tile;
        options.level_factors = factors;
        write(&path, w, h, options);
        let slide = Slide::open(&path).unwrap();
        // A 10 × 8 grid of tokens with a probability gradient, one hole.
        let (rows, cols) = (8usize, 10usize);
        let mut values: Vec<f32> = (0..rows * cols).map(|i| i as f32 / 80.0).collect();
        values[13] = f32::NAN;
        let grid = ProbabilityGrid {
            rows,
            cols,
            cell: 200.0,
            values,
            mpp: 0.25,
        };
        let out = scratch(&format!("probability-{name}"));
        write_probability_tiff(&out, &slide, &grid).unwrap();
        let map = Slide::open(&out).unwrap();
        let levels = |s: &Slide| s.levels().iter().map(|l| (l.width, l.height)).collect::<Vec<_>>();
        assert_eq!(levels(&map), levels(&slide), "{name}");
        // Token (2, 3) is 0.2875 → 73; the hole is 0.
        let px = map.read_region(0, 3 * 200 + 100, 2 * 200 + 100, 1, 1).unwrap();
        assert_eq!(px.data[0], (23.0f32 / 80.0 * 255.0).round() as u8, "{name}");
        let hole = map.read_region(0, 3 * 200 + 100, 200 + 100, 1, 1).unwrap();
        assert_eq!(hole.data[0], 0, "{name}");
    }
}
