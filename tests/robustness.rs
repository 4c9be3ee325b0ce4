//! Broken and unsupported input: every file in ../shared/slides/negative and thousands of
//! truncated or byte-flipped copies of the good slides must give an error or an image —
//! never a panic, a read over 5 seconds, or more than 1 GiB allocated.

mod common;

use common::counting_alloc::{allocated_since, serial, start_case, CountingAlloc};
use common::shared_slides;
use flashslide::slide::Slide;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MAX_CASE_BYTES: usize = 1 << 30;
const MAX_CASE_TIME: Duration = Duration::from_secs(5);

/// Opens a file and reads from every level and associated image; returns the error text if
/// anything failed. Panics (failing the test) only on a broken promise: time or memory.
fn exercise(path: &Path) -> Result<(), String> {
    let base = start_case();
    let start = Instant::now();
    let result = (|| {
        let slide = Slide::open(path).map_err(|e| e.to_string())?;
        for (i, l) in slide.levels().iter().enumerate() {
            let ds = l.downsample;
            let centre = ((l.width / 2) as f64 * ds) as i64;
            let middle = ((l.height / 2) as f64 * ds) as i64;
            slide.read_region(i, 0, 0, 256, 256).map_err(|e| e.to_string())?;
            slide
                .read_region(i, centre, middle, 300, 200)
                .map_err(|e| e.to_string())?;
        }
        let names: Vec<String> = slide.associated_names().map(str::to_string).collect();
        for n in names {
            slide.read_associated(&n).map_err(|e| e.to_string())?;
        }
        Ok(())
    })();
    let elapsed = start.elapsed();
    let allocated = allocated_since(base);
    assert!(elapsed < MAX_CASE_TIME, "{}: took {elapsed:?}", path.display());
    assert!(
        allocated < MAX_CASE_BYTES,
        "{}: allocated {allocated} bytes",
        path.display()
    );
    result
}

#[test]
fn negative_files_give_clear_errors() {
    let _serial = serial();
    let Some(root) = shared_slides("negative_files_give_clear_errors") else {
        return;
    };
    let mut n = 0;
    for entry in std::fs::read_dir(root.join("negative")).unwrap() {
        let path = entry.unwrap().path();
        let err = exercise(&path).expect_err(&format!("{} should fail", path.display()));
        // One line, naming the file.
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name) && !err.contains('\n'), "unclear error: {err}");
        eprintln!("{err}");
        n += 1;
    }
    assert!(n >= 6);
}

/// splitmix64: a fixed-seed generator, so every run mutates the same way.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A position biased towards where TIFF structure lives: the header and directories at the
/// start, directories and tables often at the end, and anywhere in the pixel data.
fn structural_position(rng: &mut Rng, len: usize) -> usize {
    match rng.below(3) {
        0 => rng.below(len.min(4096)),
        1 => len - 1 - rng.below(len.min(65536)),
        _ => rng.below(len),
    }
}

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut data = original.to_vec();
    let len = data.len();
    match rng.below(4) {
        0 => data.truncate(structural_position(rng, len)),
        1 => {
            for _ in 0..1 + rng.below(8) {
                let at = structural_position(rng, len);
                data[at] ^= 1 << rng.below(8);
            }
        }
        2 => {
            // A random 32-bit word: a wild offset, count or dimension.
            let at = structural_position(rng, len).min(len - 4);
            let v = rng.next() as u32;
            let v = if rng.below(2) == 0 { v } else { v >> rng.below(32) };
            data[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        _ => {
            for _ in 0..1 + rng.below(32) {
                let at = rng.below(len);
                data[at] = rng.next() as u8;
            }
        }
    }
    data
}

#[test]
fn mutated_slides_never_panic_hang_or_balloon() {
    let _serial = serial();
    let Some(root) = shared_slides("mutated_slides_never_panic_hang_or_balloon") else {
        return;
    };
    let sources = [
        "aperio/CMU-1-Small-Region.svs",
        "aperio/small.svs",
        "generic-tiff/boxes.tiff",
        "generic-tiff/small_HE_levels.tiff",
        "generic-tiff/yb10kx5k.zstd.tiff",
        "generic-tiff/test_orient1.tif",
        "hamamatsu/test3-DAPI-2-387.ndpi",
    ];
    let originals: Vec<Vec<u8>> = sources
        .iter()
        .map(|s| std::fs::read(root.join(s)).unwrap())
        .collect();
    let dir = scratch_dir();
    let mut rng = Rng(0x5EED_F1A5);
    let (mut errors, mut images) = (0, 0);
    let cases = 2400;
    for case in 0..cases {
        let which = case % sources.len();
        let data = mutate(&mut rng, &originals[which]);
        let path = dir.join(format!("case-{case}.bin"));
        std::fs::write(&path, &data).unwrap();
        let outcome = std::panic::catch_unwind(|| exercise(&path));
        match outcome {
            Ok(Ok(())) => images += 1,
            Ok(Err(e)) => {
                assert!(e.contains("case-"), "error does not name the file: {e}");
                errors += 1
            }
            Err(_) => panic!(
                "case {case} (from {}) panicked; input kept at {}",
                sources[which],
                path.display()
            ),
        }
        std::fs::remove_file(&path).unwrap();
    }
    let _ = std::fs::remove_dir(&dir);
    eprintln!("{cases} mutated slides: {images} read as images, {errors} refused with an error");
    assert_eq!(images + errors, cases);
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flashslide-mutation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
