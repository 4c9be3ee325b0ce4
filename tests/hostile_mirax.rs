//! Hostile MIRAX slides built file by file: a small valid slide (Slidedat.ini, Index.dat, a
//! data file with a position record and JPEG camera images), then every part of it lying:
//! counts, sizes and exponents in the INI, file names leaving the folder, index versions,
//! pointers, page counts and entries, position records short, long or flagged wrongly, zlib
//! bombs, camera images of the wrong size or cut short. Each case is opened and read on
//! every level and associated image and must give an image or a one-line error naming the
//! slide: never a panic, never more than 2 s, never more than 256 MiB allocated.

mod common;

use common::counting_alloc::{allocated_since, serial, start_case, CountingAlloc};
use common::read_everything;
use flashslide::slide::Slide;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MAX_CASE_BYTES: usize = 256 << 20;
const MAX_CASE_TIME: Duration = Duration::from_secs(2);
const HANG: Duration = Duration::from_secs(30);
const ID: &str = "hostile-slide-0001";
const IMAGE: (u16, u16) = (64, 48);

/// A MIRAX slide's parts, to be lied about one at a time.
#[derive(Clone)]
struct Mirax {
    ini: String,
    index: Vec<u8>,
    data: Vec<u8>,
}

fn jpeg(width: u16, height: u16) -> Vec<u8> {
    let pixels: Vec<u8> = (0..width as usize * height as usize * 3)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 80)
        .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

fn le(v: i32) -> [u8; 4] {
    v.to_le_bytes()
}

/// Options of the valid slide a case starts from.
struct Layout {
    /// The position record as stored (9 bytes a camera field, or zlib of them).
    positions: Vec<u8>,
    compressed: bool,
    /// Level 0's page count as written, and whether the page's next pointer loops.
    count: Option<i32>,
    next: i32,
    /// Extra level-0 entries appended (image, offset, length, file).
    extra: Vec<[i32; 4]>,
}

impl Default for Layout {
    fn default() -> Layout {
        let positions = (0..4)
            .flat_map(|p: i32| {
                let mut r = vec![1u8];
                r.extend(le(p % 2 * 60));
                r.extend(le(p / 2 * 44));
                r
            })
            .collect();
        Layout {
            positions,
            compressed: false,
            count: None,
            next: 0,
            extra: Vec::new(),
        }
    }
}

/// A 2 × 2-field slide, two levels (the second one image), JPEG camera images of 64 × 48
/// overlapping by 4 pixels, a label.
fn build(layout: Layout) -> Mirax {
    let mut data = vec![0u8; 64];
    let mut store = |bytes: &[u8]| {
        let at = data.len() as i32;
        data.extend_from_slice(bytes);
        (at, bytes.len() as i32)
    };
    let positions = store(&layout.positions);
    let image = jpeg(IMAGE.0, IMAGE.1);
    let level0: Vec<[i32; 4]> = (0..4)
        .map(|i| {
            let (at, len) = store(&image);
            [i, at, len, 0]
        })
        .chain(layout.extra.iter().copied())
        .collect();
    let (at, len) = store(&image);
    let level1 = vec![[0, at, len, 0]];
    let label = store(&jpeg(32, 16));

    // Index.dat: version, id, the two tables, list heads, pages.
    let mut index = b"01.02".to_vec();
    index.extend(ID.as_bytes());
    let roots_at = index.len();
    index.extend([0u8; 8]);
    let page = |index: &mut Vec<u8>, entries: &[[i32; 4]], count: Option<i32>, next: i32| {
        let at = index.len() as i32;
        index.extend(le(count.unwrap_or(entries.len() as i32)));
        index.extend(le(next));
        for e in entries {
            for v in e {
                index.extend(le(*v));
            }
        }
        at
    };
    let pages = [
        page(&mut index, &level0, layout.count, layout.next),
        page(&mut index, &level1, None, 0),
    ];
    let record = |index: &mut Vec<u8>, (at, len): (i32, i32)| {
        let page = index.len() as i32;
        for v in [1, 0, 0, 0, at, len, 0] {
            index.extend(le(v));
        }
        page
    };
    let records = [record(&mut index, positions), record(&mut index, label)];
    let mut heads = Vec::new();
    for first in pages.iter().chain(&records) {
        heads.push(index.len() as i32);
        index.extend(le(0));
        index.extend(le(*first));
    }
    let hier = index.len() as i32;
    index.extend(le(heads[0]));
    index.extend(le(heads[1]));
    let nonhier = index.len() as i32;
    index.extend(le(heads[2]));
    index.extend(le(heads[3]));
    index[roots_at..roots_at + 4].copy_from_slice(&le(hier));
    index[roots_at + 4..roots_at + 8].copy_from_slice(&le(nonhier));

    let position_layer = if layout.compressed {
        "StitchingIntensityLayer"
    } else {
        "VIMSLIDE_POSITION_BUFFER"
    };
    let level = |concat: i32| {
        format!(
            "IMAGE_CONCAT_FACTOR={concat}\nOVERLAP_X=4\nOVERLAP_Y=4\nMICROMETER_PER_PIXEL_X=0.25\nMICROMETER_PER_PIXEL_Y=0.25\n\
             IMAGE_FILL_COLOR_BGR=16777215\nDIGITIZER_WIDTH={}\nDIGITIZER_HEIGHT={}\nIMAGE_FORMAT=JPEG\n",
            IMAGE.0, IMAGE.1
        )
    };
    let ini = format!(
        "[GENERAL]\nSLIDE_ID={ID}\nIMAGENUMBER_X=2\nIMAGENUMBER_Y=2\nOBJECTIVE_MAGNIFICATION=20\n\
         [HIERARCHICAL]\nHIER_COUNT=1\nHIER_0_NAME=Slide zoom level\nHIER_0_COUNT=2\n\
         HIER_0_VAL_0_SECTION=L0\nHIER_0_VAL_1_SECTION=L1\nNONHIER_COUNT=2\n\
         NONHIER_0_NAME={position_layer}\nNONHIER_0_COUNT=1\nNONHIER_0_VAL_0=default\nNONHIER_0_VAL_0_SECTION=POS\n\
         NONHIER_1_NAME=Scan data layer\nNONHIER_1_COUNT=1\nNONHIER_1_VAL_0=ScanDataLayer_SlideBarcode\n\
         NONHIER_1_VAL_0_SECTION=LABEL\nINDEXFILE=Index.dat\n\
         [DATAFILE]\nFILE_COUNT=1\nFILE_0=Data0000.dat\n[L0]\n{}[L1]\n{}[POS]\n[LABEL]\nBARCODE_IMAGE_TYPE=JPEG\n",
        level(0),
        level(1)
    );
    Mirax { ini, index, data }
}

/// Writes the slide as `name`.mrxs and its folder; returns the .mrxs path.
fn write(dir: &Path, name: &str, m: &Mirax) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("Slidedat.ini"), &m.ini).unwrap();
    std::fs::write(folder.join("Index.dat"), &m.index).unwrap();
    std::fs::write(folder.join("Data0000.dat"), &m.data).unwrap();
    let mrxs = dir.join(format!("{name}.mrxs"));
    std::fs::File::create(&mrxs).unwrap().write_all(b"MIRAX").unwrap();
    mrxs
}

fn with_ini(m: &Mirax, from: &str, to: &str) -> Mirax {
    assert!(m.ini.contains(from), "{from}");
    Mirax {
        ini: m.ini.replacen(from, to, 1),
        ..m.clone()
    }
}

fn cases() -> Vec<(String, Mirax)> {
    let ok = build(Layout::default());
    let mut cases = vec![("ok".to_string(), ok.clone())];
    for (name, from, to) in [
        ("images-zero", "IMAGENUMBER_X=2", "IMAGENUMBER_X=0"),
        ("images-negative", "IMAGENUMBER_Y=2", "IMAGENUMBER_Y=-2"),
        ("images-huge", "IMAGENUMBER_X=2", "IMAGENUMBER_X=2147483647"),
        ("images-not-a-number", "IMAGENUMBER_X=2", "IMAGENUMBER_X=2x"),
        (
            "divisions-not-dividing",
            "IMAGENUMBER_X=2",
            "IMAGENUMBER_X=2\nCameraImageDivisionsPerSide=3",
        ),
        (
            "divisions-negative",
            "IMAGENUMBER_X=2",
            "IMAGENUMBER_X=2\nCameraImageDivisionsPerSide=-1",
        ),
        ("levels-zero", "HIER_0_COUNT=2", "HIER_0_COUNT=0"),
        ("levels-many", "HIER_0_COUNT=2", "HIER_0_COUNT=100"),
        (
            "level-section-missing",
            "HIER_0_VAL_1_SECTION=L1",
            "HIER_0_VAL_1_SECTION=NOPE",
        ),
        ("concat-huge", "IMAGE_CONCAT_FACTOR=1", "IMAGE_CONCAT_FACTOR=31"),
        ("concat-zero", "IMAGE_CONCAT_FACTOR=1", "IMAGE_CONCAT_FACTOR=0"),
        (
            "concat-negative",
            "IMAGE_CONCAT_FACTOR=0",
            "IMAGE_CONCAT_FACTOR=-3",
        ),
        ("image-size-zero", "DIGITIZER_WIDTH=64", "DIGITIZER_WIDTH=0"),
        ("image-size-huge", "DIGITIZER_WIDTH=64", "DIGITIZER_WIDTH=1000000"),
        ("image-size-lies", "DIGITIZER_WIDTH=64", "DIGITIZER_WIDTH=128"),
        ("format-unknown", "IMAGE_FORMAT=JPEG", "IMAGE_FORMAT=GIF"),
        ("format-png-lies", "IMAGE_FORMAT=JPEG", "IMAGE_FORMAT=PNG"),
        ("format-bmp-lies", "IMAGE_FORMAT=JPEG", "IMAGE_FORMAT=BMP24"),
        ("overlap-nan", "OVERLAP_X=4", "OVERLAP_X=nan"),
        ("overlap-huge", "OVERLAP_X=4", "OVERLAP_X=1e300"),
        ("overlap-negative", "OVERLAP_Y=4", "OVERLAP_Y=-1000000"),
        (
            "mpp-zero",
            "MICROMETER_PER_PIXEL_X=0.25",
            "MICROMETER_PER_PIXEL_X=0",
        ),
        ("files-zero", "FILE_COUNT=1", "FILE_COUNT=0"),
        ("files-missing", "FILE_COUNT=1", "FILE_COUNT=3"),
        ("file-outside", "FILE_0=Data0000.dat", "FILE_0=../Data0000.dat"),
        ("file-absolute", "FILE_0=Data0000.dat", "FILE_0=/etc/passwd"),
        (
            "index-outside",
            "INDEXFILE=Index.dat",
            "INDEXFILE=../../Index.dat",
        ),
        (
            "zoom-not-first",
            "HIER_0_NAME=Slide zoom level",
            "HIER_0_NAME=Slide filter level",
        ),
        ("nonhier-count-zero", "NONHIER_0_COUNT=1", "NONHIER_0_COUNT=0"),
        ("nonhier-many", "NONHIER_COUNT=2", "NONHIER_COUNT=2000000000"),
        (
            "label-not-jpeg",
            "BARCODE_IMAGE_TYPE=JPEG",
            "BARCODE_IMAGE_TYPE=PNG",
        ),
        ("key-before-group", "[GENERAL]", "A=1\n[GENERAL]"),
        ("id-differs", "SLIDE_ID=hostile", "SLIDE_ID=other"),
    ] {
        cases.push((format!("ini-{name}"), with_ini(&ok, from, to)));
    }
    let mut huge = ok.clone();
    huge.ini.push_str(&"#".repeat(2 << 20));
    cases.push(("ini-over-1-mib".into(), huge));
    let mut nul = ok.clone();
    nul.ini.push('\0');
    cases.push(("ini-nul".into(), nul));

    // The index.
    let at = 5 + ID.len();
    for (name, edit) in [
        ("version", (0usize, le(0x33302e31))),
        ("hier-root-negative", (at, le(-8))),
        ("hier-root-past-end", (at, le(i32::MAX))),
        ("nonhier-root-negative", (at + 4, le(-8))),
    ] {
        let mut m = ok.clone();
        m.index[edit.0..edit.0 + 4].copy_from_slice(&edit.1);
        cases.push((format!("index-{name}"), m));
    }
    let mut cut = ok.clone();
    cut.index.truncate(at + 6);
    cases.push(("index-cut".into(), cut));
    for (name, layout) in [
        (
            "page-count-huge",
            Layout {
                count: Some(i32::MAX),
                ..Layout::default()
            },
        ),
        (
            "page-count-negative",
            Layout {
                count: Some(-5),
                ..Layout::default()
            },
        ),
        (
            "page-next-loops",
            Layout {
                next: 5 + ID.len() as i32 + 8,
                ..Layout::default()
            },
        ),
        (
            "entry-negative",
            Layout {
                extra: vec![[0, -1, 10, 0]],
                ..Layout::default()
            },
        ),
        (
            "entry-file-past",
            Layout {
                extra: vec![[0, 64, 10, 7]],
                ..Layout::default()
            },
        ),
        (
            "entry-row-past",
            Layout {
                extra: vec![[4, 64, 10, 0]],
                ..Layout::default()
            },
        ),
        (
            "entry-offset-past-data",
            Layout {
                extra: vec![[1, i32::MAX - 16, 16, 0]],
                ..Layout::default()
            },
        ),
        (
            "entry-length-huge",
            Layout {
                extra: vec![[1, 64, i32::MAX, 0]],
                ..Layout::default()
            },
        ),
        (
            "entry-not-an-image",
            Layout {
                extra: vec![[1, 0, 64, 0]],
                ..Layout::default()
            },
        ),
        (
            "entries-repeated",
            Layout {
                extra: vec![[1, 64, 9, 0]; 100_000],
                ..Layout::default()
            },
        ),
    ] {
        cases.push((format!("index-{name}"), build(layout)));
    }

    // Position records.
    let mut flagged = Layout::default();
    flagged.positions[9] = 2;
    cases.push(("positions-flag".into(), build(flagged)));
    let mut short = Layout::default();
    short.positions.truncate(27);
    cases.push(("positions-short".into(), build(short)));
    let mut long = Layout::default();
    long.positions.extend([1u8; 9]);
    cases.push(("positions-long".into(), build(long)));
    let mut far = Layout::default();
    far.positions[1..5].copy_from_slice(&le(i32::MAX));
    far.positions[10..14].copy_from_slice(&le(i32::MIN));
    cases.push(("positions-far".into(), build(far)));
    let zlib = |bytes: &[u8]| miniz_oxide::deflate::compress_to_vec_zlib(bytes, 6);
    let plain = Layout::default().positions;
    cases.push((
        "positions-zlib".into(),
        build(Layout {
            positions: zlib(&plain),
            compressed: true,
            ..Layout::default()
        }),
    ));
    cases.push((
        "positions-zlib-bomb".into(),
        build(Layout {
            positions: zlib(&vec![1u8; 200 << 20]),
            compressed: true,
            ..Layout::default()
        }),
    ));
    cases.push((
        "positions-not-zlib".into(),
        build(Layout {
            positions: plain.clone(),
            compressed: true,
            ..Layout::default()
        }),
    ));
    cases
}

/// Opens and reads a slide on a thread of its own: no panic, no hang, within time and
/// memory, and an error of one line naming the slide.
fn run_case(dir: &Path, name: &str, m: &Mirax) -> Result<(), String> {
    let path = write(dir, name, m);
    let base = start_case();
    let start = Instant::now();
    let (send, receive) = std::sync::mpsc::channel();
    let p = path.clone();
    std::thread::spawn(move || {
        let outcome = Slide::open(&p)
            .map_err(|e| e.to_string())
            .and_then(|mut slide| match read_everything(&mut slide) {
                Some(e) => Err(e),
                None => Ok(()),
            });
        let _ = send.send(outcome);
    });
    let outcome = match receive.recv_timeout(HANG) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{name}: hung"),
        Err(_) => panic!("{name}: panicked"),
    };
    let (elapsed, allocated) = (start.elapsed(), allocated_since(base));
    assert!(elapsed < MAX_CASE_TIME, "{name}: took {elapsed:?}");
    assert!(
        allocated < MAX_CASE_BYTES,
        "{name}: allocated {} MiB",
        allocated >> 20
    );
    if let Err(e) = &outcome {
        assert!(
            e.contains(name) && !e.contains('\n'),
            "{name}: unclear error: {e}"
        );
    }
    outcome
}

#[test]
fn hostile_mirax_slides_never_panic_hang_or_balloon() {
    let _serial = serial();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-mirax-{}", std::process::id()));
    let (mut errors, mut images) = (0, 0);
    let all = cases();
    for (name, m) in &all {
        match run_case(&dir, name, m) {
            Ok(()) => images += 1,
            Err(e) => {
                errors += 1;
                if std::env::var_os("HOSTILE_VERBOSE").is_some() {
                    eprintln!("  {name}: {e}");
                }
            }
        }
    }
    eprintln!(
        "hostile MIRAX: {} cases, {errors} refused with an error, {images} read as images",
        all.len()
    );
    // The valid slide opens and reads; what must be refused is.
    assert!(run_case(&dir, "ok", &all[0].1).is_ok());
    for name in [
        "ini-file-outside",
        "ini-index-outside",
        "index-version",
        "positions-short",
        "positions-flag",
    ] {
        let m = &all.iter().find(|(n, _)| n == name).unwrap().1;
        assert!(run_case(&dir, name, m).is_err(), "{name} was read");
    }
    assert!(all.len() >= 55, "{}", all.len());
    let _ = std::fs::remove_dir_all(&dir);
}
