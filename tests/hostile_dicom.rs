//! Hostile DICOM whole-slide images built byte by byte (tests/common/dicom_builder.rs): Part
//! 10 files whose element lengths, VRs, sequences, transfer syntaxes, frame counts, offset
//! tables, fragments, frame sizes, TILED_SPARSE positions and sibling files lie in every way
//! the reader must survive. It starts from one valid minimal WSI file (and a valid series of
//! several), which must open and read correctly; then each hostile case is written into a
//! folder of its own (the reader looks at the files beside the one opened), opened and read
//! on every level and associated image, and must give an image or a one-line error naming
//! the file: never a panic, never more than 2 s, never more than 256 MiB allocated. Where the
//! outcome is clear, the case also states it (an image, or an error with given words).

mod common;

use common::counting_alloc::{allocated_since, serial, start_case, CountingAlloc};
use common::dicom_builder::{
    file_meta, item, item_delimiter, item_header, meta_group, offset_table, part10, sequence_delimiter, sop,
    tag, tag_bytes, ts, DataSet, Enc, Len, EX, IM, UNDEFINED,
};
use common::{check_pixels, read_everything, Tolerance};
use flashslide::slide::{Slide, StoredTile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MAX_CASE_BYTES: usize = 256 << 20;
const MAX_CASE_TIME: Duration = Duration::from_secs(2);
/// A case still running after this long has hung: the test fails rather than waits.
const HANG: Duration = Duration::from_secs(30);

const SERIES: &str = "1.2.826.0.1.3680043.10.1.7";
const OTHER_SERIES: &str = "1.2.826.0.1.3680043.10.1.8";
const STUDY: &str = "1.2.826.0.1.3680043.10.1.6";

// ---- outcomes ----

/// What opening and reading a slide gave.
#[derive(Debug)]
enum Outcome {
    /// Opened, and every read gave an image.
    Read,
    /// Refused at open, with this error.
    OpenError(String),
    /// Opened, then a read failed with this error (the first).
    ReadError(String),
}

impl Outcome {
    fn error(&self) -> Option<&str> {
        match self {
            Outcome::Read => None,
            Outcome::OpenError(e) | Outcome::ReadError(e) => Some(e),
        }
    }
}

/// What a case must give, where it is clear.
#[derive(Clone, Debug)]
enum Expect {
    /// Only the general promises.
    Any,
    /// Opens, and every read gives an image.
    Read,
    /// Refused at open with an error holding every one of these texts.
    OpenError(Vec<&'static str>),
    /// Opens, then a read fails with an error holding every one of these texts.
    ReadError(Vec<&'static str>),
}

fn open_error(words: &[&'static str]) -> Expect {
    Expect::OpenError(words.to_vec())
}

fn read_error(words: &[&'static str]) -> Expect {
    Expect::ReadError(words.to_vec())
}

/// Opens a slide (a file or a folder) and reads from every level (two regions, and the
/// stored JPEG streams a GPU decoder would get) and every associated image.
fn exercise(path: &Path) -> Outcome {
    let mut slide = match Slide::open(path) {
        Ok(s) => s,
        Err(e) => return Outcome::OpenError(e.to_string()),
    };
    match read_everything(&mut slide) {
        Some(e) => Outcome::ReadError(e),
        None => Outcome::Read,
    }
}

/// One hostile case: the files of its folder, what is opened, and what it must give.
struct Case {
    label: String,
    /// (name, bytes); the first is the file opened, unless `open_folder`.
    files: Vec<(String, Vec<u8>)>,
    /// Named pipes to make in the folder (never written to: opening one would block).
    fifos: Vec<String>,
    /// Empty folders to make in the folder.
    dirs: Vec<String>,
    open_folder: bool,
    expect: Expect,
}

impl Case {
    /// A case of one file, `a.dcm`.
    fn one(label: impl Into<String>, bytes: Vec<u8>, expect: Expect) -> Case {
        Case::files(label, vec![("a.dcm", bytes)], expect)
    }

    /// A case of several files, the first opened.
    fn files(label: impl Into<String>, files: Vec<(&str, Vec<u8>)>, expect: Expect) -> Case {
        Case {
            label: label.into(),
            files: files.into_iter().map(|(n, b)| (n.to_string(), b)).collect(),
            fifos: Vec::new(),
            dirs: Vec::new(),
            open_folder: false,
            expect,
        }
    }
}

/// Outcomes of one family of cases.
#[derive(Default)]
struct Tally {
    cases: usize,
    open_errors: usize,
    read_errors: usize,
    images: usize,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.cases += other.cases;
        self.open_errors += other.open_errors;
        self.read_errors += other.read_errors;
        self.images += other.images;
    }
}

/// Where the cases' folders go (each removed after its case unless it fails).
fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-dicom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Makes a named pipe; false where mkfifo is not there.
fn mkfifo(path: &Path) -> bool {
    let _ = std::fs::remove_file(path);
    std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

/// Writes a case's folder and exercises it on a thread of its own, checking the promises
/// (no panic, no hang, time and memory within bounds, an error in one line naming the file
/// or folder opened) and the case's expected outcome.
fn run_case(name: &str, case: &Case, tally: &mut Tally) -> Result<Outcome, String> {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, bytes) in &case.files {
        std::fs::write(dir.join(file), bytes).unwrap();
    }
    for fifo in &case.fifos {
        assert!(mkfifo(&dir.join(fifo)), "{name}: mkfifo failed");
    }
    for sub in &case.dirs {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let path = if case.open_folder {
        dir.clone()
    } else {
        dir.join(&case.files[0].0)
    };
    let base = start_case();
    let start = Instant::now();
    let (send, receive) = std::sync::mpsc::channel();
    let p = path.clone();
    std::thread::spawn(move || {
        let _ = send.send(exercise(&p));
    });
    let outcome = match receive.recv_timeout(HANG) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{name}: hung (input kept at {})", dir.display())
        }
        Err(_) => panic!("{name}: panicked (input kept at {})", dir.display()),
    };
    let elapsed = start.elapsed();
    let allocated = allocated_since(base);
    let mut problems = Vec::new();
    if elapsed >= MAX_CASE_TIME {
        problems.push(format!("took {elapsed:?}"));
    }
    if allocated >= MAX_CASE_BYTES {
        problems.push(format!("allocated {} MiB", allocated >> 20));
    }
    if let Some(e) = outcome.error() {
        if !e.contains(&path.display().to_string()) || e.contains('\n') {
            problems.push(format!("unclear error: {e}"));
        }
    }
    let as_expected = match (&case.expect, &outcome) {
        (Expect::Any, _) | (Expect::Read, Outcome::Read) => true,
        (Expect::OpenError(words), Outcome::OpenError(e))
        | (Expect::ReadError(words), Outcome::ReadError(e)) => words.iter().all(|w| e.contains(w)),
        _ => false,
    };
    if !as_expected {
        problems.push(format!("expected {:?}, got {outcome:?}", case.expect));
    }
    if !problems.is_empty() {
        return Err(format!(
            "{name}: {} (input kept at {})",
            problems.join("; "),
            dir.display()
        ));
    }
    tally.cases += 1;
    match outcome {
        Outcome::Read => tally.images += 1,
        Outcome::OpenError(_) => tally.open_errors += 1,
        Outcome::ReadError(_) => tally.read_errors += 1,
    }
    std::fs::remove_dir_all(&dir).unwrap();
    Ok(outcome)
}

/// Runs one case on its own, panicking on any broken promise or unexpected outcome.
fn check_case(case: Case) -> Outcome {
    let mut tally = Tally::default();
    let name = case.label.clone();
    run_case(&name, &case, &mut tally).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs every case of a family and prints its line of the summary table. HOSTILE_VERBOSE=1
/// prints every case's outcome; HOSTILE_KEEP=DIR keeps every case's folder there, to try
/// other readers (OpenSlide, pydicom) on them.
fn run_family(family: &str, cases: Vec<Case>, failures: &mut Vec<String>) -> Tally {
    let mut tally = Tally::default();
    let verbose = std::env::var_os("HOSTILE_VERBOSE").is_some();
    let keep = std::env::var_os("HOSTILE_KEEP").map(PathBuf::from);
    let mut seen = std::collections::HashSet::new();
    for case in cases {
        let name = format!("{family}-{}", case.label);
        assert!(seen.insert(name.clone()), "two cases named {name}");
        if let Some(dir) = &keep {
            let d = dir.join(&name);
            std::fs::create_dir_all(&d).unwrap();
            for (file, bytes) in &case.files {
                std::fs::write(d.join(file), bytes).unwrap();
            }
        }
        match run_case(&name, &case, &mut tally) {
            Ok(outcome) if verbose => {
                let text = match outcome {
                    Outcome::Read => "image".to_string(),
                    Outcome::OpenError(e) => format!("refused: {e}"),
                    Outcome::ReadError(e) => format!("opened, read failed: {e}"),
                };
                eprintln!("  {name}: {text}");
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("  FAILED {e}");
                failures.push(e);
            }
        }
    }
    print_tally(family, &tally);
    tally
}

fn print_tally(family: &str, t: &Tally) {
    eprintln!(
        "family {family:<18} {:>4} cases: {:>4} refused at open, {:>4} failed a read, {:>4} read as images",
        t.cases, t.open_errors, t.read_errors, t.images
    );
}

// ---- pixel data ----

/// A deterministic RGB pattern, different for each `seed` (each tile of each image): smooth
/// gradients, without wrapping in tiles up to 64 × 64.
fn pattern(width: usize, height: usize, seed: usize) -> Vec<u8> {
    let base = [(seed * 71) % 256, (seed * 151 + 40) % 256, (seed * 97 + 90) % 256];
    (0..width * height * 3)
        .map(|i| {
            let (p, c) = (i / 3, i % 3);
            let (x, y) = (p % width, p / width);
            ((base[c] / 4 + x * (c + 1) / 2 + y) % 256) as u8
        })
        .collect()
}

/// A baseline 4:2:2 JPEG of the pattern, its JFIF marker taken out (as DICOM frames usually
/// are: the colour space is the PhotometricInterpretation's). Cached: cases use a few.
fn jpeg(width: u16, height: u16, seed: usize) -> Vec<u8> {
    type Frames = Mutex<HashMap<(u16, u16, usize), Vec<u8>>>;
    static CACHE: OnceLock<Frames> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(j) = cache.lock().unwrap().get(&(width, height, seed)) {
        return j.clone();
    }
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_1);
    enc.encode(
        &pattern(width as usize, height as usize, seed),
        width,
        height,
        jpeg_encoder::ColorType::Rgb,
    )
    .unwrap();
    if out[2..4] == [0xFF, 0xE0] {
        let len = u16::from_be_bytes([out[4], out[5]]) as usize;
        out.drain(2..4 + len);
    }
    cache.lock().unwrap().insert((width, height, seed), out.clone());
    out
}

/// Offset of the first segment with `marker` in a JPEG's headers, and the offset just after
/// the first SOS segment.
fn jpeg_segments(data: &[u8]) -> (HashMap<u8, usize>, usize) {
    let mut found = HashMap::new();
    let mut pos = 2;
    loop {
        let marker = data[pos + 1];
        let len = u16::from_be_bytes([data[pos + 2], data[pos + 3]]) as usize;
        found.entry(marker).or_insert(pos);
        pos += 2 + len;
        if marker == 0xDA {
            return (found, pos);
        }
    }
}

/// The JPEG with its frame header declaring `width` × `height`.
fn with_frame_size(data: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut d = data.to_vec();
    let (seg, _) = jpeg_segments(data);
    let sof = seg[&0xC0];
    d[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    d[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    d
}

/// Decodes a JPEG with the `image` crate into RGBA.
fn decode_reference(jpeg: &[u8]) -> (u32, u32, Vec<u8>) {
    let img = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .unwrap()
        .to_rgba8();
    (img.width(), img.height(), img.into_raw())
}

// ---- files ----

/// A DICOM file under construction: its file meta elements and data set, each editable
/// element by element.
#[derive(Clone)]
struct Dcm {
    meta: DataSet,
    data: DataSet,
    enc: Enc,
}

impl Dcm {
    fn bytes(&self) -> Vec<u8> {
        part10(&meta_group(&self.meta), &self.data.bytes())
    }

    /// The same file with `bytes` in place of the data set's element `tag` (or added).
    fn set(mut self, tag: u32, bytes: Vec<u8>) -> Dcm {
        self.data.set(tag, bytes);
        self
    }

    /// With `bytes` just after element `tag`'s place.
    fn after(mut self, tag: u32, bytes: Vec<u8>) -> Dcm {
        self.data.set_after(tag, bytes);
        self
    }

    fn without(mut self, tag: u32) -> Dcm {
        self.data.remove(tag);
        self
    }

    fn meta(mut self, tag: u32, bytes: Vec<u8>) -> Dcm {
        self.meta.set(tag, bytes);
        self
    }

    fn meta_without(mut self, tag: u32) -> Dcm {
        self.meta.remove(tag);
        self
    }

    fn transfer_syntax(self, uid: &str) -> Dcm {
        self.meta(tag::TRANSFER_SYNTAX, EX.ui(tag::TRANSFER_SYNTAX, uid))
    }

    /// With NumberOfFrames stated as `text`.
    fn frames(self, text: &str) -> Dcm {
        let e = self.enc.is(tag::NUMBER_OF_FRAMES, text);
        self.set(tag::NUMBER_OF_FRAMES, e)
    }

    fn us(self, tag: u32, v: u16) -> Dcm {
        let e = self.enc.us(tag, &[v]);
        self.set(tag, e)
    }

    fn ul(self, tag: u32, v: u32) -> Dcm {
        let e = self.enc.ul(tag, &[v]);
        self.set(tag, e)
    }

    fn cs(self, tag: u32, text: &str) -> Dcm {
        let e = self.enc.cs(tag, text);
        self.set(tag, e)
    }

    fn ui(self, tag: u32, uid: &str) -> Dcm {
        let e = self.enc.ui(tag, uid);
        self.set(tag, e)
    }

    /// With these bytes as the whole pixel data (any element or junk).
    fn pixels(self, bytes: Vec<u8>) -> Dcm {
        self.set(tag::PIXEL_DATA, bytes)
    }

    /// With these fragments, one a frame, an empty basic offset table, NumberOfFrames
    /// unchanged.
    fn fragments(self, fragments: &[Vec<u8>]) -> Dcm {
        let e = self.enc.encapsulated(None, fragments);
        self.pixels(e)
    }

    /// TILED_SPARSE, frame i at 1-based (column, row) `positions[i]`.
    fn sparse(self, positions: &[(i32, i32)]) -> Dcm {
        let enc = self.enc;
        let items: Vec<Vec<u8>> = positions
            .iter()
            .map(|&(x, y)| per_frame_item(enc, x, y))
            .collect();
        self.cs(tag::DIMENSION_ORGANIZATION_TYPE, "TILED_SPARSE")
            .set(tag::PER_FRAME_GROUPS, enc.sq(tag::PER_FRAME_GROUPS, &items))
    }
}

/// One frame's functional groups: its position in the total pixel matrix.
fn per_frame_item(enc: Enc, x: i32, y: i32) -> Vec<u8> {
    let position = [
        enc.sl(tag::COLUMN_POSITION, &[x]),
        enc.sl(tag::ROW_POSITION, &[y]),
    ]
    .concat();
    enc.sq(tag::PLANE_POSITION_SLIDE, &[position])
}

/// The JPEG frames of an image of `width` × `height` in tiles of `tile`, row-major, each
/// tile its own pattern (`seed` tells images apart).
fn tile_frames(width: u64, height: u64, tile: (u16, u16), seed: usize) -> Vec<Vec<u8>> {
    let across = width.div_ceil(tile.0 as u64);
    let down = height.div_ceil(tile.1 as u64);
    (0..across * down)
        .map(|i| jpeg(tile.0, tile.1, seed + i as usize))
        .collect()
}

/// A valid whole-slide image file: VL Whole Slide Microscopy, ImageType
/// ORIGINAL\PRIMARY\`kind`\NONE, a total pixel matrix of `width` × `height` in TILED_FULL
/// baseline JPEG frames of `tile` (Columns, Rows), YBR_FULL_422, 0.25 µm pixels; in explicit
/// VR little endian, the basic offset table empty, one fragment a frame.
fn wsi(instance: &str, kind: &str, width: u64, height: u64, tile: (u16, u16), seed: usize) -> Dcm {
    let frames = tile_frames(width, height, tile, seed);
    let e = EX;
    let spacing = e.ds(tag::PIXEL_SPACING, "0.00025\\0.00025");
    let measures = e.sq(tag::PIXEL_MEASURES, &[spacing]);
    let data = DataSet::new()
        .with(
            tag::IMAGE_TYPE,
            e.cs(tag::IMAGE_TYPE, &format!("ORIGINAL\\PRIMARY\\{kind}\\NONE")),
        )
        .with(tag::SOP_CLASS, e.ui(tag::SOP_CLASS, sop::WSM))
        .with(tag::SOP_INSTANCE, e.ui(tag::SOP_INSTANCE, instance))
        .with(tag::MODALITY, e.cs(tag::MODALITY, "SM"))
        .with(tag::STUDY_UID, e.ui(tag::STUDY_UID, STUDY))
        .with(tag::SERIES_UID, e.ui(tag::SERIES_UID, SERIES))
        .with(
            tag::DIMENSION_ORGANIZATION_TYPE,
            e.cs(tag::DIMENSION_ORGANIZATION_TYPE, "TILED_FULL"),
        )
        .with(tag::SAMPLES_PER_PIXEL, e.us(tag::SAMPLES_PER_PIXEL, &[3]))
        .with(tag::PHOTOMETRIC, e.cs(tag::PHOTOMETRIC, "YBR_FULL_422"))
        .with(tag::PLANAR_CONFIGURATION, e.us(tag::PLANAR_CONFIGURATION, &[0]))
        .with(
            tag::NUMBER_OF_FRAMES,
            e.is(tag::NUMBER_OF_FRAMES, &frames.len().to_string()),
        )
        .with(tag::ROWS, e.us(tag::ROWS, &[tile.1]))
        .with(tag::COLUMNS, e.us(tag::COLUMNS, &[tile.0]))
        .with(tag::BITS_ALLOCATED, e.us(tag::BITS_ALLOCATED, &[8]))
        .with(tag::BITS_STORED, e.us(tag::BITS_STORED, &[8]))
        .with(tag::HIGH_BIT, e.us(tag::HIGH_BIT, &[7]))
        .with(tag::PIXEL_REPRESENTATION, e.us(tag::PIXEL_REPRESENTATION, &[0]))
        .with(tag::TOTAL_COLUMNS, e.ul(tag::TOTAL_COLUMNS, &[width as u32]))
        .with(tag::TOTAL_ROWS, e.ul(tag::TOTAL_ROWS, &[height as u32]))
        .with(tag::SHARED_GROUPS, e.sq(tag::SHARED_GROUPS, &[measures]))
        .with(tag::PIXEL_DATA, e.encapsulated(None, &frames));
    Dcm {
        meta: file_meta(sop::WSM, instance, Some(ts::JPEG_BASELINE)),
        data,
        enc: e,
    }
}

/// The minimal valid file: one level of 128 × 96 pixels in four 64 × 64 JPEG frames (the
/// bottom row half outside the image).
fn minimal() -> Dcm {
    wsi("1.2.3.1", "VOLUME", 128, 96, (64, 64), 0)
}

/// The minimal file's frames.
fn minimal_frames() -> Vec<Vec<u8>> {
    tile_frames(128, 96, (64, 64), 0)
}

/// A one-frame image of 64 × 64 pixels.
fn one_tile() -> Dcm {
    wsi("1.2.3.1", "VOLUME", 64, 64, (64, 64), 0)
}

/// The minimal image with native RGB frames (`enc` as the data set's encoding).
fn native(enc: Enc) -> Dcm {
    let mut d = minimal();
    let syntax = if enc == IM {
        ts::IMPLICIT_LE
    } else {
        ts::EXPLICIT_LE
    };
    let frames: Vec<u8> = (0..4).flat_map(|i| pattern(64, 64, i)).collect();
    d.enc = enc;
    let e = enc;
    let spacing = e.ds(tag::PIXEL_SPACING, "0.00025\\0.00025");
    let measures = e.sq(tag::PIXEL_MEASURES, &[spacing]);
    // Re-encode every element in `enc`.
    d.data = DataSet::new()
        .with(
            tag::IMAGE_TYPE,
            e.cs(tag::IMAGE_TYPE, "ORIGINAL\\PRIMARY\\VOLUME\\NONE"),
        )
        .with(tag::SOP_CLASS, e.ui(tag::SOP_CLASS, sop::WSM))
        .with(tag::SOP_INSTANCE, e.ui(tag::SOP_INSTANCE, "1.2.3.1"))
        .with(tag::SERIES_UID, e.ui(tag::SERIES_UID, SERIES))
        .with(
            tag::DIMENSION_ORGANIZATION_TYPE,
            e.cs(tag::DIMENSION_ORGANIZATION_TYPE, "TILED_FULL"),
        )
        .with(tag::SAMPLES_PER_PIXEL, e.us(tag::SAMPLES_PER_PIXEL, &[3]))
        .with(tag::PHOTOMETRIC, e.cs(tag::PHOTOMETRIC, "RGB"))
        .with(tag::PLANAR_CONFIGURATION, e.us(tag::PLANAR_CONFIGURATION, &[0]))
        .with(tag::NUMBER_OF_FRAMES, e.is(tag::NUMBER_OF_FRAMES, "4"))
        .with(tag::ROWS, e.us(tag::ROWS, &[64]))
        .with(tag::COLUMNS, e.us(tag::COLUMNS, &[64]))
        .with(tag::BITS_ALLOCATED, e.us(tag::BITS_ALLOCATED, &[8]))
        .with(tag::TOTAL_COLUMNS, e.ul(tag::TOTAL_COLUMNS, &[128]))
        .with(tag::TOTAL_ROWS, e.ul(tag::TOTAL_ROWS, &[96]))
        .with(tag::SHARED_GROUPS, e.sq(tag::SHARED_GROUPS, &[measures]))
        .with(tag::PIXEL_DATA, e.native_pixels(&frames));
    d.transfer_syntax(syntax)
}

/// Sequences nested `depth` deep (SQ > item > SQ > …), every length undefined and closed,
/// defined, or undefined and never closed (the file ends inside).
fn nested(depth: usize, len: Len) -> Vec<u8> {
    let sq = 0x0040_0260; // PerformedProtocolCodeSequence
    match len {
        Len::Undefined | Len::Unclosed => {
            let mut out = Vec::with_capacity(depth * 32);
            for _ in 0..depth {
                out.extend(EX.header(sq, b"SQ", UNDEFINED));
                out.extend(item_header(tag::ITEM, UNDEFINED));
            }
            if len == Len::Undefined {
                for _ in 0..depth {
                    out.extend(item_delimiter());
                    out.extend(sequence_delimiter());
                }
            }
            out
        }
        Len::Defined | Len::Declared(_) => {
            // From the inside out: an item of `inner` bytes in a sequence of `inner` + 8.
            let mut inner = 0u32;
            let mut lens = Vec::with_capacity(depth);
            for _ in 0..depth {
                lens.push(inner);
                inner += 12 + 8;
            }
            let mut out = Vec::with_capacity(inner as usize);
            for &item_len in lens.iter().rev() {
                out.extend(EX.header(sq, b"SQ", item_len + 8));
                out.extend(item_header(tag::ITEM, item_len));
            }
            out
        }
    }
}

// ---- families ----

/// Element lengths past the end of the file, odd, undefined on VRs that cannot have one;
/// VRs that are not two letters; the wrong VR encoding.
fn elements() -> Vec<Case> {
    let m = minimal;
    let mut cases = vec![
        Case::one(
            "short-value-past-end",
            m().set(
                tag::STUDY_DESCRIPTION,
                EX.element_len(tag::STUDY_DESCRIPTION, b"LO", 0xFFF0, b"ab"),
            )
            .bytes(),
            open_error(&[
                "corrupt",
                "element value: 65520 bytes",
                "past the end of the file",
            ]),
        ),
        Case::one(
            "long-value-past-end",
            m().set(
                tag::ICC_PROFILE,
                EX.element_len(tag::ICC_PROFILE, b"OB", 0x7FFF_FFFF, b"ab"),
            )
            .bytes(),
            open_error(&["element value: 2147483647 bytes", "past the end of the file"]),
        ),
        Case::one(
            "long-value-0xfffffff0",
            m().set(
                tag::ICC_PROFILE,
                EX.element_len(tag::ICC_PROFILE, b"OB", 0xFFFF_FFF0, b""),
            )
            .bytes(),
            open_error(&["4294967280 bytes", "past the end of the file"]),
        ),
        Case::one(
            "meta-value-past-end",
            m().meta(
                tag::IMPLEMENTATION_CLASS,
                EX.element_len(tag::IMPLEMENTATION_CLASS, b"UI", 0xFFFF, b"1.2"),
            )
            .bytes(),
            open_error(&["past the end of the file"]),
        ),
        Case::one(
            "header-cut-after-vr",
            {
                let d = m().without(tag::PIXEL_DATA);
                [d.bytes(), tag_and_vr(0x5200_9300, b"LO")].concat()
            },
            open_error(&["element header", "past the end of the file"]),
        ),
        Case::one(
            "pixel-data-header-cut-after-vr",
            {
                let d = m().without(tag::PIXEL_DATA);
                [d.bytes(), tag_and_vr(tag::PIXEL_DATA, b"OB")].concat()
            },
            open_error(&["pixel data header", "past the end of the file"]),
        ),
        Case::one(
            "header-cut-in-tag",
            [m().without(tag::PIXEL_DATA).bytes(), vec![0xE0, 0x7F]].concat(),
            open_error(&["no pixel data"]),
        ),
        Case::one(
            "odd-length-text",
            m().set(tag::PATIENT_NAME, EX.element(tag::PATIENT_NAME, b"PN", b"ABC"))
                .bytes(),
            Expect::Read,
        ),
        Case::one(
            "odd-length-rows",
            m().set(tag::ROWS, EX.element(tag::ROWS, b"US", &[64, 0, 7]))
                .bytes(),
            Expect::Read,
        ),
        Case::one(
            "odd-length-offset-table",
            m().pixels({
                let mut items = item(&[0, 0, 0, 0, 0], Len::Defined);
                for f in minimal_frames() {
                    items.extend(item(&f, Len::Defined));
                }
                EX.encapsulated_raw(&items, true)
            })
            .bytes(),
            open_error(&["basic offset table of 5 bytes"]),
        ),
        Case::one(
            "zero-length-rows",
            m().set(tag::ROWS, EX.element(tag::ROWS, b"US", &[])).bytes(),
            open_error(&["no Rows"]),
        ),
        Case::one(
            "rows-as-integer-string",
            m().set(tag::ROWS, EX.is(tag::ROWS, "64")).bytes(),
            Expect::Read,
        ),
        Case::one(
            "rows-negative",
            m().set(tag::ROWS, EX.element(tag::ROWS, b"SS", &(-64i16).to_le_bytes()))
                .bytes(),
            open_error(&["no Rows"]),
        ),
        Case::one(
            "rows-1e300",
            m().set(tag::ROWS, EX.fd(tag::ROWS, &[1e300])).bytes(),
            open_error(&["unsupported"]),
        ),
        Case::one(
            "undefined-length-ob",
            m().set(
                tag::ICC_PROFILE,
                EX.element_len(tag::ICC_PROFILE, b"OB", UNDEFINED, b""),
            )
            .bytes(),
            open_error(&["element (0028,2000) (OB) has an undefined length"]),
        ),
        Case::one(
            "undefined-length-ut",
            m().set(
                tag::STUDY_DESCRIPTION,
                EX.element_len(tag::STUDY_DESCRIPTION, b"UT", UNDEFINED, b"text"),
            )
            .bytes(),
            open_error(&["(UT) has an undefined length"]),
        ),
        Case::one(
            "undefined-length-un-holding-items",
            m().set(0x0009_1010, {
                let inner = [EX.cs(tag::MODALITY, "SM")].concat();
                let mut e = EX.header(0x0009_1010, b"UN", UNDEFINED);
                e.extend(item(&inner, Len::Undefined));
                e.extend(sequence_delimiter());
                e
            })
            .bytes(),
            Expect::Read,
        ),
        Case::one(
            "undefined-length-un-holding-junk",
            m().set(
                0x0009_1010,
                EX.element_len(0x0009_1010, b"UN", UNDEFINED, b"junkjunk"),
            )
            .bytes(),
            open_error(&["where a sequence item is expected"]),
        ),
        Case::one(
            "undefined-length-short-vr",
            m().set(
                tag::STUDY_DESCRIPTION,
                EX.element_len(tag::STUDY_DESCRIPTION, b"LO", UNDEFINED, b"ab"),
            )
            .bytes(),
            open_error(&["element value: 65535 bytes", "past the end of the file"]),
        ),
        Case::one(
            "undefined-length-sop-class",
            m().set(
                tag::SOP_CLASS,
                EX.element_len(tag::SOP_CLASS, b"UN", UNDEFINED, sop::WSM.as_bytes()),
            )
            .bytes(),
            open_error(&["corrupt"]),
        ),
        Case::one(
            "undefined-length-group-length",
            {
                let meta = [
                    EX.element_len(tag::META_GROUP_LENGTH, b"UL", UNDEFINED, &[1, 0, 0, 0]),
                    m().meta.bytes(),
                ];
                part10(&meta.concat(), &m().data.bytes())
            },
            open_error(&["corrupt"]),
        ),
        Case::one(
            "meta-group-length-zero",
            part10(
                &[EX.ul(tag::META_GROUP_LENGTH, &[0]), m().meta.bytes()].concat(),
                &m().data.bytes(),
            ),
            Expect::Read,
        ),
        Case::one(
            "meta-group-length-huge",
            part10(
                &[EX.ul(tag::META_GROUP_LENGTH, &[u32::MAX]), m().meta.bytes()].concat(),
                &m().data.bytes(),
            ),
            Expect::Read,
        ),
        Case::one(
            "meta-group-length-missing",
            part10(&m().meta.bytes(), &m().data.bytes()),
            Expect::Read,
        ),
        Case::one(
            "unknown-vr-letters",
            m().set(
                tag::STUDY_DESCRIPTION,
                EX.element(tag::STUDY_DESCRIPTION, b"ZZ", b"abcd"),
            )
            .bytes(),
            Expect::Read,
        ),
        Case::one(
            "vr-in-meta-not-letters",
            m().meta(
                tag::TRANSFER_SYNTAX,
                EX.element(tag::TRANSFER_SYNTAX, &[0xFF, 0xFF], b"1.2.840.10008.1.2.4.50"),
            )
            .bytes(),
            open_error(&["element (0002,0010): VR [255, 255] is not two letters"]),
        ),
        Case::one(
            "explicit-data-labelled-implicit",
            m().transfer_syntax(ts::IMPLICIT_LE).bytes(),
            open_error(&["corrupt"]),
        ),
        Case::one(
            "implicit-data-labelled-explicit",
            native(IM).transfer_syntax(ts::EXPLICIT_LE).bytes(),
            open_error(&["corrupt"]),
        ),
    ];
    for (label, vr) in [
        ("vr-nul", [0u8, 0]),
        ("vr-lowercase", *b"lo"),
        ("vr-digit", *b"1X"),
        ("vr-space", *b"L "),
        ("vr-high-bytes", [0xC3, 0xA9]),
    ] {
        cases.push(Case::one(
            label,
            m().set(
                tag::STUDY_DESCRIPTION,
                EX.element(tag::STUDY_DESCRIPTION, &vr, b"ab"),
            )
            .bytes(),
            open_error(&["element (0008,1030): VR", "is not two letters"]),
        ));
    }
    cases
}

/// A tag and a VR, and nothing after: a header cut short.
fn tag_and_vr(t: u32, vr: &[u8; 2]) -> Vec<u8> {
    let mut out = tag_bytes(t).to_vec();
    out.extend_from_slice(vr);
    out
}

/// Sequences nested 10,000 deep, items longer than their sequence, delimiters missing or
/// where they have no business.
fn sequences() -> Vec<Case> {
    let m = minimal;
    // Nested sequences go in at an unused tag just before the pixel data's group.
    let with_nested = |depth, len| m().set(0x0040_0260, nested(depth, len));
    let seq = 0x0040_0275; // RequestAttributesSequence
    vec![
        Case::one(
            "nested-10000-undefined",
            with_nested(10_000, Len::Undefined).bytes(),
            open_error(&["sequences nested more than 16 deep"]),
        ),
        Case::one(
            "nested-10000-defined",
            with_nested(10_000, Len::Defined).bytes(),
            open_error(&["sequences nested more than 16 deep"]),
        ),
        Case::one(
            "nested-10000-unclosed",
            {
                let d = m().without(tag::PIXEL_DATA).without(tag::SHARED_GROUPS);
                [d.bytes(), nested(10_000, Len::Unclosed)].concat()
            },
            open_error(&["corrupt"]),
        ),
        Case::one("nested-16", with_nested(16, Len::Undefined).bytes(), Expect::Read),
        Case::one(
            "nested-17",
            with_nested(17, Len::Defined).bytes(),
            open_error(&["sequences nested more than 16 deep"]),
        ),
        Case::one(
            "item-longer-than-sequence",
            m().set(seq, {
                let it = [item_header(tag::ITEM, 100), EX.cs(tag::MODALITY, "SM")].concat();
                EX.sequence(seq, &[it], Len::Declared(20))
            })
            .bytes(),
            open_error(&["a sequence item runs past the end of its sequence"]),
        ),
        Case::one(
            "item-past-end-of-file",
            m().set(
                seq,
                EX.sequence(seq, &[item_header(tag::ITEM, 0x7FFF_FFF0)], Len::Undefined),
            )
            .bytes(),
            open_error(&["sequence item: 2147483632 bytes", "past the end of the file"]),
        ),
        Case::one(
            "sequence-past-end-of-file",
            m().set(
                seq,
                EX.sequence(seq, &[item(&[], Len::Defined)], Len::Declared(0x7FFF_FFF0)),
            )
            .bytes(),
            open_error(&["sequence: 2147483632 bytes", "past the end of the file"]),
        ),
        Case::one(
            "sequence-shorter-than-its-item",
            m().set(
                seq,
                EX.sequence(seq, &[item(&[], Len::Defined)], Len::Declared(4)),
            )
            .bytes(),
            open_error(&["runs past the end of its sequence"]),
        ),
        Case::one(
            "sequence-delimiter-missing",
            {
                let d = m().without(tag::PIXEL_DATA);
                let s = EX.sequence(
                    seq,
                    &[item(&EX.cs(tag::MODALITY, "SM"), Len::Defined)],
                    Len::Unclosed,
                );
                [d.bytes(), s].concat()
            },
            open_error(&["corrupt", "past the end of the file"]),
        ),
        Case::one(
            "item-delimiter-missing",
            {
                let d = m().without(tag::PIXEL_DATA);
                let s = EX.sequence(
                    seq,
                    &[item(&EX.cs(tag::MODALITY, "SM"), Len::Unclosed)],
                    Len::Unclosed,
                );
                [d.bytes(), s].concat()
            },
            open_error(&["the file ends inside a sequence"]),
        ),
        Case::one(
            // Read as the end of the data set: the pixel data after it is never reached.
            "item-delimiter-at-top-level",
            m().after(tag::SHARED_GROUPS, item_delimiter()).bytes(),
            open_error(&["corrupt"]),
        ),
        Case::one(
            "sequence-delimiter-at-top-level",
            m().after(tag::SHARED_GROUPS, sequence_delimiter()).bytes(),
            open_error(&["corrupt"]),
        ),
        Case::one(
            "item-delimiter-in-defined-item",
            m().set(
                seq,
                EX.sq(seq, &[[EX.cs(tag::MODALITY, "SM"), item_delimiter()].concat()]),
            )
            .bytes(),
            open_error(&["an item delimiter outside an item of undefined length"]),
        ),
        Case::one(
            "item-delimiter-in-place-of-item",
            m().set(seq, EX.sequence(seq, &[item_delimiter()], Len::Undefined))
                .bytes(),
            open_error(&["(FFFE,E00D) where a sequence item is expected"]),
        ),
        Case::one(
            "sequence-delimiter-in-item",
            m().set(
                seq,
                EX.sequence(seq, &[item(&sequence_delimiter(), Len::Undefined)], Len::Defined),
            )
            .bytes(),
            open_error(&["corrupt"]),
        ),
        Case::one(
            "element-in-place-of-item",
            m().set(seq, EX.sequence(seq, &[EX.cs(tag::MODALITY, "SM")], Len::Defined))
                .bytes(),
            open_error(&["(0008,0060) where a sequence item is expected"]),
        ),
        Case::one(
            "element-past-its-item",
            m().set(seq, {
                let it = [item_header(tag::ITEM, 4), EX.cs(tag::MODALITY, "SM")].concat();
                EX.sequence(seq, &[it], Len::Undefined)
            })
            .bytes(),
            open_error(&["an element runs past the end of its item"]),
        ),
        Case::one(
            "100000-empty-items",
            m().set(
                seq,
                EX.sequence(seq, &vec![item(&[], Len::Defined); 100_000], Len::Defined),
            )
            .bytes(),
            Expect::Read,
        ),
        Case::one(
            "shared-groups-empty",
            m().set(tag::SHARED_GROUPS, EX.sq(tag::SHARED_GROUPS, &[]))
                .bytes(),
            Expect::Read,
        ),
        Case::one(
            "pixel-data-inside-an-item",
            m().set(
                seq,
                EX.sequence(
                    seq,
                    &[item(&EX.encapsulated(None, &minimal_frames()), Len::Undefined)],
                    Len::Undefined,
                ),
            )
            .bytes(),
            open_error(&["(7FE0,0010) (OB) has an undefined length"]),
        ),
    ]
}

/// Transfer syntaxes missing, retired, deflated, unknown, or not decoded.
fn transfer_syntaxes() -> Vec<Case> {
    let m = minimal;
    vec![
        Case::one(
            "missing",
            m().meta_without(tag::TRANSFER_SYNTAX).bytes(),
            open_error(&["corrupt", "the file meta group has no TransferSyntaxUID"]),
        ),
        Case::one(
            "big-endian",
            m().transfer_syntax(ts::BIG_ENDIAN).bytes(),
            open_error(&["unsupported", "big-endian"]),
        ),
        Case::one(
            "deflated",
            m().transfer_syntax(ts::DEFLATED).bytes(),
            open_error(&["unsupported", "deflated"]),
        ),
        Case::one(
            "unknown",
            m().transfer_syntax("1.2.3.4.5.6").bytes(),
            open_error(&["unsupported", "an unknown encoding", "1.2.3.4.5.6"]),
        ),
        Case::one(
            "empty",
            m().transfer_syntax("").bytes(),
            open_error(&["unsupported", "an unknown encoding"]),
        ),
        Case::one(
            "unknown-with-native-pixels",
            native(EX).transfer_syntax("1.2.3.4.5.6").bytes(),
            open_error(&["unsupported", "unknown encoding", "1.2.3.4.5.6"]),
        ),
        Case::one(
            "jpeg-ls-lossless",
            m().transfer_syntax(ts::JPEG_LS_LOSSLESS).bytes(),
            open_error(&["unsupported", "JPEG-LS"]),
        ),
        Case::one(
            "jpeg-ls-near-lossless",
            m().transfer_syntax(ts::JPEG_LS_NEAR_LOSSLESS).bytes(),
            open_error(&["unsupported", "JPEG-LS"]),
        ),
        // JPEG 2000 frames may be read one day: these hold baseline JPEG, so either way.
        Case::one(
            "jpeg-2000",
            m().transfer_syntax(ts::JPEG_2000).bytes(),
            Expect::Any,
        ),
        Case::one(
            "rle",
            m().transfer_syntax(ts::RLE).bytes(),
            open_error(&["unsupported", "RLE"]),
        ),
        Case::one(
            "jpeg-with-native-pixels",
            m().pixels(EX.native_pixels(&[0; 64 * 64 * 3 * 4])).bytes(),
            open_error(&["compressed frames stored as uncompressed"]),
        ),
        Case::one(
            "padded-with-space",
            m().meta(
                tag::TRANSFER_SYNTAX,
                EX.element(tag::TRANSFER_SYNTAX, b"UI", b"1.2.840.10008.1.2.4.50 "),
            )
            .bytes(),
            Expect::Read,
        ),
        Case::one(
            // Native frames given as fragments: nothing says how long a frame is.
            "native-with-encapsulated-pixels",
            native(EX).fragments(&minimal_frames()).bytes(),
            Expect::Any,
        ),
    ]
}

/// NumberOfFrames lying; basic and extended offset tables that point nowhere, go backwards
/// or past the data; fragments of undefined length or none; millions of empty fragments.
fn frames() -> Vec<Case> {
    let m = minimal;
    let f = minimal_frames;
    // Each frame split in two fragments, and the offsets of each frame's first item.
    let halves: Vec<Vec<u8>> = f()
        .iter()
        .flat_map(|j| {
            let mid = j.len() / 2;
            [j[..mid].to_vec(), j[mid..].to_vec()]
        })
        .collect();
    let split_table = offset_table(&halves, &[2, 2, 2, 2]);
    let every_half = offset_table(&halves, &[1; 8]);
    let table = offset_table(&f(), &[1, 1, 1, 1]);
    let with_table = |t: &[u32]| m().pixels(EX.encapsulated(Some(t), &f()));
    let halves_with = |t: &[u32]| m().pixels(EX.encapsulated(Some(t), &halves));
    let extended = |t: &[u32]| {
        let bytes: Vec<u8> = t.iter().flat_map(|&o| (o as u64).to_le_bytes()).collect();
        m().fragments(&halves).set(
            tag::EXTENDED_OFFSET_TABLE,
            EX.element(tag::EXTENDED_OFFSET_TABLE, b"OV", &bytes),
        )
    };
    let zero_fragments = |n: usize| {
        let mut items = item(&[], Len::Defined);
        for _ in 0..n {
            items.extend(item_header(tag::ITEM, 0));
        }
        EX.encapsulated_raw(&items, true)
    };
    let mut big_fragment = jpeg(64, 64, 0);
    big_fragment.resize(1_200_000, 0);
    vec![
        Case::one(
            "frames-0",
            m().frames("0").bytes(),
            open_error(&["NumberOfFrames is 0"]),
        ),
        Case::one(
            "frames-2^31",
            m().frames("2147483648").bytes(),
            open_error(&["4 fragments for 2147483648 frames and no offset table"]),
        ),
        Case::one(
            "frames-2^31-with-table",
            with_table(&table).frames("2147483648").bytes(),
            open_error(&["an offset table of 4 entries for 2147483648 frames"]),
        ),
        Case::one(
            "frames-2^64",
            m().frames("18446744073709551616").bytes(),
            open_error(&["corrupt"]),
        ),
        Case::one(
            "frames-1e300",
            m().frames("1e300").bytes(),
            open_error(&["corrupt"]),
        ),
        Case::one(
            "frames-negative",
            m().frames("-1").bytes(),
            open_error(&["frames for 1 of the 4 tiles"]),
        ),
        Case::one(
            "frames-not-a-number",
            m().frames("many").bytes(),
            open_error(&["frames for 1 of the 4 tiles"]),
        ),
        Case::one(
            "frames-more-than-fragments",
            m().frames("8").bytes(),
            open_error(&["4 fragments for 8 frames and no offset table"]),
        ),
        Case::one(
            "frames-more-than-fragments-with-table",
            with_table(&[0, 100, 200, 300, 400, 500, 600, 700])
                .frames("8")
                .bytes(),
            open_error(&["is not at a fragment"]),
        ),
        Case::one(
            "frames-fewer-than-tiles",
            m().fragments(&f()[..3]).frames("3").bytes(),
            open_error(&["frames for 3 of the 4 tiles"]),
        ),
        Case::one(
            "frames-fewer-than-fragments",
            m().frames("3").bytes(),
            open_error(&["4 fragments for 3 frames and no offset table"]),
        ),
        Case::one(
            "frames-2-of-2-fragments-each",
            with_table(&offset_table(&f(), &[2, 2])).frames("2").bytes(),
            open_error(&["frames for 2 of the 4 tiles"]),
        ),
        Case::one(
            "two-fragments-a-frame",
            halves_with(&split_table).bytes(),
            Expect::Read,
        ),
        Case::one(
            "two-fragments-a-frame-no-table",
            m().fragments(&halves).bytes(),
            open_error(&["8 fragments for 4 frames and no offset table"]),
        ),
        Case::one(
            "two-fragments-a-frame-table-short",
            halves_with(&split_table[..3]).bytes(),
            open_error(&["an offset table of 3 entries for 4 frames"]),
        ),
        Case::one(
            "table-not-at-fragments",
            halves_with(&[0, 5, split_table[2], split_table[3]]).bytes(),
            open_error(&["frame 2's offset 5 is not at a fragment"]),
        ),
        Case::one(
            // Every offset at a fragment, but frame 2 starts at frame 1's second half: frame
            // 1 is half a JPEG, frame 2 one and a half.
            "table-at-fragments-but-wrong",
            halves_with(&[0, every_half[1], split_table[2], split_table[3]]).bytes(),
            read_error(&["level 0, tile at column 0, row 0"]),
        ),
        Case::one(
            "table-decreasing",
            halves_with(&[0, split_table[2], split_table[1], split_table[3]]).bytes(),
            open_error(&["frame offsets do not increase"]),
        ),
        Case::one(
            "table-repeated",
            halves_with(&[0, 0, split_table[2], split_table[3]]).bytes(),
            open_error(&["frame offsets do not increase"]),
        ),
        Case::one(
            "table-past-the-data",
            halves_with(&[0, split_table[1], split_table[2], 1 << 31]).bytes(),
            open_error(&["frame 4's offset 2147483648 is not at a fragment"]),
        ),
        Case::one(
            "table-not-from-zero",
            halves_with(&[split_table[1], split_table[2], split_table[3], split_table[3] + 4]).bytes(),
            open_error(&["is not at a fragment"]),
        ),
        Case::one(
            // One fragment a frame: the table is not needed, and not read.
            "table-garbage-one-fragment-a-frame",
            with_table(&[7, 3, 1 << 31, 5]).bytes(),
            Expect::Read,
        ),
        Case::one(
            "table-past-end-of-file",
            m().pixels(EX.encapsulated_raw(&item_header(tag::ITEM, 0x7FFF_FFF0), true))
                .bytes(),
            open_error(&["basic offset table: 2147483632 bytes", "past the end of the file"]),
        ),
        Case::one(
            "table-undefined-length",
            m().pixels(EX.encapsulated_raw(&item_header(tag::ITEM, UNDEFINED), true))
                .bytes(),
            open_error(&["a pixel data fragment of undefined length"]),
        ),
        Case::one(
            "fragment-undefined-length",
            m().pixels({
                let items = [item(&[], Len::Defined), item(&f()[0], Len::Undefined)].concat();
                EX.encapsulated_raw(&items, true)
            })
            .bytes(),
            open_error(&["a pixel data fragment of undefined length"]),
        ),
        Case::one(
            "fragment-past-end-of-file",
            m().pixels({
                let items = [item(&[], Len::Defined), item_header(tag::ITEM, 0x7FFF_FFF0)].concat();
                EX.encapsulated_raw(&items, false)
            })
            .bytes(),
            open_error(&[
                "pixel data fragment: 2147483632 bytes",
                "past the end of the file",
            ]),
        ),
        Case::one(
            "sequence-delimiter-missing",
            m().pixels({
                let mut items = item(&[], Len::Defined);
                for j in f() {
                    items.extend(item(&j, Len::Defined));
                }
                EX.encapsulated_raw(&items, false)
            })
            .bytes(),
            open_error(&["corrupt", "past the end of the file"]),
        ),
        Case::one(
            "no-items",
            m().pixels(EX.encapsulated_raw(&[], true)).bytes(),
            open_error(&["0 fragments for 4 frames"]),
        ),
        Case::one(
            "no-items-one-frame",
            one_tile().pixels(EX.encapsulated_raw(&[], true)).bytes(),
            read_error(&["JPEG data does not start with an SOI marker"]),
        ),
        Case::one(
            "no-offset-table-item",
            m().pixels({
                let items: Vec<u8> = f().iter().flat_map(|j| item(j, Len::Defined)).collect();
                EX.encapsulated_raw(&items, true)
            })
            .bytes(),
            open_error(&["corrupt"]),
        ),
        Case::one(
            "element-among-fragments",
            m().pixels({
                let items = [item(&[], Len::Defined), EX.cs(0x1234_5678, "XX")].concat();
                EX.encapsulated_raw(&items, true)
            })
            .bytes(),
            open_error(&["(1234,5678) inside the encapsulated pixel data"]),
        ),
        Case::one(
            "pixel-data-16-bit-length",
            m().pixels(EX.element(tag::PIXEL_DATA, b"US", &[0, 0, 0, 0]))
                .bytes(),
            open_error(&["pixel data with a 16-bit length"]),
        ),
        Case::one(
            "no-pixel-data",
            m().without(tag::PIXEL_DATA).bytes(),
            open_error(&["no pixel data"]),
        ),
        Case::one(
            "extended-offset-table",
            extended(&split_table).bytes(),
            Expect::Read,
        ),
        Case::one(
            "extended-offset-table-short",
            extended(&split_table[..3]).bytes(),
            open_error(&["an offset table of 3 entries for 4 frames"]),
        ),
        Case::one(
            "extended-offset-table-past-the-data",
            extended(&[0, split_table[1], split_table[2], u32::MAX]).bytes(),
            open_error(&["frame 4's offset 4294967295 is not at a fragment"]),
        ),
        Case::one(
            "extended-offset-table-over-1-mib",
            m().fragments(&halves)
                .set(
                    tag::EXTENDED_OFFSET_TABLE,
                    EX.element(tag::EXTENDED_OFFSET_TABLE, b"OV", &vec![0; (1 << 20) + 8]),
                )
                .bytes(),
            open_error(&["unsupported", "extended offset table over 1 MiB"]),
        ),
        Case::one(
            "extended-offset-table-odd-bytes",
            m().fragments(&halves)
                .set(
                    tag::EXTENDED_OFFSET_TABLE,
                    EX.element(tag::EXTENDED_OFFSET_TABLE, b"OV", &[1, 2, 3]),
                )
                .bytes(),
            open_error(&["an offset table of 0 entries for 4 frames"]),
        ),
        Case::one(
            "2-million-empty-fragments-one-frame",
            one_tile().pixels(zero_fragments(2_000_000)).bytes(),
            read_error(&["JPEG data does not start with an SOI marker"]),
        ),
        Case::one(
            "2-million-empty-fragments-2-million-frames",
            m().pixels(zero_fragments(2_000_000)).frames("2000000").bytes(),
            read_error(&["JPEG data does not start with an SOI marker"]),
        ),
        Case::one(
            "2-million-empty-fragments-4-frames",
            m().pixels(zero_fragments(2_000_000)).bytes(),
            open_error(&["2000000 fragments for 4 frames and no offset table"]),
        ),
        Case::one(
            "fragment-larger-than-any-codec-needs",
            one_tile().fragments(&[big_fragment]).bytes(),
            read_error(&["frame 1 is stored in 1200000 bytes, more than any codec needs for 64x64 pixels"]),
        ),
    ]
}

/// Frame and image sizes out of range, JPEG frames larger or smaller than their tile or cut
/// short, native pixel data shorter than its frames, sample layouts not read.
fn frame_sizes() -> Vec<Case> {
    let m = minimal;
    let good = jpeg(64, 64, 0);
    let (_, data_start) = jpeg_segments(&good);
    let first_frame = |j: Vec<u8>| {
        let mut frames = minimal_frames();
        frames[0] = j;
        m().fragments(&frames)
    };
    let one_frame = |w: u32, h: u32| one_tile().ul(tag::TOTAL_COLUMNS, w).ul(tag::TOTAL_ROWS, h);
    vec![
        Case::one(
            "tile-65535",
            m().us(tag::ROWS, 65535)
                .us(tag::COLUMNS, 65535)
                .ul(tag::TOTAL_COLUMNS, 65535)
                .ul(tag::TOTAL_ROWS, 65535)
                .frames("1")
                .fragments(std::slice::from_ref(&good))
                .bytes(),
            open_error(&["unsupported", "65535x65535-pixel tiles"]),
        ),
        Case::one(
            "tile-0",
            m().us(tag::ROWS, 0).us(tag::COLUMNS, 0).bytes(),
            open_error(&["tile or strip size 0x0 is empty"]),
        ),
        Case::one(
            "tile-1x65535",
            m().us(tag::ROWS, 65535)
                .us(tag::COLUMNS, 1)
                .frames("1")
                .fragments(std::slice::from_ref(&good))
                .bytes(),
            open_error(&["corrupt"]),
        ),
        Case::one(
            "total-2^31-one-frame-full",
            one_frame(1 << 31, 1 << 31).bytes(),
            open_error(&["frames for 1 of the 1125899906842624 tiles"]),
        ),
        Case::one(
            "total-2^31-one-frame-sparse",
            one_frame(1 << 31, 1 << 31).sparse(&[(1, 1)]).bytes(),
            Expect::Read,
        ),
        Case::one(
            "total-2^31-one-frame-sparse-far-corner",
            one_frame(1 << 31, 1 << 31)
                .sparse(&[(i32::MAX - 62, i32::MAX - 62)])
                .bytes(),
            Expect::Read,
        ),
        Case::one(
            "total-2^32-1",
            one_frame(u32::MAX, u32::MAX).bytes(),
            open_error(&["total pixel matrix 4294967295x4294967295 is out of range"]),
        ),
        Case::one(
            "total-0",
            one_frame(0, 0).bytes(),
            open_error(&["total pixel matrix 0x0 is out of range"]),
        ),
        Case::one(
            "total-missing",
            one_tile()
                .without(tag::TOTAL_COLUMNS)
                .without(tag::TOTAL_ROWS)
                .bytes(),
            Expect::Read,
        ),
        Case::one(
            "total-smaller-than-a-tile",
            one_frame(10, 7).bytes(),
            Expect::Read,
        ),
        Case::one(
            "tile-4096-frame-64",
            one_tile().us(tag::ROWS, 4096).us(tag::COLUMNS, 4096).bytes(),
            read_error(&[
                "level 0, tile at column 0, row 0",
                "JPEG frame of 64x64 pixels where 4096x4096 are expected",
            ]),
        ),
        Case::one(
            "jpeg-larger-than-its-frame",
            first_frame(with_frame_size(&good, 16384, 16384)).bytes(),
            read_error(&["level 0, tile at column 0, row 0", "16384x16384"]),
        ),
        Case::one(
            "jpeg-65535-in-its-frame",
            first_frame(with_frame_size(&good, 65535, 65535)).bytes(),
            read_error(&["65535x65535"]),
        ),
        Case::one(
            "jpeg-smaller-than-its-frame",
            first_frame(jpeg(32, 32, 0)).bytes(),
            read_error(&["JPEG frame of 32x32 pixels where 64x64 are expected"]),
        ),
        Case::one(
            "jpeg-zero-size",
            first_frame(with_frame_size(&good, 0, 0)).bytes(),
            read_error(&["level 0, tile at column 0, row 0"]),
        ),
        Case::one(
            "jpeg-cut-short",
            first_frame(good[..data_start + 10].to_vec()).bytes(),
            read_error(&["level 0, tile at column 0, row 0", "truncated"]),
        ),
        Case::one(
            "jpeg-cut-before-scan",
            first_frame(good[..data_start - 4].to_vec()).bytes(),
            read_error(&["level 0, tile at column 0, row 0"]),
        ),
        Case::one(
            "jpeg-two-bytes",
            first_frame(good[..2].to_vec()).bytes(),
            read_error(&["JPEG data does not start with an SOI marker"]),
        ),
        Case::one(
            "jpeg-empty",
            first_frame(Vec::new()).bytes(),
            read_error(&["JPEG data does not start with an SOI marker"]),
        ),
        Case::one(
            "jpeg-garbage",
            first_frame((0..2000u32).map(|i| (i * 7919 % 251) as u8).collect()).bytes(),
            read_error(&["level 0, tile at column 0, row 0"]),
        ),
        Case::one(
            "jpeg-soi-then-garbage",
            first_frame(
                [
                    vec![0xFF, 0xD8],
                    (0..2000u32).map(|i| (i * 7919 % 251) as u8).collect(),
                ]
                .concat(),
            )
            .bytes(),
            read_error(&["level 0, tile at column 0, row 0"]),
        ),
        Case::one(
            "native-shorter-than-frames",
            native(EX).pixels(EX.native_pixels(&vec![0; 40_000])).bytes(),
            open_error(&["4 frames of 12288 bytes in 40000 bytes of pixel data"]),
        ),
        Case::one(
            "native-past-end-of-file",
            native(EX)
                .pixels(EX.element_len(tag::PIXEL_DATA, b"OB", 49_152, &[0; 100]))
                .bytes(),
            open_error(&["pixel data: 49152 bytes", "past the end of the file"]),
        ),
        Case::one(
            "native-frames-2^31",
            native(EX).frames("2147483648").bytes(),
            open_error(&["2147483648 frames of 12288 bytes"]),
        ),
        Case::one(
            "native-frames-2^64",
            native(EX).frames("18446744073709551615").bytes(),
            open_error(&["frames of 12288 bytes"]),
        ),
        Case::one(
            "native-ybr",
            native(EX).cs(tag::PHOTOMETRIC, "YBR_FULL").bytes(),
            open_error(&["unsupported", "uncompressed frames of 3 samples in YBR_FULL"]),
        ),
        Case::one(
            "bits-16",
            m().us(tag::BITS_ALLOCATED, 16).bytes(),
            open_error(&["unsupported", "16-bit samples"]),
        ),
        Case::one(
            "bits-missing",
            m().without(tag::BITS_ALLOCATED).bytes(),
            open_error(&["unsupported", "0-bit samples"]),
        ),
        Case::one(
            "samples-4",
            m().us(tag::SAMPLES_PER_PIXEL, 4).bytes(),
            open_error(&["unsupported", "JPEG frames of 4 samples"]),
        ),
        Case::one(
            "samples-0",
            m().us(tag::SAMPLES_PER_PIXEL, 0).bytes(),
            open_error(&["unsupported"]),
        ),
        Case::one(
            "planar-configuration-1",
            m().us(tag::PLANAR_CONFIGURATION, 1).bytes(),
            open_error(&["unsupported", "PlanarConfiguration 1"]),
        ),
        Case::one(
            "monochrome-tag-colour-frames",
            m().us(tag::SAMPLES_PER_PIXEL, 1)
                .cs(tag::PHOTOMETRIC, "MONOCHROME2")
                .bytes(),
            Expect::Any,
        ),
        Case::one(
            "rgb-tag-ycbcr-frames",
            m().cs(tag::PHOTOMETRIC, "RGB").bytes(),
            Expect::Read,
        ),
    ]
}

/// TILED_SPARSE frames outside the image, off the tile grid, without positions, or at one
/// position.
fn sparse() -> Vec<Case> {
    let m = minimal;
    let grid = [(1, 1), (65, 1), (1, 65), (65, 65)];
    let with_positions = |x: &str, y: &str| {
        let position = [EX.ds(tag::COLUMN_POSITION, x), EX.ds(tag::ROW_POSITION, y)].concat();
        let first = EX.sq(tag::PLANE_POSITION_SLIDE, &[position]);
        let mut items = vec![first];
        items.extend(grid[1..].iter().map(|&(x, y)| per_frame_item(EX, x, y)));
        m().sparse(&grid)
            .set(tag::PER_FRAME_GROUPS, EX.sq(tag::PER_FRAME_GROUPS, &items))
    };
    vec![
        Case::one("valid", m().sparse(&grid).bytes(), Expect::Read),
        Case::one(
            "reversed-with-a-gap",
            m().sparse(&[(65, 65), (1, 65), (65, 1)])
                .fragments(&minimal_frames()[..3])
                .frames("3")
                .bytes(),
            Expect::Read,
        ),
        Case::one(
            "outside-right",
            m().sparse(&[(1, 1), (129, 1), (1, 65), (65, 65)]).bytes(),
            open_error(&["frame 2 at (129, 1) lies outside the 128x96 image"]),
        ),
        Case::one(
            "outside-below",
            m().sparse(&[(1, 1), (65, 1), (1, 129), (65, 65)]).bytes(),
            open_error(&["frame 3 at (1, 129) lies outside the 128x96 image"]),
        ),
        Case::one(
            "outside-negative",
            m().sparse(&[(-63, 1), (65, 1), (1, 65), (65, 65)]).bytes(),
            open_error(&["frame 1 at (-63, 1) lies outside"]),
        ),
        Case::one(
            "outside-i32-min",
            m().sparse(&[(i32::MIN, i32::MIN), (65, 1), (1, 65), (65, 65)])
                .bytes(),
            open_error(&["frame 1 at"]),
        ),
        Case::one(
            "position-zero",
            m().sparse(&[(0, 0), (65, 1), (1, 65), (65, 65)]).bytes(),
            open_error(&["frame 1 at (0, 0) lies outside the 128x96 image"]),
        ),
        // Frames off the tile grid are placed where they say, overlapping or not.
        Case::one(
            "off-the-grid",
            m().sparse(&[(1, 1), (33, 1), (1, 65), (65, 65)]).bytes(),
            Expect::Read,
        ),
        Case::one(
            "off-the-grid-all-at-the-last-pixel",
            m().sparse(&[(128, 96), (128, 96), (128, 96), (128, 96)]).bytes(),
            Expect::Read,
        ),
        Case::one(
            "off-the-grid-one-pixel-apart",
            m().sparse(&[(2, 2), (3, 2), (2, 3), (3, 3)]).bytes(),
            Expect::Read,
        ),
        Case::one(
            "position-nan",
            with_positions("NaN", "1").bytes(),
            open_error(&["lies outside the 128x96 image"]),
        ),
        Case::one(
            "position-inf",
            with_positions("inf", "1").bytes(),
            open_error(&["lies outside the 128x96 image"]),
        ),
        Case::one(
            "position-fractional",
            with_positions("33.5", "1").bytes(),
            open_error(&["frame 1 at (33.5, 1) lies outside the 128x96 image"]),
        ),
        Case::one(
            "position-1e300",
            with_positions("1e300", "1").bytes(),
            open_error(&["lies outside the 128x96 image"]),
        ),
        Case::one(
            "position-as-text",
            with_positions("65", "1").bytes(),
            Expect::Read,
        ),
        Case::one(
            "no-per-frame-groups",
            m().sparse(&grid).without(tag::PER_FRAME_GROUPS).bytes(),
            open_error(&["TILED_SPARSE without per-frame positions"]),
        ),
        Case::one(
            "per-frame-groups-not-a-sequence",
            m().sparse(&grid)
                .set(
                    tag::PER_FRAME_GROUPS,
                    EX.element(tag::PER_FRAME_GROUPS, b"OB", &[0; 16]),
                )
                .bytes(),
            open_error(&["TILED_SPARSE without per-frame positions"]),
        ),
        Case::one(
            "fewer-per-frame-items",
            m().sparse(&grid[..2]).bytes(),
            open_error(&["2 per-frame positions for 4 frames"]),
        ),
        Case::one(
            "per-frame-item-without-position",
            m().sparse(&grid)
                .set(
                    tag::PER_FRAME_GROUPS,
                    EX.sq(tag::PER_FRAME_GROUPS, &vec![Vec::new(); 4]),
                )
                .bytes(),
            open_error(&["frame 1: no position in the total pixel matrix"]),
        ),
        Case::one(
            "position-without-row",
            m().sparse(&grid)
                .set(tag::PER_FRAME_GROUPS, {
                    let only_column = EX.sq(tag::PLANE_POSITION_SLIDE, &[EX.sl(tag::COLUMN_POSITION, &[1])]);
                    EX.sq(tag::PER_FRAME_GROUPS, &vec![only_column; 4])
                })
                .bytes(),
            open_error(&["frame 1: no position in the total pixel matrix"]),
        ),
        Case::one(
            "position-sequence-empty",
            m().sparse(&grid)
                .set(tag::PER_FRAME_GROUPS, {
                    let empty = EX.sq(tag::PLANE_POSITION_SLIDE, &[]);
                    EX.sq(tag::PER_FRAME_GROUPS, &vec![empty; 4])
                })
                .bytes(),
            open_error(&["frame 1: no position in the total pixel matrix"]),
        ),
        Case::one(
            "duplicate-positions",
            m().sparse(&[(1, 1); 4]).bytes(),
            Expect::Read,
        ),
        Case::one(
            "more-per-frame-items-than-frames",
            m().sparse(&vec![(1, 1); 100_000]).bytes(),
            Expect::Read,
        ),
        Case::one(
            "no-frames",
            m().sparse(&grid).frames("0").bytes(),
            open_error(&["NumberOfFrames is 0"]),
        ),
        Case::one(
            "native-no-frames",
            native(EX).sparse(&grid).frames("0").bytes(),
            Expect::Any,
        ),
    ]
}

/// A level of the minimal image in two files (a concatenation): frames 1–2 in one, 3–4 in
/// the other.
fn concatenation() -> (Dcm, Dcm) {
    let f = minimal_frames();
    let part = |instance: &str, offset: u32, frames: &[Vec<u8>]| {
        minimal()
            .ui(tag::SOP_INSTANCE, instance)
            .meta(
                tag::MEDIA_STORAGE_SOP_INSTANCE,
                EX.ui(tag::MEDIA_STORAGE_SOP_INSTANCE, instance),
            )
            .ui(tag::CONCATENATION_SOURCE, "1.2.3.99")
            .ui(tag::CONCATENATION_UID, "1.2.3.98")
            .ul(tag::CONCATENATION_FRAME_OFFSET, offset)
            .frames("2")
            .fragments(frames)
    };
    (part("1.2.3.1", 0, &f[..2]), part("1.2.3.2", 2, &f[2..]))
}

/// Series across sibling files: corrupt siblings, two images of one size, siblings that
/// are pipes or folders, files of other series or classes beside the one opened.
fn series() -> Vec<Case> {
    let m = minimal;
    let (a, b) = concatenation();
    let label = |instance: &str, seed| wsi(instance, "LABEL", 40, 20, (40, 20), seed);
    let level1 = wsi("1.2.3.3", "VOLUME", 64, 48, (64, 64), 50);
    let mut cases = vec![
        Case::files(
            "concatenation",
            vec![("a.dcm", a.bytes()), ("b.dcm", b.bytes())],
            Expect::Read,
        ),
        Case::files(
            // Placing every TILED_FULL frame too would cost a map entry a frame.
            "tiled-full-beside-frames-off-the-grid",
            vec![
                ("a.dcm", a.bytes()),
                ("b.dcm", b.clone().sparse(&[(1, 65), (33, 65)]).bytes()),
            ],
            open_error(&["unsupported", "off the tile grid in the same image as TILED_FULL"]),
        ),
        Case::files(
            "concatenation-opened-from-second",
            vec![("b.dcm", b.bytes()), ("a.dcm", a.bytes())],
            Expect::Read,
        ),
        Case::files(
            "corrupt-sibling-after-series-uid",
            vec![
                ("a.dcm", a.bytes()),
                (
                    "b.dcm",
                    b.clone()
                        .set(0x0020_0100, EX.element_len(0x0020_0100, b"LO", 0xFFF0, b"x"))
                        .bytes(),
                ),
            ],
            open_error(&["b.dcm: ", "past the end of the file"]),
        ),
        Case::files(
            // The sibling cannot be told to be of the series, so it is none of its files.
            "corrupt-sibling-before-series-uid",
            vec![
                ("a.dcm", a.bytes()),
                (
                    "b.dcm",
                    b.clone()
                        .set(
                            tag::STUDY_DESCRIPTION,
                            EX.element_len(tag::STUDY_DESCRIPTION, b"LO", 0xFFF0, b"x"),
                        )
                        .bytes(),
                ),
            ],
            open_error(&["frames for 2 of the 4 tiles"]),
        ),
        Case::files(
            "sibling-without-image-type",
            vec![
                ("a.dcm", m().bytes()),
                ("b.dcm", level1.clone().without(tag::IMAGE_TYPE).bytes()),
            ],
            open_error(&["b.dcm: no ImageType"]),
        ),
        Case::files(
            "sibling-total-out-of-range",
            vec![
                ("a.dcm", m().bytes()),
                (
                    "b.dcm",
                    level1
                        .clone()
                        .ul(tag::TOTAL_COLUMNS, u32::MAX)
                        .ul(tag::TOTAL_ROWS, u32::MAX)
                        .bytes(),
                ),
            ],
            open_error(&["b.dcm: total pixel matrix 4294967295x4294967295 is out of range"]),
        ),
        Case::files(
            "sibling-tile-size-differs",
            vec![
                ("a.dcm", a.bytes()),
                ("b.dcm", b.clone().us(tag::ROWS, 32).us(tag::COLUMNS, 32).bytes()),
            ],
            open_error(&["b.dcm: ", "tiles of 32x32 in a level of 64x64 tiles"]),
        ),
        Case::files(
            "two-images-of-one-size",
            vec![
                ("a.dcm", m().bytes()),
                ("b.dcm", wsi("1.2.3.2", "VOLUME", 128, 96, (64, 64), 9).bytes()),
            ],
            open_error(&[
                "b.dcm: ",
                "a second image of 128x96 pixels in the series (not a part of the first)",
            ]),
        ),
        Case::files(
            "same-image-twice",
            vec![("a.dcm", m().bytes()), ("copy.dcm", m().bytes())],
            Expect::Read,
        ),
        Case::files(
            "two-labels",
            vec![
                ("a.dcm", m().bytes()),
                ("b.dcm", label("1.2.3.4", 60).bytes()),
                ("c.dcm", label("1.2.3.5", 61).bytes()),
            ],
            open_error(&["c.dcm: ", "a second label image in the series"]),
        ),
        Case::files(
            "same-label-twice",
            vec![
                ("a.dcm", m().bytes()),
                ("b.dcm", label("1.2.3.4", 60).bytes()),
                ("c.dcm", label("1.2.3.4", 60).bytes()),
            ],
            Expect::Read,
        ),
        Case::files(
            "sibling-of-another-series",
            vec![
                ("a.dcm", m().bytes()),
                (
                    "b.dcm",
                    level1
                        .clone()
                        .ui(tag::SERIES_UID, OTHER_SERIES)
                        .cs(tag::PHOTOMETRIC, "junk")
                        .bytes(),
                ),
            ],
            Expect::Read,
        ),
        Case::files(
            "sibling-not-wsi",
            vec![
                ("a.dcm", m().bytes()),
                (
                    "b.dcm",
                    level1
                        .clone()
                        .meta(
                            tag::MEDIA_STORAGE_SOP_CLASS,
                            EX.ui(tag::MEDIA_STORAGE_SOP_CLASS, sop::CT),
                        )
                        .bytes(),
                ),
            ],
            Expect::Read,
        ),
        Case::files(
            "siblings-not-dicom",
            vec![
                ("a.dcm", m().bytes()),
                ("notes.txt", b"not a slide".to_vec()),
                ("short.dcm", vec![0; 10]),
                ("dicm-only.dcm", part10(&[], &[])),
                ("empty.dcm", Vec::new()),
            ],
            Expect::Read,
        ),
        Case::files(
            "no-volume-image",
            vec![("a.dcm", label("1.2.3.4", 60).bytes())],
            open_error(&["has no VOLUME image"]),
        ),
        Case::files(
            "image-type-two-values",
            vec![("a.dcm", m().cs(tag::IMAGE_TYPE, "ORIGINAL\\PRIMARY").bytes())],
            open_error(&["has no VOLUME image"]),
        ),
        Case::files(
            "levels-not-shrinking-in-order",
            vec![
                ("a.dcm", m().bytes()),
                ("b.dcm", wsi("1.2.3.3", "VOLUME", 200, 10, (64, 64), 50).bytes()),
            ],
            Expect::Any,
        ),
        Case::files(
            "two-levels-and-a-label",
            vec![
                ("a.dcm", m().bytes()),
                ("b.dcm", level1.bytes()),
                ("c.dcm", label("1.2.3.4", 60).bytes()),
            ],
            Expect::Read,
        ),
        Case::files(
            "associated-of-2^31-pixels",
            vec![
                ("a.dcm", m().bytes()),
                (
                    "b.dcm",
                    label("1.2.3.4", 60)
                        .ul(tag::TOTAL_COLUMNS, 1 << 31)
                        .ul(tag::TOTAL_ROWS, 1 << 31)
                        .sparse(&[(1, 1)])
                        .bytes(),
                ),
            ],
            read_error(&["exceeds the cap"]),
        ),
    ];
    let mut fifo = Case::files("sibling-fifo", vec![("a.dcm", m().bytes())], Expect::Read);
    fifo.fifos.push("b.dcm".into());
    let mut dir = Case::files("sibling-directory", vec![("a.dcm", m().bytes())], Expect::Read);
    dir.dirs.push("b.dcm".into());
    let mut folder = Case::files(
        "folder-with-fifo-and-directory",
        vec![("a.dcm", a.bytes()), ("b.dcm", b.bytes())],
        Expect::Read,
    );
    folder.fifos.push("0.dcm".into());
    folder.dirs.push("00.dcm".into());
    folder.open_folder = true;
    cases.extend([fifo, dir, folder]);
    cases
}

/// Files that are not whole-slide images, or say too little to be one.
fn classes() -> Vec<Case> {
    let m = minimal;
    vec![
        Case::one(
            "ct",
            m().meta(
                tag::MEDIA_STORAGE_SOP_CLASS,
                EX.ui(tag::MEDIA_STORAGE_SOP_CLASS, sop::CT),
            )
            .ui(tag::SOP_CLASS, sop::CT)
            .bytes(),
            open_error(&[
                "unsupported",
                "DICOM of SOP class 1.2.840.10008.5.1.4.1.1.2, not a whole-slide microscopy image",
            ]),
        ),
        Case::one(
            "no-sop-class",
            m().meta_without(tag::MEDIA_STORAGE_SOP_CLASS)
                .without(tag::SOP_CLASS)
                .bytes(),
            open_error(&["unsupported", "not a whole-slide microscopy image"]),
        ),
        Case::one(
            "sop-class-in-data-set-only",
            m().meta_without(tag::MEDIA_STORAGE_SOP_CLASS).bytes(),
            Expect::Read,
        ),
        Case::one(
            "no-image-type",
            m().without(tag::IMAGE_TYPE).bytes(),
            open_error(&["corrupt", "no ImageType"]),
        ),
        Case::one(
            "image-type-empty",
            m().cs(tag::IMAGE_TYPE, "").bytes(),
            open_error(&["has no VOLUME image"]),
        ),
        Case::one(
            "image-type-binary",
            m().set(tag::IMAGE_TYPE, EX.element(tag::IMAGE_TYPE, b"OB", &[0xFF; 8]))
                .bytes(),
            Expect::Any,
        ),
        Case::one(
            "no-series-uid",
            m().without(tag::SERIES_UID).bytes(),
            open_error(&["corrupt", "no SeriesInstanceUID"]),
        ),
        Case::one(
            "no-dicm",
            {
                let mut b = m().bytes();
                b[128..132].copy_from_slice(b"DICN");
                b
            },
            open_error(&["not a recognised slide format"]),
        ),
        Case::one(
            "dicm-only",
            part10(&[], &[]),
            open_error(&["the file meta group has no TransferSyntaxUID"]),
        ),
        Case::one(
            "preamble-only",
            vec![0; 128],
            open_error(&["not a recognised slide format"]),
        ),
        Case::one("empty", Vec::new(), Expect::Any),
        Case::one(
            "tiff-in-the-preamble",
            {
                let mut b = m().bytes();
                b[..8].copy_from_slice(&[b'I', b'I', 42, 0, 0xFF, 0xFF, 0xFF, 0x7F]);
                b
            },
            Expect::Read,
        ),
    ]
}

/// Headers and frame tables as large as a few MiB of file make them: empty elements,
/// frames of one pixel, realistic TILED_SPARSE per-frame groups (and, in the tests below,
/// the sizes that once broke the limits).
fn header_sizes() -> Vec<Case> {
    let e = EX;
    // Position (column, row, x, y, z), frame content (dimension index values), optical path.
    let frame_groups = [
        e.sq(0x0020_9111, &[e.ul(0x0020_9157, &[1, 1, 1])]),
        e.sq(
            tag::PLANE_POSITION_SLIDE,
            &[[
                e.sl(tag::COLUMN_POSITION, &[1]),
                e.sl(tag::ROW_POSITION, &[1]),
                e.ds(0x0040_072A, "12.5"),
                e.ds(0x0040_073A, "30.25"),
                e.ds(0x0040_074A, "0"),
            ]
            .concat()],
        ),
        e.sq(0x0048_0207, &[e.text(0x0048_0106, b"SH", "1")]),
    ]
    .concat();
    vec![
        Case::one("500000-empty-elements", empty_elements(500_000), Expect::Read),
        Case::one("1Mi-one-pixel-frames", one_pixel_frames(1 << 20), Expect::Read),
        Case::one(
            "50000-per-frame-groups",
            minimal()
                .sparse(&[(1, 1)])
                .set(
                    tag::PER_FRAME_GROUPS,
                    e.sq(tag::PER_FRAME_GROUPS, &vec![frame_groups; 50_000]),
                )
                .bytes(),
            Expect::Read,
        ),
    ]
}

/// Every family: none of the cases may panic, hang, take over 2 s or allocate over 256 MiB,
/// and each gives what it states.
#[test]
fn hostile_dicom_never_panic_hang_or_balloon() {
    let _serial = serial();
    type Family = fn() -> Vec<Case>;
    let families: [(&str, Family); 8] = [
        ("elements", elements),
        ("sequences", sequences),
        ("transfer-syntaxes", transfer_syntaxes),
        ("frames", frames),
        ("frame-sizes", frame_sizes),
        ("sparse", sparse),
        ("series", series),
        ("header-sizes", header_sizes),
    ];
    let mut total = Tally::default();
    let mut failures = Vec::new();
    for (name, make) in families {
        total.add(&run_family(name, make(), &mut failures));
    }
    total.add(&run_family("sop-classes", classes(), &mut failures));
    print_tally("(all)", &total);
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total.cases >= 150, "only {} cases", total.cases);
}

// ---- valid files, read exactly ----

/// The RGBA of a `width` × `height` image made of `tiles` (row-major, `tile` pixels apart;
/// each its width, height and RGBA), cropped at the image's edges; `None` tiles transparent.
fn tiled(width: u32, height: u32, tile: u32, tiles: &[Option<(u32, u32, Vec<u8>)>]) -> Vec<u8> {
    let mut out = vec![0u8; (width * height * 4) as usize];
    let across = width.div_ceil(tile);
    for (i, t) in tiles.iter().enumerate() {
        let Some((w, h, rgba)) = t else { continue };
        let (x0, y0) = ((i as u32 % across) * tile, (i as u32 / across) * tile);
        for y in 0..(*h).min(height.saturating_sub(y0)) {
            for x in 0..(*w).min(width.saturating_sub(x0)) {
                let src = ((y * w + x) * 4) as usize;
                let dst = (((y0 + y) * width + x0 + x) * 4) as usize;
                out[dst..dst + 4].copy_from_slice(&rgba[src..src + 4]);
            }
        }
    }
    out
}

/// The image `frames` make, as the `image` crate decodes them (zune-jpeg underneath, as
/// flashslide's: this checks the frames' placement, cropping and colour handling).
fn reference(width: u32, height: u32, tile: u32, frames: &[Option<Vec<u8>>]) -> Vec<u8> {
    let tiles: Vec<_> = frames
        .iter()
        .map(|f| f.as_deref().map(decode_reference))
        .collect();
    tiled(width, height, tile, &tiles)
}

/// The image the patterns of `seeds` make before JPEG coding, square tiles of `tile`.
fn source(width: u32, height: u32, tile: u32, seeds: &[Option<usize>]) -> Vec<u8> {
    let tiles: Vec<_> = seeds
        .iter()
        .map(|s| {
            s.map(|s| {
                let rgb = pattern(tile as usize, tile as usize, s);
                let rgba = rgb
                    .chunks_exact(3)
                    .flat_map(|p| [p[0], p[1], p[2], 255])
                    .collect();
                (tile, tile, rgba)
            })
        })
        .collect();
    tiled(width, height, tile, &tiles)
}

/// Writes `files` into a fresh folder of this name; returns the folder.
fn write_folder(name: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, bytes) in files {
        std::fs::write(dir.join(file), bytes).unwrap();
    }
    dir
}

/// The minimal WSI file opens as one 128 × 96 level of 64 × 64 tiles at 0.25 µm/px, and
/// reads as its JPEG frames decode (another decoder's within JPEG tolerance), its tiles as
/// stand-alone JPEG streams.
#[test]
fn minimal_wsi_opens_and_reads_correctly() {
    let _serial = serial();
    let bytes = minimal().bytes();
    assert!(bytes.len() < 60_000, "the minimal file is {} bytes", bytes.len());
    let dir = write_folder("valid-minimal", &[("a.dcm", bytes)]);
    let slide = Slide::open(dir.join("a.dcm")).unwrap();
    assert_eq!(slide.vendor(), "dicom");
    assert_eq!(slide.levels().len(), 1);
    let l = &slide.levels()[0];
    assert_eq!(
        (l.width, l.height, l.tile_width, l.tile_height),
        (128, 96, 64, 64)
    );
    let mpp = slide.mpp().expect("PixelSpacing gives the MPP");
    assert!(
        (mpp.x - 0.25).abs() < 1e-12 && (mpp.y - 0.25).abs() < 1e-12,
        "{mpp:?}"
    );
    assert_eq!(slide.property("dicom.SeriesInstanceUID"), Some(SERIES));
    assert_eq!(slide.property("dicom.ImageType[2]"), Some("VOLUME"));
    assert_eq!(slide.associated_names().count(), 0);
    let region = slide.read_region(0, 0, 0, 128, 96).unwrap();
    let frames: Vec<Option<Vec<u8>>> = minimal_frames().into_iter().map(Some).collect();
    check_pixels(
        "minimal level 0",
        &region.data,
        &reference(128, 96, 64, &frames),
        Tolerance::Jpeg,
    );
    // And the pixels before JPEG coding, as far as quality 90 keeps them.
    let seeds = [Some(0), Some(1), Some(2), Some(3)];
    check_pixels(
        "minimal level 0 against its source",
        &region.data,
        &source(128, 96, 64, &seeds),
        Tolerance::ScaledJpeg,
    );
    // Beyond the image: transparent.
    let outside = slide.read_region(0, 100, 80, 64, 32).unwrap();
    assert!(outside.data.chunks_exact(4).skip(28).take(4).all(|p| p[3] == 0));
    let jpeg_level = slide
        .jpeg_level(0)
        .expect("YBR JPEG frames are stand-alone JPEG streams");
    for (c, r) in [(0, 0), (1, 1)] {
        match jpeg_level.stream(c, r).unwrap() {
            StoredTile::Jpeg(s) => {
                let (w, h, _) = decode_reference(&s);
                assert_eq!((w, h), (64, 64));
            }
            StoredTile::Missing => panic!("tile {c},{r}: missing"),
            StoredTile::Other => panic!("tile {c},{r}: not a stand-alone JPEG stream"),
        }
    }
    // And within the limits, as the hostile cases must be.
    check_case(Case::one("valid-minimal-limits", minimal().bytes(), Expect::Read));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A series of five files (a level in two concatenated parts, a second level, a label and a
/// thumbnail) opens the same from any of its files and from its folder.
#[test]
fn a_series_opens_from_any_file_and_from_its_folder() {
    let _serial = serial();
    let (a, b) = concatenation();
    let level1 = wsi("1.2.3.3", "VOLUME", 64, 48, (64, 64), 50);
    let label = wsi("1.2.3.4", "LABEL", 40, 20, (40, 20), 60);
    let thumbnail = wsi("1.2.3.5", "THUMBNAIL", 32, 24, (32, 24), 70);
    let files = [
        ("a.dcm", a.bytes()),
        ("b.dcm", b.bytes()),
        ("c.dcm", level1.bytes()),
        ("d.dcm", label.bytes()),
        ("e.dcm", thumbnail.bytes()),
        ("README", b"not DICOM".to_vec()),
    ];
    let dir = write_folder("valid-series", &files);
    let want0 = reference(
        128,
        96,
        64,
        &minimal_frames().into_iter().map(Some).collect::<Vec<_>>(),
    );
    let want_label = reference(40, 20, 40, &[Some(jpeg(40, 20, 60))]);
    for target in ["a.dcm", "b.dcm", "c.dcm", "d.dcm", "e.dcm", ""] {
        let path = dir.join(target);
        let slide = Slide::open(&path).unwrap_or_else(|e| panic!("{target}: {e}"));
        let dims: Vec<(u64, u64)> = slide.levels().iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(dims, [(128, 96), (64, 48)], "{target}");
        let names: Vec<&str> = slide.associated_names().collect();
        assert_eq!(names, ["label", "thumbnail"], "{target}");
        let region = slide.read_region(0, 0, 0, 128, 96).unwrap();
        check_pixels(
            &format!("series from {target:?} level 0"),
            &region.data,
            &want0,
            Tolerance::Jpeg,
        );
        let label = slide.read_associated("label").unwrap();
        assert_eq!((label.width, label.height), (40, 20));
        check_pixels(
            &format!("series from {target:?} label"),
            &label.data,
            &want_label,
            Tolerance::Jpeg,
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Native RGB frames, in explicit and implicit VR, read exactly; TILED_SPARSE frames out of
/// order with a tile left out read in place, the missing tile transparent.
#[test]
fn native_and_sparse_images_read_exactly() {
    let _serial = serial();
    for (name, enc) in [("explicit", EX), ("implicit", IM)] {
        let dir = write_folder(&format!("valid-native-{name}"), &[("a.dcm", native(enc).bytes())]);
        let slide = Slide::open(dir.join("a.dcm")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let region = slide.read_region(0, 0, 0, 128, 96).unwrap();
        let mut want = vec![0u8; 128 * 96 * 4];
        for t in 0..4 {
            let p = pattern(64, 64, t);
            let (x0, y0) = ((t % 2) * 64, (t / 2) * 64);
            for y in 0..64.min(96 - y0) {
                for x in 0..64 {
                    let s = (y * 64 + x) * 3;
                    let d = ((y0 + y) * 128 + x0 + x) * 4;
                    want[d..d + 4].copy_from_slice(&[p[s], p[s + 1], p[s + 2], 255]);
                }
            }
        }
        check_pixels(&format!("native {name}"), &region.data, &want, Tolerance::Exact);
        assert!(slide.jpeg_level(0).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // Frames 4, 3, 2 at their own tiles; tile 1 (top left) left out.
    let f = minimal_frames();
    let sparse = minimal()
        .sparse(&[(65, 65), (1, 65), (65, 1)])
        .fragments(&[f[3].clone(), f[2].clone(), f[1].clone()])
        .frames("3");
    let dir = write_folder("valid-sparse", &[("a.dcm", sparse.bytes())]);
    let slide = Slide::open(dir.join("a.dcm")).unwrap();
    let region = slide.read_region(0, 0, 0, 128, 96).unwrap();
    let want = reference(
        128,
        96,
        64,
        &[None, Some(f[1].clone()), Some(f[2].clone()), Some(f[3].clone())],
    );
    check_pixels("sparse", &region.data, &want, Tolerance::Jpeg);
    let seeds = [None, Some(1), Some(2), Some(3)];
    check_pixels(
        "sparse against its source",
        &region.data,
        &source(128, 96, 64, &seeds),
        Tolerance::ScaledJpeg,
    );
    assert!(matches!(
        slide.jpeg_level(0).unwrap().stream(0, 0).unwrap(),
        StoredTile::Missing
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A folder holding two series is refused, naming the count; one holding none likewise.
#[test]
fn a_folder_of_two_series_is_refused_naming_the_count() {
    let _serial = serial();
    let other = wsi("1.2.3.9", "VOLUME", 128, 96, (64, 64), 5).ui(tag::SERIES_UID, OTHER_SERIES);
    let dir = write_folder(
        "two-series",
        &[("a.dcm", minimal().bytes()), ("b.dcm", other.bytes())],
    );
    let e = Slide::open(&dir)
        .expect_err("a folder of two series opened")
        .to_string();
    assert!(
        e.contains(&dir.display().to_string()) && e.contains("is a directory holding 2 DICOM series"),
        "{e}"
    );
    // Each file still opens as its own series.
    assert_eq!(Slide::open(dir.join("a.dcm")).unwrap().levels().len(), 1);
    assert_eq!(Slide::open(dir.join("b.dcm")).unwrap().levels().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
    let dir = write_folder(
        "no-series",
        &[
            ("notes.txt", b"x".to_vec()),
            ("ct.dcm", {
                minimal()
                    .meta(
                        tag::MEDIA_STORAGE_SOP_CLASS,
                        EX.ui(tag::MEDIA_STORAGE_SOP_CLASS, sop::CT),
                    )
                    .bytes()
            }),
        ],
    );
    let e = Slide::open(&dir)
        .expect_err("a folder of no series opened")
        .to_string();
    assert!(
        e.contains("is a directory without a DICOM whole-slide image"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- reader bugs these cases found, fixed ----

/// A level split across files, its second part `b` as given: the case of the two files.
fn with_second_part(label: &str, b: Dcm, expect: Expect) -> Case {
    let (a, _) = concatenation();
    Case::files(label, vec![("a.dcm", a.bytes()), ("b.dcm", b.bytes())], expect)
}

/// A sibling whose frames cannot be used (a transfer syntax not read, no frames, no pixel
/// data) is refused, and the error names that sibling, as it does for a sibling that does
/// not parse or has no ImageType. Today the error is only the file opened's: "a.dcm:
/// unsupported: DICOM frames in JPEG-LS (…)", "a.dcm: corrupt or truncated file:
/// NumberOfFrames is 0", "a.dcm: corrupt or truncated file: no pixel data".
#[test]
fn errors_of_a_siblings_frames_name_the_sibling() {
    let _serial = serial();
    let (_, b) = concatenation();
    for (label, part, words) in [
        (
            "sibling-jpeg-ls",
            b.clone().transfer_syntax(ts::JPEG_LS_LOSSLESS),
            ["b.dcm: ", "JPEG-LS"],
        ),
        (
            "sibling-frames-0",
            b.clone().frames("0"),
            ["b.dcm: ", "NumberOfFrames is 0"],
        ),
        (
            "sibling-no-pixel-data",
            b.clone().without(tag::PIXEL_DATA),
            ["b.dcm: ", "no pixel data"],
        ),
    ] {
        check_case(with_second_part(label, part, open_error(&words)));
    }
}

/// A frame of a sibling cut short is an error naming the sibling, not only the file opened,
/// the level and the tile. Today: "a.dcm: level 0, tile at column 0, row 1: corrupt or
/// truncated file: JPEG data ends inside a scan, without an EOI marker (truncated)", which
/// sends the user to a.dcm, whose frames are whole.
#[test]
fn a_siblings_broken_frame_names_the_sibling() {
    let _serial = serial();
    let (_, b) = concatenation();
    let f = minimal_frames();
    let (_, data) = jpeg_segments(&f[2]);
    let cut = b.fragments(&[f[2][..data + 10].to_vec(), f[3].clone()]);
    check_case(with_second_part(
        "sibling-frame-cut-short",
        cut,
        read_error(&["b.dcm", "truncated"]),
    ));
}

/// Native frames (explicit VR little endian, RGB) stored as encapsulated fragments are
/// refused: nothing says where a frame ends, and a native transfer syntax has no
/// encapsulated pixel data (PS3.5 §A.4). Today the JPEG fragments are taken for raw RGB
/// samples, cut or padded with 255 to the tile's size, and read as an image without error.
#[test]
fn native_frames_in_fragments_are_refused() {
    let _serial = serial();
    check_case(Case::one(
        "native-in-fragments",
        native(EX).fragments(&minimal_frames()).bytes(),
        open_error(&["corrupt"]),
    ));
}

/// 8 Mi native frames of one pixel (8 MiB of pixel data, TILED_FULL 4096 × 2048 in 1 × 1
/// tiles) within the limits. Today: 408 MiB allocated (and 1.5-2.1 s): every TILED_FULL frame
/// gets an entry in the tile → (instance, frame) HashMap, ~50 bytes a frame, 50 times the
/// file's bytes; TILED_FULL needs no map (tile = offset + frame).
#[test]
fn one_pixel_frames_stay_within_the_limits() {
    let _serial = serial();
    check_case(Case::one(
        "one-pixel-frames-8Mi",
        one_pixel_frames(8 << 20),
        Expect::Read,
    ));
}

/// Native MONOCHROME2 frames of one pixel, `n` of them (a multiple of 4096), TILED_FULL.
fn one_pixel_frames(n: usize) -> Vec<u8> {
    native(EX)
        .us(tag::ROWS, 1)
        .us(tag::COLUMNS, 1)
        .us(tag::SAMPLES_PER_PIXEL, 1)
        .cs(tag::PHOTOMETRIC, "MONOCHROME2")
        .ul(tag::TOTAL_COLUMNS, 4096)
        .ul(tag::TOTAL_ROWS, (n / 4096) as u32)
        .frames(&n.to_string())
        .pixels(EX.native_pixels(&vec![128; n]))
        .bytes()
}

/// `n` empty elements (LO, length 0: 8 bytes each) among the data set's, before the series
/// UID and the image's attributes.
fn empty_elements(n: usize) -> Vec<u8> {
    let mut empties = Vec::with_capacity(n * 8);
    for _ in 0..n {
        empties.extend(EX.element(0x0009_1001, b"LO", &[]));
    }
    minimal().set(0x0009_1001, empties).bytes()
}

/// 2 Mi empty elements (a 16 MiB file) within the limits. Today: 320 MiB allocated and
/// 2.2 s. Each element costs ~100 bytes and ~0.65 µs to parse (measured inside an item: 200
/// MiB, 1.4 s); at the top level the data set's element Vec is copied onto the meta group's
/// (`elements.extend(..)` in DicomFile::parse_until, two copies live at once) and every
/// `get` scans it linearly. Real TILED_SPARSE files carry ~10 elements a frame in their
/// per-frame groups: 200,000 frames (a 30 MiB header) took 220 MiB and 1.2 s.
#[test]
fn millions_of_empty_elements_stay_within_the_limits() {
    let _serial = serial();
    check_case(Case::one(
        "empty-elements-2Mi",
        empty_elements(2 << 20),
        Expect::Read,
    ));
}
