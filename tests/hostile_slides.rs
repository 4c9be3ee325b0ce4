//! Hostile slides built field by field: TIFF, BigTIFF, NDPI-like and Aperio-like files whose
//! tags, arrays, directory chains and tile data lie in every way the reader must survive
//! (wrapping tile sizes, arrays past the end or shared by hundreds of directories, JPEG
//! frames larger than their tile or cut short, decompression bombs, broken NDPI restart
//! intervals, nonsense MPP). Each case is opened and read on every level and associated
//! image, and must give an image or a one-line error naming the file: never a panic, never
//! more than 2 s, never more than 256 MiB allocated. A few cases also check the exact outcome.

mod common;

use common::counting_alloc::{allocated_since, serial, start_case, CountingAlloc};
use common::read_everything;
use common::tiff_builder::{tag, ty, Entry, Flavor, TiffBuilder, Value};
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

/// Opens a file and reads from every level (two regions, and the stored JPEG streams a GPU
/// decoder would get) and every associated image: whether an implausible MPP was reported,
/// or the first error's text.
fn exercise(path: &Path) -> Result<bool, String> {
    let mut slide = Slide::open(path).map_err(|e| e.to_string())?;
    match read_everything(&mut slide) {
        Some(e) => Err(e),
        None => Ok(slide.mpp_problem().is_some()),
    }
}

/// A family's cases: file names and contents.
type Cases = Vec<(String, Vec<u8>)>;

/// Outcomes of one family of cases.
#[derive(Default)]
struct Tally {
    cases: usize,
    errors: usize,
    images: usize,
    /// Images whose stated MPP was refused as implausible.
    implausible_mpp: usize,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.cases += other.cases;
        self.errors += other.errors;
        self.images += other.images;
        self.implausible_mpp += other.implausible_mpp;
    }
}

/// Where the cases' files go (removed after each case unless it fails).
fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `bytes` as `name` and exercises it on a thread of its own, checking the promises:
/// no panic, no hang, time and memory within bounds, an error in one line naming the file.
fn run_case(name: &str, bytes: &[u8], tally: &mut Tally) -> Result<bool, String> {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).unwrap();
    let base = start_case();
    let start = Instant::now();
    let (send, receive) = std::sync::mpsc::channel();
    let p = path.clone();
    std::thread::spawn(move || {
        let _ = send.send(exercise(&p));
    });
    let result = match receive.recv_timeout(HANG) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{name}: hung (input kept at {})", path.display())
        }
        Err(_) => panic!("{name}: panicked (input kept at {})", path.display()),
    };
    let elapsed = start.elapsed();
    let allocated = allocated_since(base);
    assert!(
        elapsed < MAX_CASE_TIME,
        "{name}: took {elapsed:?} (input kept at {})",
        path.display()
    );
    assert!(
        allocated < MAX_CASE_BYTES,
        "{name}: allocated {} MiB (input kept at {})",
        allocated >> 20,
        path.display()
    );
    tally.cases += 1;
    match &result {
        Ok(implausible) => {
            tally.images += 1;
            tally.implausible_mpp += *implausible as usize;
        }
        Err(e) => {
            assert!(
                e.contains(name) && !e.contains('\n'),
                "{name}: unclear error: {e}"
            );
            tally.errors += 1;
        }
    }
    std::fs::remove_file(&path).unwrap();
    result
}

/// Runs every case of a family and prints its line of the summary table.
fn run_family(family: &str, cases: Cases) -> Tally {
    let mut tally = Tally::default();
    // HOSTILE_VERBOSE=1 prints every case's outcome; HOSTILE_KEEP=DIR keeps every input there,
    // to try other readers (or an older flashslide) on them.
    let verbose = std::env::var_os("HOSTILE_VERBOSE").is_some();
    let keep = std::env::var_os("HOSTILE_KEEP").map(PathBuf::from);
    for (label, bytes) in cases {
        let name = format!("{family}-{label}");
        if let Some(dir) = &keep {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(&name), &bytes).unwrap();
        }
        let outcome = run_case(&name, &bytes, &mut tally);
        if verbose {
            let text = match outcome {
                Ok(false) => "image".into(),
                Ok(true) => "image, implausible MPP reported".into(),
                Err(e) => e,
            };
            eprintln!("  {name}: {text}");
        }
    }
    print_tally(family, &tally);
    tally
}

fn print_tally(family: &str, t: &Tally) {
    eprintln!(
        "family {family:<22} {:>4} cases: {:>4} refused with an error, {:>4} read as images ({} with an implausible MPP reported)",
        t.cases, t.errors, t.images, t.implausible_mpp
    );
}

// ---- pixel data ----

/// A deterministic RGB test pattern.
fn pattern(width: usize, height: usize) -> Vec<u8> {
    (0..width * height * 3)
        .map(|i| {
            let (p, c) = (i / 3, i % 3);
            ((p % width) * (c + 1) + (p / width) * 3) as u8
        })
        .collect()
}

/// A JPEG of the pattern (4:2:0, as scanners write), with restart markers every `interval`
/// MCUs (0: none).
fn jpeg(width: u16, height: u16, interval: u16, progressive: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 80);
    enc.set_restart_interval(interval);
    enc.set_progressive(progressive);
    enc.encode(
        &pattern(width as usize, height as usize),
        width,
        height,
        jpeg_encoder::ColorType::Rgb,
    )
    .unwrap();
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

/// Offsets just after each restart marker of the first scan.
fn restart_positions(data: &[u8]) -> Vec<usize> {
    let (_, start) = jpeg_segments(data);
    (start..data.len() - 1)
        .filter(|&i| data[i] == 0xFF && (0xD0..=0xD7).contains(&data[i + 1]))
        .map(|i| i + 2)
        .collect()
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

/// Zeros compressed by a TIFF codec, cached (bombs are costly to make).
fn compressed_zeros(compression: u64, len: usize) -> Vec<u8> {
    type Streams = Mutex<HashMap<(u64, usize), Vec<u8>>>;
    static CACHE: OnceLock<Streams> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap().get(&(compression, len)) {
        return c.clone();
    }
    let zeros = vec![0u8; len];
    let c = compress(compression, &zeros);
    cache.lock().unwrap().insert((compression, len), c.clone());
    c
}

fn compress(compression: u64, data: &[u8]) -> Vec<u8> {
    match compression {
        1 => data.to_vec(),
        5 => weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
            .encode(data)
            .unwrap(),
        8 | 32946 => miniz_oxide::deflate::compress_to_vec_zlib(data, 6),
        50000 => zstd::bulk::compress(data, 3).unwrap(),
        c => panic!("no compressor for {c}"),
    }
}

// ---- files ----

/// One image to write: its size, its chunks (tiles, or strips `chunk_height` rows high) and
/// their stored bytes.
#[derive(Clone)]
struct Image {
    width: u64,
    height: u64,
    tiled: bool,
    chunk_width: u64,
    chunk_height: u64,
    compression: u64,
    photometric: u64,
    chunks: Vec<Vec<u8>>,
    extra: Vec<Entry>,
}

impl Image {
    /// A tiled RGB image whose every tile stores `data`.
    fn tiled(width: u64, height: u64, tile: u64, compression: u64, data: Vec<u8>) -> Image {
        let n = width.div_ceil(tile) * height.div_ceil(tile);
        Image {
            width,
            height,
            tiled: true,
            chunk_width: tile,
            chunk_height: tile,
            compression,
            photometric: if compression == 7 { 6 } else { 2 },
            chunks: vec![data; n as usize],
            extra: Vec::new(),
        }
    }

    /// A tiled JPEG image, 256-pixel tiles of the pattern.
    fn jpeg(width: u64, height: u64) -> Image {
        Image::tiled(width, height, 256, 7, jpeg(256, 256, 0, false))
    }

    /// A tiled image stored uncompressed, `tile`-pixel tiles of the pattern.
    fn raw(width: u64, height: u64, tile: u64) -> Image {
        Image::tiled(width, height, tile, 1, pattern(tile as usize, tile as usize))
    }

    /// An image in strips of `rows` rows, stored with `compression` (1, 5, 8 or 50000).
    fn stripped(width: u64, height: u64, rows: u64, compression: u64) -> Image {
        let chunks = (0..height.div_ceil(rows))
            .map(|s| {
                let h = rows.min(height - s * rows) as usize;
                compress(compression, &pattern(width as usize, h))
            })
            .collect();
        Image {
            width,
            height,
            tiled: false,
            chunk_width: width,
            chunk_height: rows,
            compression,
            photometric: 2,
            chunks,
            extra: Vec::new(),
        }
    }

    fn with(mut self, entry: Entry) -> Image {
        self.extra.retain(|e| e.tag != entry.tag);
        self.extra.push(entry);
        self
    }

    /// Writes the chunks and returns the directory's entries (those in `extra` replacing
    /// the usual ones of the same tag).
    fn entries(&self, b: &mut TiffBuilder) -> Vec<Entry> {
        let offsets: Vec<u64> = self.chunks.iter().map(|c| b.blob(c)).collect();
        let counts: Vec<u64> = self.chunks.iter().map(|c| c.len() as u64).collect();
        let array_type = if b.flavor() == Flavor::Big {
            ty::LONG8
        } else {
            ty::LONG
        };
        let (offsets_tag, counts_tag) = if self.tiled {
            (tag::TILE_OFFSETS, tag::TILE_BYTE_COUNTS)
        } else {
            (tag::STRIP_OFFSETS, tag::STRIP_BYTE_COUNTS)
        };
        let mut e = vec![
            Entry::uint(tag::IMAGE_WIDTH, self.width),
            Entry::uint(tag::IMAGE_LENGTH, self.height),
            Entry::uints(tag::BITS_PER_SAMPLE, ty::SHORT, &[8, 8, 8]),
            Entry::uint(tag::COMPRESSION, self.compression),
            Entry::uint(tag::PHOTOMETRIC, self.photometric),
            Entry::uint(tag::SAMPLES_PER_PIXEL, 3),
            Entry::uint(tag::PLANAR_CONFIG, 1),
            Entry::uints(offsets_tag, array_type, &offsets),
            Entry::uints(counts_tag, array_type, &counts),
        ];
        if self.tiled {
            e.push(Entry::uint(tag::TILE_WIDTH, self.chunk_width));
            e.push(Entry::uint(tag::TILE_LENGTH, self.chunk_height));
        } else {
            e.push(Entry::uint(tag::ROWS_PER_STRIP, self.chunk_height));
        }
        for x in &self.extra {
            e.retain(|y| y.tag != x.tag);
            e.push(x.clone());
        }
        e
    }
}

/// A file of `images` chained in order in `flavor`.
fn tiff(flavor: Flavor, images: &[Image]) -> Vec<u8> {
    let mut b = TiffBuilder::new(flavor);
    for image in images {
        let e = image.entries(&mut b);
        b.dir(e);
    }
    b.finish()
}

/// A generic pyramidal TIFF: level 0, then each further image marked reduced-resolution.
fn pyramid(flavor: Flavor, levels: &[Image]) -> Vec<u8> {
    let marked: Vec<Image> = levels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.clone()
            } else {
                l.clone().with(Entry::uint(tag::NEW_SUBFILE_TYPE, 1))
            }
        })
        .collect();
    tiff(flavor, &marked)
}

const APERIO: &str = "Aperio Image Library v12.0.15 \r\n1024x768 [0,0 1024x768] (256x256) JPEG/RGB Q=70";

/// An Aperio-like SVS: `levels` (tiled), then a thumbnail, label and macro, with `description`
/// on the first.
fn aperio(description: &str, levels: &[Image], associated: &[Image]) -> Vec<u8> {
    let mut images: Vec<Image> = Vec::new();
    for (i, l) in levels.iter().enumerate() {
        let mut l = l.clone();
        if i == 0 {
            l = l.with(Entry::ascii(tag::IMAGE_DESCRIPTION, description.as_bytes()));
        }
        images.push(l);
        if i == 0 {
            if let Some(thumbnail) = associated.first() {
                images.push(thumbnail.clone());
            }
        }
    }
    for (a, kind) in associated.iter().skip(1).zip([1, 9]) {
        images.push(a.clone().with(Entry::uint(tag::NEW_SUBFILE_TYPE, kind)));
    }
    tiff(Flavor::Classic, &images)
}

/// A plain Aperio-like slide: 1024 × 768 and 256 × 192, JPEG tiles; thumbnail, label, macro.
fn plain_aperio(description: &str) -> Vec<u8> {
    aperio(
        description,
        &[Image::jpeg(1024, 768), Image::jpeg(256, 192)],
        &[
            Image::stripped(128, 96, 16, 1),
            Image::stripped(64, 64, 64, 5),
            Image::stripped(200, 80, 80, 8),
        ],
    )
}

/// An NDPI-like file: one page per (JPEG strip, McuStarts) pair, then a macro image.
fn ndpi(pages: &[(Vec<u8>, Option<Entry>)], extra: &[Entry]) -> Vec<u8> {
    let mut b = TiffBuilder::new(Flavor::Ndpi);
    for (i, (strip, starts)) in pages.iter().enumerate() {
        let at = b.blob(strip);
        // The frame header found by its marker (the strip's segments may be broken on
        // purpose, so they are not walked).
        let sof = strip
            .windows(2)
            .position(|w| w[0] == 0xFF && matches!(w[1], 0xC0 | 0xC2));
        let (w, h) = sof.map_or((1, 1), |s| {
            (
                u16::from_be_bytes([strip[s + 7], strip[s + 8]]) as u64,
                u16::from_be_bytes([strip[s + 5], strip[s + 6]]) as u64,
            )
        });
        let mut e = vec![
            Entry::uint(tag::NDPI_FORMAT_FLAG, 1),
            Entry::float(
                tag::NDPI_SOURCE_LENS,
                if i + 1 == pages.len() { -1.0 } else { 20.0 },
            ),
            Entry::uint(tag::IMAGE_WIDTH, w),
            Entry::uint(tag::IMAGE_LENGTH, h),
            Entry::uints(tag::BITS_PER_SAMPLE, ty::SHORT, &[8, 8, 8]),
            Entry::uint(tag::COMPRESSION, 7),
            Entry::uint(tag::PHOTOMETRIC, 6),
            Entry::uint(tag::SAMPLES_PER_PIXEL, 3),
            Entry::uints(tag::STRIP_OFFSETS, ty::LONG, &[at]),
            Entry::uints(tag::STRIP_BYTE_COUNTS, ty::LONG, &[strip.len() as u64]),
            Entry::rational(tag::X_RESOLUTION, 40000, 1),
            Entry::rational(tag::Y_RESOLUTION, 40000, 1),
            Entry::uint(tag::RESOLUTION_UNIT, 3),
        ];
        if let Some(s) = starts {
            e.push(s.clone());
        }
        if i == 0 {
            for x in extra {
                e.retain(|y| y.tag != x.tag);
                e.push(x.clone());
            }
        }
        b.dir(e);
    }
    b.finish()
}

/// An NDPI page strip: `width` × `height`, restart markers every `interval` MCUs, and its
/// McuStarts entry (offsets from the strip's start).
fn ndpi_page(width: u16, height: u16, interval: u16) -> (Vec<u8>, Option<Entry>) {
    let strip = jpeg(width, height, interval, false);
    if interval == 0 {
        return (strip, None);
    }
    let (_, start) = jpeg_segments(&strip);
    let mut starts = vec![start as u64];
    starts.extend(restart_positions(&strip).into_iter().map(|p| p as u64));
    let entry = Entry::uints(tag::NDPI_MCU_STARTS, ty::LONG, &starts);
    (strip, Some(entry))
}

/// The default NDPI: a 512 × 256 page in 128 × 16 restart intervals, and a small macro.
fn plain_ndpi_pages() -> Vec<(Vec<u8>, Option<Entry>)> {
    vec![ndpi_page(512, 256, 8), ndpi_page(64, 32, 0)]
}

// ---- families ----

/// Tile sizes from the harmless to the wrapping, classic (LONG) and BigTIFF (LONG8).
fn tile_sizes() -> Cases {
    let mut cases = Vec::new();
    let classic = [0, 1, 16, 255, 256, 4096, 4097, 65536, u32::MAX as u64];
    for &w in &classic {
        for &h in &classic {
            let img = Image::raw(1024, 768, 256)
                .with(Entry::uints(tag::TILE_WIDTH, ty::LONG, &[w]))
                .with(Entry::uints(tag::TILE_LENGTH, ty::LONG, &[h]));
            cases.push((format!("classic-{w}x{h}.tif"), tiff(Flavor::Classic, &[img])));
        }
    }
    let big = [0, 1, 256, 4097, 1 << 32, (1 << 32) + 1, 1 << 63, u64::MAX];
    for &w in &big {
        for &h in &big {
            let img = Image::raw(1024, 768, 256)
                .with(Entry::uints(tag::TILE_WIDTH, ty::LONG8, &[w]))
                .with(Entry::uints(tag::TILE_LENGTH, ty::LONG8, &[h]));
            cases.push((format!("big-{w}x{h}.tif"), tiff(Flavor::Big, &[img])));
        }
    }
    // Products that wrap u64 to small numbers, and a strip height that does.
    for (w, h) in [
        (1u64 << 32, 1u64 << 32),
        (1 << 33, 1 << 31),
        (u64::MAX, 2),
        ((1 << 63) + 1, 2),
    ] {
        let img = Image::raw(1024, 768, 256)
            .with(Entry::uints(tag::TILE_WIDTH, ty::LONG8, &[w]))
            .with(Entry::uints(tag::TILE_LENGTH, ty::LONG8, &[h]));
        cases.push((format!("big-wrap-{w}x{h}.tif"), tiff(Flavor::Big, &[img])));
    }
    for rows in [0u64, 1, 4096, 1 << 32, u64::MAX] {
        let img =
            Image::stripped(1024, 64, 64, 1).with(Entry::uints(tag::ROWS_PER_STRIP, ty::LONG8, &[rows]));
        let d0 = Image::raw(256, 256, 256);
        cases.push((
            format!("big-rows-{rows}.svs"),
            aperio_like_with(Flavor::Big, d0, img),
        ));
    }
    cases
}

/// An Aperio-like file in `flavor` with `thumbnail` as its second directory.
fn aperio_like_with(flavor: Flavor, level: Image, thumbnail: Image) -> Vec<u8> {
    let level = level.with(Entry::ascii(tag::IMAGE_DESCRIPTION, APERIO.as_bytes()));
    tiff(flavor, &[level, thumbnail])
}

/// Image sizes from empty to 2^64 - 1, with as many tile entries as fit a small file.
fn image_sizes() -> Cases {
    let mut cases = Vec::new();
    let sizes = [
        0u64,
        1,
        255,
        256,
        65536,
        1 << 20,
        1 << 31,
        (1 << 31) + 1,
        u32::MAX as u64,
    ];
    for &w in &sizes {
        for &h in &[0u64, 1, 300, 1 << 20, 1 << 31, u32::MAX as u64] {
            let mut img = Image::raw(1, 1, 256);
            img.width = w;
            img.height = h;
            // Every tile left out (offset 0) where the grid is small enough to list.
            let tiles = w.div_ceil(4096) * h.div_ceil(4096);
            img.chunk_width = 4096;
            img.chunk_height = 4096;
            img.chunks.clear();
            let n = tiles.min(1 << 16);
            let img = img
                .with(Entry::uints(tag::TILE_OFFSETS, ty::BYTE, &vec![0; n as usize]))
                .with(Entry::uints(
                    tag::TILE_BYTE_COUNTS,
                    ty::BYTE,
                    &vec![0; n as usize],
                ));
            cases.push((format!("{w}x{h}.tif"), tiff(Flavor::Classic, &[img])));
        }
    }
    // Pyramids whose levels shrink oddly, not at all, or grow.
    let levels: [(&str, &[(u64, u64)]); 4] = [
        ("ratio-3", &[(1024, 768), (341, 256), (113, 85)]),
        ("ratio-512", &[(4096, 2048), (8, 4)]),
        ("same-size", &[(512, 512), (512, 512)]),
        ("growing", &[(256, 256), (1024, 768)]),
    ];
    for (name, sizes) in levels {
        let images: Vec<Image> = sizes.iter().map(|&(w, h)| Image::raw(w, h, 256)).collect();
        cases.push((format!("pyramid-{name}.tif"), pyramid(Flavor::Classic, &images)));
    }
    for (w, h) in [(1u64 << 32, 256u64), (256, 1 << 40), (u64::MAX, u64::MAX)] {
        let img = Image::raw(256, 256, 256)
            .with(Entry::uints(tag::IMAGE_WIDTH, ty::LONG8, &[w]))
            .with(Entry::uints(tag::IMAGE_LENGTH, ty::LONG8, &[h]));
        cases.push((format!("big-{w}x{h}.tif"), tiff(Flavor::Big, &[img])));
    }
    cases
}

/// Offsets and byte counts that lie: past the end, huge, too few or too many, missing, of
/// every field type.
fn offsets_and_counts() -> Cases {
    let mut cases = Vec::new();
    let base = || Image::raw(512, 512, 256);
    let len = tiff(Flavor::Classic, &[base()]).len() as u64;
    let tile = 256 * 256 * 3;
    let lies: Vec<(&str, Vec<u64>, Vec<u64>)> = vec![
        ("offset-past-end", vec![len + 10; 4], vec![tile; 4]),
        ("end-past-end", vec![len - 100; 4], vec![tile; 4]),
        ("offset-max", vec![u32::MAX as u64; 4], vec![tile; 4]),
        ("count-max", vec![8; 4], vec![u32::MAX as u64; 4]),
        ("count-huge-in-file", vec![8; 4], vec![len - 8; 4]),
        ("count-short", vec![8; 4], vec![tile / 2; 4]),
        ("count-one", vec![8; 4], vec![1; 4]),
        ("zero-offsets", vec![0; 4], vec![tile; 4]),
        ("zero-counts", vec![8; 4], vec![0; 4]),
        ("fewer", vec![8; 3], vec![tile; 3]),
        ("fewer-counts", vec![8; 4], vec![tile; 1]),
        ("more", vec![8; 400], vec![tile; 400]),
        ("none", vec![], vec![]),
    ];
    for (name, offsets, counts) in lies {
        for flavor in [Flavor::Classic, Flavor::Big] {
            let t = if flavor == Flavor::Big {
                ty::LONG8
            } else {
                ty::LONG
            };
            let img = base()
                .with(Entry::uints(tag::TILE_OFFSETS, t, &offsets))
                .with(Entry::uints(tag::TILE_BYTE_COUNTS, t, &counts));
            cases.push((format!("{name}-{flavor:?}.tif"), tiff(flavor, &[img])));
        }
    }
    // The arrays in every field type, the values kept where the type holds them.
    for field_type in [
        0u16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 18, 19, 99, 65535,
    ] {
        let mut b = TiffBuilder::new(Flavor::Big);
        let img = base();
        let mut e = img.entries(&mut b);
        for t in [tag::TILE_OFFSETS, tag::TILE_BYTE_COUNTS] {
            let values: Vec<u64> = match e.iter().find(|x| x.tag == t).map(|x| &x.value) {
                Some(Value::Bytes(v)) => v
                    .chunks(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                _ => unreachable!(),
            };
            e.retain(|x| x.tag != t);
            e.push(Entry::uints(t, field_type, &values));
        }
        b.dir(e);
        cases.push((format!("type-{field_type}.tif"), b.finish()));
    }
    // Arrays said to hold more values than the file, or than 2^64 bytes.
    for (name, count) in [
        ("count-past-end", 1u64 << 20),
        ("count-overflows", 1 << 62),
        ("count-max", u64::MAX),
    ] {
        let img = base().with(Entry::at(tag::TILE_OFFSETS, ty::LONG8, count, 16));
        cases.push((format!("{name}.tif"), tiff(Flavor::Big, &[img])));
    }
    for at in [0u64, 3, len - 4, len, u64::MAX - 8] {
        let img = base().with(Entry::at(tag::TILE_BYTE_COUNTS, ty::LONG8, 4, at));
        cases.push((format!("array-at-{at}.tif"), tiff(Flavor::Big, &[img])));
    }
    cases
}

/// Many directories sharing one large offsets array: each declares the array, which a
/// reader that widens each copy to u64 multiplies.
fn shared_arrays() -> Cases {
    let mut cases = Vec::new();
    for (entries, field_type) in [
        (1u64 << 10, ty::BYTE),
        (1 << 16, ty::BYTE),
        (1 << 20, ty::BYTE),
        (1 << 18, ty::LONG),
    ] {
        for dirs in [1usize, 2, 8, 126, 500] {
            let mut b = TiffBuilder::new(Flavor::Classic);
            let array = b.blob(&vec![
                0u8;
                (entries * common::tiff_builder::type_size(field_type))
                    as usize
            ]);
            // A grid of `entries` 16-pixel tiles, every tile left out.
            let side = (entries as f64).sqrt() as u64 * 16;
            for d in 0..dirs {
                let mut e = vec![
                    Entry::uint(tag::IMAGE_WIDTH, side),
                    Entry::uint(tag::IMAGE_LENGTH, side),
                    Entry::uint(tag::TILE_WIDTH, 16),
                    Entry::uint(tag::TILE_LENGTH, 16),
                    Entry::uints(tag::BITS_PER_SAMPLE, ty::SHORT, &[8, 8, 8]),
                    Entry::uint(tag::SAMPLES_PER_PIXEL, 3),
                    Entry::uint(tag::PHOTOMETRIC, 2),
                    Entry::at(tag::TILE_OFFSETS, field_type, entries, array),
                    Entry::at(tag::TILE_BYTE_COUNTS, field_type, entries, array),
                ];
                if d > 0 {
                    e.push(Entry::uint(tag::NEW_SUBFILE_TYPE, 1));
                }
                b.dir(e);
            }
            cases.push((format!("{dirs}x{entries}-type{field_type}.tif"), b.finish()));
        }
    }
    cases
}

/// Directory chains and tables that lie: loops, offsets past the end, counts past the end,
/// thousands of directories, tables overlapping each other.
fn directories() -> Cases {
    let mut cases = Vec::new();
    let one = || vec![Image::raw(256, 256, 256)];
    for flavor in [Flavor::Classic, Flavor::Big] {
        type Link = fn(usize, &[u64]) -> u64;
        let links: [(&str, Link); 6] = [
            ("self-loop", |i, o| o[i]),
            ("back-to-first", |i, o| if i == 2 { o[0] } else { o[i + 1] }),
            ("past-end", |_, _| u32::MAX as u64 - 2),
            ("into-header", |_, _| 2),
            ("odd", |i, o| o.get(i + 1).map_or(0, |x| x + 1)),
            ("into-entry", |i, o| o.get(i + 1).map_or(0, |x| x + 6)),
        ];
        for (name, link) in links {
            let mut b = TiffBuilder::new(flavor);
            let e = one()[0].entries(&mut b);
            for _ in 0..3 {
                b.dir(e.clone());
            }
            cases.push((format!("{name}-{flavor:?}.tif"), b.finish_linked(link, |o| o[0])));
        }
        for (name, first) in [
            ("first-zero", 0u64),
            ("first-past-end", 1 << 31),
            ("first-in-header", 4),
        ] {
            let mut b = TiffBuilder::new(flavor);
            let e = one()[0].entries(&mut b);
            b.dir(e);
            cases.push((
                format!("{name}-{flavor:?}.tif"),
                b.finish_linked(|_, _| 0, move |_| first),
            ));
        }
        // 5,000 small directories.
        let mut b = TiffBuilder::new(flavor);
        for _ in 0..5000 {
            b.dir(vec![Entry::uint(tag::IMAGE_WIDTH, 1)]);
        }
        cases.push((format!("5000-directories-{flavor:?}.tif"), b.finish()));
        // Directories without entries, or with nothing but unknown tags.
        let mut b = TiffBuilder::new(flavor);
        b.dir(vec![]);
        cases.push((format!("empty-directory-{flavor:?}.tif"), b.finish()));
        let mut b = TiffBuilder::new(flavor);
        b.dir((0..200).map(|t| Entry::uint(40000 + t, t as u64)).collect());
        cases.push((format!("unknown-tags-{flavor:?}.tif"), b.finish()));
    }
    // Entry counts past the end of the file.
    let mut bytes = tiff(Flavor::Classic, &one());
    let first = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    bytes[first..first + 2].copy_from_slice(&65535u16.to_le_bytes());
    cases.push(("count-65535.tif".into(), bytes));
    let mut bytes = tiff(Flavor::Big, &one());
    let first = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    for (name, count) in [("count-2^60", 1u64 << 60), ("count-max", u64::MAX)] {
        bytes[first..first + 8].copy_from_slice(&count.to_le_bytes());
        cases.push((format!("big-{name}.tif"), bytes.clone()));
    }
    cases.push(("overlapping-tables.tif".into(), overlapping_tables()));
    // Three tiled directories as levels of a classic TIFF flagged as NDPI.
    let mut b = TiffBuilder::new(Flavor::Ndpi);
    let mut e = one()[0].entries(&mut b);
    e.push(Entry::uint(tag::NDPI_FORMAT_FLAG, 1));
    b.dir(e);
    cases.push(("ndpi-flag-without-lens.ndpi".into(), b.finish()));
    cases
}

/// 4,000 directories of 4,000 entries each, their tables overlapping 12 bytes apart in a
/// file of 160 kB: each directory's next link is the first four bytes (tag and type, BYTE) of
/// an entry of the next ones' tables. Read naively, 16 million entries from a small file.
fn overlapping_tables() -> Vec<u8> {
    const DIRS: u64 = 4000;
    const ENTRIES: u64 = 4000;
    // Tables from 64 KiB on, so every link is 0x0001_xxxx: a tag and type BYTE.
    let start: u64 = 1 << 16;
    let mut bytes = vec![0u8; (start + 12 * DIRS + 2 + 12 * ENTRIES + 16) as usize];
    bytes[..4].copy_from_slice(b"II*\0");
    bytes[4..8].copy_from_slice(&(start as u32).to_le_bytes());
    // Entry count 4000, then entries of tag 40000, type BYTE, count 1, repeating.
    let period = [
        0xA0, 0x0F, 0x40, 0x9C, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    for (i, b) in bytes[start as usize..].iter_mut().enumerate() {
        *b = period[i % 12];
    }
    for k in 0..DIRS {
        let at = (start + 12 * k + 2 + 12 * ENTRIES) as usize;
        let next = if k + 1 < DIRS { start + 12 * (k + 1) } else { 0 };
        bytes[at..at + 4].copy_from_slice(&(next as u32).to_le_bytes());
    }
    bytes
}

/// JPEG tiles whose frame header disagrees with the TIFF's tile size, or is malformed.
fn jpeg_frames() -> Cases {
    let mut cases = Vec::new();
    let good = jpeg(256, 256, 0, false);
    let (seg, _) = jpeg_segments(&good);
    let sof = seg[&0xC0];
    let mut variants: Cases = [
        (16384u16, 16384u16),
        (257, 256),
        (256, 257),
        (0, 256),
        (256, 0),
        (255, 255),
        (1, 1),
        (65535, 65535),
        (128, 256),
    ]
    .iter()
    .map(|&(w, h)| (format!("sof-{w}x{h}"), with_frame_size(&good, w, h)))
    .collect();
    for (name, at, value) in [
        ("components-0", sof + 9, 0u8),
        ("components-5", sof + 9, 5),
        ("sampling-0", sof + 11, 0x00),
        ("sampling-5", sof + 11, 0x55),
        ("sampling-f", sof + 11, 0xFF),
        ("precision-12", sof + 4, 12),
        ("sof-marker-c3", sof + 1, 0xC3),
        ("sof-length-2", sof + 3, 2),
        ("sof-length-255", sof + 3, 255),
    ] {
        let mut d = good.clone();
        d[at] = value;
        variants.push((name.into(), d));
    }
    // Two frame headers; a scan before any frame header; no SOI.
    let mut two = good[..sof].to_vec();
    two.extend_from_slice(&good[sof..sof + 19]);
    two.extend_from_slice(&good[sof..]);
    variants.push(("two-sofs".into(), two));
    let mut no_sof = good[..sof].to_vec();
    no_sof.extend_from_slice(&good[sof + 19..]);
    variants.push(("no-sof".into(), no_sof));
    variants.push(("no-soi".into(), good[2..].to_vec()));
    variants.push(("progressive".into(), jpeg(256, 256, 0, true)));
    variants.push(("progressive-restarts".into(), jpeg(256, 256, 3, true)));
    variants.push(("smaller-frame-128".into(), jpeg(128, 128, 0, false)));
    // A 16,384² JPEG in a tile the TIFF declares 16,384² too (1 GiB as RGBA): refused from
    // the tags.
    for photometric in [2u64, 6] {
        let mut img = Image::tiled(16384, 16384, 16384, 7, with_frame_size(&good, 16384, 16384));
        img.photometric = photometric;
        cases.push((
            format!("tile-and-sof-16384-ph{photometric}.svs"),
            aperio(APERIO, &[img], &[]),
        ));
    }
    for (name, tile) in variants {
        for photometric in [2u64, 6] {
            let mut img = Image::jpeg(512, 512);
            img.photometric = photometric;
            img.chunks[3] = tile.clone();
            cases.push((format!("{name}-ph{photometric}.svs"), aperio(APERIO, &[img], &[])));
        }
    }
    cases
}

/// JPEG tiles cut short, without EOI, or with restart markers missing, reordered or extra.
fn jpeg_truncations() -> Cases {
    let mut cases = Vec::new();
    for interval in [0u16, 4] {
        let good = jpeg(256, 256, interval, false);
        let (_, data) = jpeg_segments(&good);
        let n = good.len();
        let mut variants: Cases = Vec::new();
        for cut in [
            3,
            20,
            data - 1,
            data,
            data + 10,
            data + 100,
            (data + n) / 2,
            n - 3,
            n - 2,
            n - 1,
        ] {
            variants.push((format!("cut-{cut}"), good[..cut].to_vec()));
            // The same, with an EOI put back after the cut.
            let mut with_eoi = good[..cut].to_vec();
            with_eoi.extend_from_slice(&[0xFF, 0xD9]);
            variants.push((format!("cut-{cut}-eoi"), with_eoi));
        }
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"trailing bytes after the EOI");
        variants.push(("trailing".into(), trailing));
        variants.push(("whole".into(), good.clone()));
        let rst = restart_positions(&good);
        if let Some(&r) = rst.get(2) {
            let mut missing = good[..r - 2].to_vec();
            missing.extend_from_slice(&good[r..]);
            variants.push(("rst-missing".into(), missing));
            let mut swapped = good.clone();
            swapped[r - 1] = 0xD5;
            variants.push(("rst-out-of-order".into(), swapped));
            let mut extra = good[..n - 2].to_vec();
            extra.extend_from_slice(&[0xFF, 0xD0 + (rst.len() % 8) as u8, 0x00, 0xFF, 0xD9]);
            variants.push(("rst-extra".into(), extra));
            variants.push(("rst-only-first-intervals".into(), good[..r].to_vec()));
        }
        let mut dri_zero = good.clone();
        if let Some(&dri) = jpeg_segments(&good).0.get(&0xDD) {
            dri_zero[dri + 4..dri + 6].copy_from_slice(&[0, 0]);
            variants.push(("dri-zero".into(), dri_zero));
            let mut dri_short = good[..dri].to_vec();
            dri_short.extend_from_slice(&[0xFF, 0xDD, 0x00, 0x02]);
            dri_short.extend_from_slice(&good[dri + 6..]);
            variants.push(("dri-length-2".into(), dri_short));
        }
        for (name, tile) in variants {
            let mut img = Image::jpeg(512, 512);
            img.chunks[0] = tile;
            cases.push((format!("ri{interval}-{name}.svs"), aperio(APERIO, &[img], &[])));
        }
    }
    cases
}

/// Small streams that expand hugely (decompression bombs), short streams, garbage, for each
/// lossless codec, in tiles of 256² and 4096² (the largest allowed) and in strips.
fn lossless_bombs() -> Cases {
    let mut cases = Vec::new();
    for compression in [5u64, 8, 32946, 50000] {
        for (side, spp) in [(256u64, 3u64), (4096, 3), (256, 1), (4096, 4)] {
            let expected = (side * side * spp) as usize;
            let mut streams: Vec<(&str, Vec<u8>)> = vec![
                ("exact", compressed_zeros(compression, expected)),
                ("bomb-64MiB", compressed_zeros(compression, 64 << 20)),
                ("half", compressed_zeros(compression, expected / 2)),
                (
                    "garbage",
                    (0..4096u32)
                        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                        .collect(),
                ),
                ("one-byte", vec![0x78]),
            ];
            if side == 256 {
                streams.push(("double", compressed_zeros(compression, 2 * expected)));
            }
            for (name, stream) in streams {
                let mut img = Image::tiled(side, side, side, compression, stream);
                if spp != 3 {
                    img = img
                        .with(Entry::uint(tag::SAMPLES_PER_PIXEL, spp))
                        .with(Entry::uints(
                            tag::BITS_PER_SAMPLE,
                            ty::SHORT,
                            &vec![8; spp as usize],
                        ))
                        .with(Entry::uint(tag::PHOTOMETRIC, if spp == 1 { 1 } else { 2 }));
                }
                cases.push((
                    format!("c{compression}-{side}-spp{spp}-{name}.tif"),
                    tiff(Flavor::Classic, &[img]),
                ));
            }
        }
        // A tile declared 16,384² (1 GiB as RGBA) over a stream of 64 MiB of zeros: refused
        // from the tags, before anything is decompressed.
        let huge = Image::tiled(
            16384,
            16384,
            16384,
            compression,
            compressed_zeros(compression, 64 << 20),
        );
        cases.push((
            format!("c{compression}-16384-tile.tif"),
            tiff(Flavor::Classic, &[huge]),
        ));
        // A 64 MiB bomb in a label strip, and with the predictor.
        let label = Image {
            chunks: vec![compressed_zeros(compression, 64 << 20)],
            ..Image::stripped(256, 256, 256, compression)
        };
        let levels = [Image::jpeg(512, 512)];
        cases.push((
            format!("c{compression}-label-bomb.svs"),
            aperio(APERIO, &levels, &[Image::stripped(64, 64, 64, 1), label.clone()]),
        ));
        let predicted = Image::tiled(
            256,
            256,
            256,
            compression,
            compressed_zeros(compression, 64 << 20),
        )
        .with(Entry::uint(tag::PREDICTOR, 2));
        cases.push((
            format!("c{compression}-predictor-bomb.tif"),
            tiff(Flavor::Classic, &[predicted]),
        ));
        let predictor_3 = Image::tiled(
            256,
            256,
            256,
            compression,
            compressed_zeros(compression, 256 * 256 * 3),
        )
        .with(Entry::uint(tag::PREDICTOR, 3));
        cases.push((
            format!("c{compression}-predictor-3.tif"),
            tiff(Flavor::Classic, &[predictor_3]),
        ));
    }
    cases
}

/// NDPI pages whose restart structure lies: DRI segments of odd lengths, restart intervals
/// that do not divide a row, no restart markers on a huge page, McuStarts that point
/// anywhere, strips cut short.
fn ndpi_cases() -> Cases {
    let mut cases = Vec::new();
    cases.push(("plain.ndpi".into(), ndpi(&plain_ndpi_pages(), &[])));
    let (strip, starts) = ndpi_page(512, 256, 8);
    let dri = jpeg_segments(&strip).0[&0xDD];
    // DRI segments of every short length, the rest of the file unchanged.
    for len in [0u16, 1, 2, 3, 5, 6, 0xFFFF] {
        let mut s = strip.clone();
        s[dri + 2..dri + 4].copy_from_slice(&len.to_be_bytes());
        cases.push((
            format!("dri-length-{len}.ndpi"),
            ndpi(&[(s, starts.clone()), ndpi_page(64, 32, 0)], &[]),
        ));
    }
    // A DRI segment cut to 2 bytes (its length field only), as a writer might.
    let mut s = strip[..dri].to_vec();
    s.extend_from_slice(&[0xFF, 0xDD, 0x00, 0x02]);
    s.extend_from_slice(&strip[dri + 6..]);
    cases.push((
        "dri-2-bytes.ndpi".into(),
        ndpi(&[(s, None), ndpi_page(64, 32, 0)], &[]),
    ));
    for interval in [1u16, 3, 5, 31, 32, 33, 64, 65535] {
        let mut s = strip.clone();
        s[dri + 4..dri + 6].copy_from_slice(&interval.to_be_bytes());
        cases.push((
            format!("interval-{interval}.ndpi"),
            ndpi(&[(s, None), ndpi_page(64, 32, 0)], &[]),
        ));
    }
    // No restart markers: a page whose frame says 16,384² (or 4,096², the largest decoded
    // whole) over a small strip.
    let whole = jpeg(512, 256, 0, false);
    for (w, h) in [
        (16384u16, 16384u16),
        (4096, 4096),
        (4097, 4096),
        (65535, 65535),
        (512, 256),
    ] {
        let page = (with_frame_size(&whole, w, h), None);
        cases.push((
            format!("no-restarts-{w}x{h}.ndpi"),
            ndpi(&[page, ndpi_page(64, 32, 0)], &[]),
        ));
    }
    // McuStarts that lie.
    let (_, data) = jpeg_segments(&strip);
    let real: Vec<u64> = std::iter::once(data as u64)
        .chain(restart_positions(&strip).into_iter().map(|p| p as u64))
        .collect();
    let n = real.len();
    let len = strip.len() as u64;
    let lies: Vec<(&str, Vec<u64>, u16)> = vec![
        ("zeros", vec![0; n], ty::LONG),
        ("past-strip", vec![len + 100; n], ty::LONG),
        ("max", vec![u32::MAX as u64; n], ty::LONG),
        ("decreasing", real.iter().rev().copied().collect(), ty::LONG),
        ("mid-interval", real.iter().map(|s| s + 3).collect(), ty::LONG),
        ("all-first", vec![data as u64; n], ty::LONG),
        ("one-short", real[..n - 1].to_vec(), ty::LONG),
        ("one-more", [real.clone(), vec![len - 2]].concat(), ty::LONG),
        (
            "last-at-end",
            [real[..n - 1].to_vec(), vec![len]].concat(),
            ty::LONG,
        ),
        (
            "first-spans-strip",
            [vec![data as u64], vec![len - 2; n - 1]].concat(),
            ty::LONG,
        ),
        ("short-typed", real.clone(), ty::SHORT),
        ("byte-typed", real.clone(), ty::BYTE),
        ("long8-typed", real.clone(), ty::LONG8),
        ("signed", real.clone(), ty::SLONG),
    ];
    for (name, values, field_type) in lies {
        let entry = Entry::uints(tag::NDPI_MCU_STARTS, field_type, &values);
        cases.push((
            format!("mcu-starts-{name}.ndpi"),
            ndpi(&[(strip.clone(), Some(entry)), ndpi_page(64, 32, 0)], &[]),
        ));
    }
    for high in [1u64, u32::MAX as u64] {
        let highs = Entry::uints(tag::NDPI_MCU_STARTS_HIGH, ty::LONG, &vec![high; n]);
        cases.push((
            format!("mcu-starts-high-{high}.ndpi"),
            ndpi(&plain_ndpi_pages(), &[highs]),
        ));
    }
    // Strips cut short (the byte count too), so the last interval lacks its EOI; a strip
    // past the end; two strips; a zero-length strip.
    for cut in [2u64, 10, 100, len / 2] {
        let s = strip[..(len - cut) as usize].to_vec();
        let kept: Vec<u64> = real.iter().copied().filter(|&p| p < len - cut).collect();
        let entry = Entry::uints(tag::NDPI_MCU_STARTS, ty::LONG, &kept);
        cases.push((
            format!("strip-cut-{cut}.ndpi"),
            ndpi(&[(s.clone(), Some(entry)), ndpi_page(64, 32, 0)], &[]),
        ));
        cases.push((
            format!("strip-cut-{cut}-scanned.ndpi"),
            ndpi(&[(s, None), ndpi_page(64, 32, 0)], &[]),
        ));
    }
    for (name, offsets, counts) in [
        ("strip-past-end", vec![1u64 << 31], vec![len]),
        ("two-strips", vec![16, 16], vec![len, len]),
        ("strip-empty", vec![16], vec![0]),
        ("strip-high-word", vec![16], vec![len]),
    ] {
        let mut extra = vec![
            Entry::uints(tag::STRIP_OFFSETS, ty::LONG, &offsets),
            Entry::uints(tag::STRIP_BYTE_COUNTS, ty::LONG, &counts),
        ];
        if name == "strip-high-word" {
            extra[0] = extra[0].clone().with_high(7);
        }
        cases.push((format!("{name}.ndpi"), ndpi(&plain_ndpi_pages(), &extra)));
    }
    // Lens, focal plane and page order that lie.
    for (name, entry) in [
        (
            "lens-missing",
            Entry::raw(tag::NDPI_SOURCE_LENS, ty::FLOAT, 0, Vec::new()),
        ),
        ("lens-zero", Entry::float(tag::NDPI_SOURCE_LENS, 0.0)),
        ("lens-nan", Entry::float(tag::NDPI_SOURCE_LENS, f32::NAN)),
        ("lens-inf", Entry::float(tag::NDPI_SOURCE_LENS, f32::INFINITY)),
        ("focal-plane", Entry::float(tag::NDPI_FOCAL_PLANE, 1.0)),
    ] {
        cases.push((format!("{name}.ndpi"), ndpi(&plain_ndpi_pages(), &[entry])));
    }
    let increasing = [
        ndpi_page(256, 128, 4),
        ndpi_page(512, 256, 8),
        ndpi_page(64, 32, 0),
    ];
    cases.push(("pages-increasing.ndpi".into(), ndpi(&increasing, &[])));
    cases.push(("macro-only.ndpi".into(), ndpi(&[ndpi_page(64, 32, 0)], &[])));
    let progressive = (jpeg(512, 256, 8, true), None);
    cases.push((
        "progressive.ndpi".into(),
        ndpi(&[progressive, ndpi_page(64, 32, 0)], &[]),
    ));
    cases
}

const MPP_VALUES: [&str; 18] = [
    "0", "-1", "-0", "1e-300", "NaN", "inf", "-inf", "4.9e-324", "2.2e-308", "0.04999", "100.0001", "1e308",
    "abc", "", "0,25", "0.25", "0.05", "100",
];

/// Aperio descriptions with every kind of MPP, and descriptions that are odd in themselves.
fn aperio_descriptions() -> Cases {
    let mut cases: Cases = MPP_VALUES
        .iter()
        .enumerate()
        .map(|(i, mpp)| {
            (
                format!("mpp-{i}.svs"),
                plain_aperio(&format!("{APERIO}|AppMag = 20|MPP = {mpp}")),
            )
        })
        .collect();
    let long = format!("{APERIO}{}", "|k = v".repeat(200_000));
    for (name, d) in [
        ("no-pairs", APERIO.to_string()),
        ("pipes-only", format!("{APERIO}||||||")),
        ("equals-only", format!("{APERIO}|=|==|= =")),
        ("appmag-nan", format!("{APERIO}|AppMag = NaN|MPP = 0.5")),
        ("appmag-huge", format!("{APERIO}|AppMag = 1e308|MPP = 0.5")),
        ("two-mpps", format!("{APERIO}|MPP = 0.5|MPP = 0")),
        ("long", long),
    ] {
        cases.push((format!("{name}.svs"), plain_aperio(&d)));
    }
    let mut bytes = plain_aperio(APERIO);
    let at = bytes.windows(6).position(|w| w == b"Aperio").unwrap();
    bytes[at + 20] = 0xFF; // invalid UTF-8 in the description
    cases.push(("non-utf8.svs".into(), bytes));
    cases
}

/// TIFF resolution tags from which an MPP follows: zero, infinite, negative, 72 dpi.
fn resolutions() -> Cases {
    let mut cases = Vec::new();
    let rationals: [(&str, Entry); 8] = [
        ("zero", Entry::rational(tag::X_RESOLUTION, 0, 1)),
        ("zero-over-zero", Entry::rational(tag::X_RESOLUTION, 0, 0)),
        ("over-zero", Entry::rational(tag::X_RESOLUTION, 1, 0)),
        ("negative", Entry::srational(tag::X_RESOLUTION, -40000, 1)),
        ("huge", Entry::rational(tag::X_RESOLUTION, u32::MAX, 1)),
        ("tiny", Entry::rational(tag::X_RESOLUTION, 1, u32::MAX)),
        ("72-dpi", Entry::rational(tag::X_RESOLUTION, 72, 1)),
        ("valid", Entry::rational(tag::X_RESOLUTION, 40000, 1)),
    ];
    for (name, x) in rationals {
        for unit in [1u64, 2, 3, 99] {
            let y = Entry {
                tag: tag::Y_RESOLUTION,
                ..x.clone()
            };
            let img = Image::raw(512, 512, 256)
                .with(x.clone())
                .with(y)
                .with(Entry::uint(tag::RESOLUTION_UNIT, unit));
            cases.push((format!("{name}-unit{unit}.tif"), tiff(Flavor::Classic, &[img])));
        }
    }
    cases
}

/// Associated images (thumbnail, label, macro) that lie about their size and strips.
fn associated_images() -> Cases {
    let mut cases = Vec::new();
    let thumb = || Image::stripped(128, 96, 16, 1);
    let variants: Vec<(&str, Image)> = vec![
        ("huge-missing-strips", {
            let mut i = Image::stripped(1, 1, 1, 1);
            i.width = 100_000;
            i.height = 100_000;
            i.chunks.clear();
            i.with(Entry::uints(tag::STRIP_OFFSETS, ty::BYTE, &vec![0; 1 << 16]))
                .with(Entry::uints(tag::STRIP_BYTE_COUNTS, ty::BYTE, &vec![0; 1 << 16]))
                .with(Entry::uint(tag::ROWS_PER_STRIP, 2))
        }),
        ("whole-strip-16384", {
            let mut i = Image::stripped(16384, 16384, 16384, 8);
            i.chunks = vec![compressed_zeros(8, 1 << 20)];
            i
        }),
        ("whole-strip-4096", {
            let mut i = Image::stripped(4096, 4096, 4096, 8);
            i.chunks = vec![compressed_zeros(8, 4096 * 4096 * 3)];
            i
        }),
        ("rows-0", thumb().with(Entry::uint(tag::ROWS_PER_STRIP, 0))),
        (
            "rows-huge",
            thumb().with(Entry::uints(tag::ROWS_PER_STRIP, ty::LONG, &[u32::MAX as u64])),
        ),
        ("strips-fewer", {
            let mut i = thumb();
            i.chunks.truncate(2);
            i
        }),
        ("jpeg-strip-larger", {
            let mut i = Image::stripped(128, 96, 96, 1);
            i.compression = 7;
            i.chunks = vec![with_frame_size(&jpeg(128, 96, 0, false), 8192, 8192)];
            i
        }),
        ("jpeg-strip-cut", {
            let mut i = Image::stripped(128, 96, 96, 1);
            i.compression = 7;
            let j = jpeg(128, 96, 0, false);
            i.chunks = vec![j[..j.len() / 2].to_vec()];
            i
        }),
        ("jpeg-strip-ok", {
            let mut i = Image::stripped(128, 96, 96, 1);
            i.compression = 7;
            i.chunks = vec![jpeg(128, 96, 0, false)];
            i
        }),
        (
            "grey-4-channels-as-1",
            thumb().with(Entry::uint(tag::SAMPLES_PER_PIXEL, 1)),
        ),
        ("planar", thumb().with(Entry::uint(tag::PLANAR_CONFIG, 2))),
        (
            "bits-16",
            thumb().with(Entry::uints(tag::BITS_PER_SAMPLE, ty::SHORT, &[16, 16, 16])),
        ),
    ];
    for (name, image) in variants {
        for position in 0..3 {
            let mut associated = vec![
                thumb(),
                Image::stripped(64, 64, 64, 5),
                Image::stripped(200, 80, 80, 8),
            ];
            associated[position] = image.clone();
            let levels = [Image::jpeg(1024, 768), Image::jpeg(256, 192)];
            cases.push((
                format!("{name}-{position}.svs"),
                aperio(APERIO, &levels, &associated),
            ));
        }
    }
    cases
}

// ---- scanner XML: Philips TIFF, Leica SCN, OME-TIFF ----

/// Base64 for the XML of a hostile file (standard alphabet, padded).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A Philips DPUfsImport document: `wsi` whole-slide images with one pixel spacing a
/// level each, `extra` inside the first one.
fn philips_xml(wsi: usize, spacings: &[&str], extra: &str) -> String {
    let representations: String = spacings
        .iter()
        .map(|s| {
            format!(
                "<DataObject ObjectType=\"PixelDataRepresentation\"><Attribute Name=\"DICOM_PIXEL_SPACING\">{s}</Attribute></DataObject>"
            )
        })
        .collect();
    let image = |extra: &str| {
        format!(
            "<DataObject ObjectType=\"DPScannedImage\"><Attribute Name=\"PIM_DP_IMAGE_TYPE\">WSI</Attribute>\
             <Attribute Name=\"PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE\"><Array>{representations}</Array></Attribute>{extra}</DataObject>"
        )
    };
    let images: String = (0..wsi).map(|i| image(if i == 0 { extra } else { "" })).collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<DataObject ObjectType=\"DPUfsImport\">\
         <Attribute Name=\"PIM_DP_SCANNED_IMAGES\"><Array>{images}</Array></Attribute></DataObject>\n"
    )
}

/// A Philips-like TIFF: 1024 × 768 and a 512 × 512 padded level (384 true rows at
/// downsample 2), the XML on the first; `more` images after them (label, macro).
fn philips(xml: &str, second: Image, more: &[Image]) -> Vec<u8> {
    let mut images = vec![
        Image::jpeg(1024, 768)
            .with(Entry::ascii(tag::IMAGE_DESCRIPTION, xml.as_bytes()))
            .with(Entry::ascii(tag::SOFTWARE, b"Philips DP v1.0")),
        second.with(Entry::uint(tag::NEW_SUBFILE_TYPE, 1)),
    ];
    images.extend(more.iter().cloned());
    tiff(Flavor::Big, &images)
}

const SPACINGS: [&str; 2] = ["\"0.00025\" \"0.00025\"", "\"0.0005\" \"0.0005\""];

fn philips_cases() -> Cases {
    let ok = || philips_xml(1, &SPACINGS, "");
    let level1 = || Image::jpeg(512, 512);
    let mut cases: Cases = vec![("ok.tiff".into(), philips(&ok(), level1(), &[]))];
    for (name, spacing) in [
        ("zero", "\"0\" \"0\""),
        ("negative", "\"-0.0005\" \"-0.0005\""),
        ("nan", "\"nan\" \"nan\""),
        ("inf", "\"inf\" \"inf\""),
        ("huge", "\"1e308\" \"1e308\""),
        ("finer-than-level-0", "\"0.0000001\" \"0.0000001\""),
        ("as-level-0", SPACINGS[0]),
        ("one-field", "\"0.0005\""),
        ("three-fields", "\"0.0005\" \"0.0005\" \"0.0005\""),
        ("text", "\"a\" \"b\""),
        ("empty", ""),
    ] {
        let xml = philips_xml(1, &[SPACINGS[0], spacing], "");
        cases.push((format!("spacing-{name}.tiff"), philips(&xml, level1(), &[])));
    }
    for (name, spacings) in [
        ("none", &[][..]),
        ("one", &SPACINGS[..1]),
        ("three", &[SPACINGS[0], SPACINGS[1], SPACINGS[1]][..]),
    ] {
        let xml = philips_xml(1, spacings, "");
        cases.push((format!("spacings-{name}.tiff"), philips(&xml, level1(), &[])));
    }
    cases.push((
        "two-wsi.tiff".into(),
        philips(&philips_xml(2, &SPACINGS, ""), level1(), &[]),
    ));
    cases.push((
        "no-wsi.tiff".into(),
        philips(&philips_xml(0, &SPACINGS, ""), level1(), &[]),
    ));
    let unmarked = tiff(
        Flavor::Big,
        &[
            Image::jpeg(1024, 768)
                .with(Entry::ascii(tag::IMAGE_DESCRIPTION, ok().as_bytes()))
                .with(Entry::ascii(tag::SOFTWARE, b"Philips DP v1.0")),
            level1(),
        ],
    );
    cases.push(("level-not-marked-reduced.tiff".into(), unmarked));
    cases.push((
        "level-larger.tiff".into(),
        philips(&ok(), Image::jpeg(2048, 2048), &[]),
    ));
    // Not parsable as Philips XML: read as a generic TIFF.
    let bomb = "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;\">]><DataObject ObjectType=\"DPUfsImport\">&c;</DataObject>";
    let deep = format!(
        "<DataObject ObjectType=\"DPUfsImport\">{}{}</DataObject>",
        "<a>".repeat(100_000),
        "</a>".repeat(100_000)
    );
    for (name, xml) in [
        ("entity-bomb", bomb.to_string()),
        ("deep", deep),
        ("unclosed", "<DataObject ObjectType=\"DPUfsImport\">".into()),
    ] {
        cases.push((format!("{name}.tiff"), philips(&xml, level1(), &[])));
    }
    // Many properties, and the pixel data sequence nested in itself.
    let flat: String = (0..100_000)
        .map(|i| format!("<Attribute Name=\"K{i}\">{i}</Attribute>"))
        .collect();
    cases.push((
        "100k-attributes.tiff".into(),
        philips(&philips_xml(1, &SPACINGS, &flat), level1(), &[]),
    ));
    let nested = format!(
        "{}{}",
        "<Attribute Name=\"PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE\"><Array><DataObject>".repeat(20),
        "</DataObject></Array></Attribute>".repeat(20)
    );
    cases.push((
        "nested-sequence.tiff".into(),
        philips(&philips_xml(1, &SPACINGS, &nested), level1(), &[]),
    ));
    // Barcode and images in the XML: binary, lying, valid.
    let barcode = format!(
        "<Attribute Name=\"PIM_DP_UFS_BARCODE\">{}</Attribute>",
        base64(b"A\0\xff\xfeB")
    );
    cases.push((
        "binary-barcode.tiff".into(),
        philips(&philips_xml(1, &SPACINGS, &barcode), level1(), &[]),
    ));
    for (name, data) in [
        ("garbage", base64(b"not a jpeg at all")),
        (
            "huge-frame",
            base64(&with_frame_size(&jpeg(64, 64, 0, false), 65535, 65535)),
        ),
        ("cut", base64(&jpeg(64, 64, 0, false)[..300])),
        ("valid", base64(&jpeg(64, 48, 0, false))),
        ("not-base64", "%%%%".into()),
    ] {
        let label = format!(
            "</DataObject><DataObject ObjectType=\"DPScannedImage\"><Attribute Name=\"PIM_DP_IMAGE_TYPE\">LABELIMAGE</Attribute><Attribute Name=\"PIM_DP_IMAGE_DATA\">{data}</Attribute>"
        );
        // The label object closes the WSI's and opens its own.
        let xml = philips_xml(1, &SPACINGS, &label);
        cases.push((format!("xml-label-{name}.tiff"), philips(&xml, level1(), &[])));
    }
    let label_dir = |i: Image| i.with(Entry::ascii(tag::IMAGE_DESCRIPTION, b"Label"));
    cases.push((
        "label-dir-lying.tiff".into(),
        philips(
            &ok(),
            level1(),
            &[label_dir({
                let mut i = Image::stripped(128, 96, 96, 1);
                i.chunks.truncate(0);
                i
            })],
        ),
    ));
    cases.push((
        "label-dir.tiff".into(),
        philips(&ok(), level1(), &[label_dir(Image::stripped(128, 96, 16, 5))]),
    ));
    cases
}

/// A Leica dimension: width, height, ifd, z.
type ScnDimension = (i64, i64, i64, i64);

/// One Leica image: its view (offset and size in nm), its dimensions, illumination and
/// objective.
fn scn_image(
    offset: (i64, i64),
    size: (i64, i64),
    dims: &[ScnDimension],
    light: &str,
    objective: &str,
) -> String {
    let dims: String = dims
        .iter()
        .map(|(w, h, ifd, z)| {
            format!("<dimension sizeX=\"{w}\" sizeY=\"{h}\" r=\"0\" z=\"{z}\" ifd=\"{ifd}\"/>")
        })
        .collect();
    format!(
        "<image name=\"i\"><pixels sizeX=\"1\" sizeY=\"1\">{dims}</pixels>\
         <view sizeX=\"{}\" sizeY=\"{}\" offsetX=\"{}\" offsetY=\"{}\"/>\
         <scanSettings><objectiveSettings><objective>{objective}</objective></objectiveSettings>\
         <illuminationSettings><illuminationSource>{light}</illuminationSource></illuminationSettings></scanSettings></image>",
        size.0, size.1, offset.0, offset.1
    )
}

fn scn_xml(collection: (i64, i64), images: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><scn xmlns=\"http://www.leica-microsystems.com/scn/2010/10/01\">\
         <collection sizeX=\"{}\" sizeY=\"{}\"><barcode>{}</barcode>{images}</collection></scn>",
        collection.0,
        collection.1,
        base64(b"SCN-1")
    )
}

/// A Leica-like BigTIFF: 1024 × 768 and 256 × 192 JPEG images, the XML on the first.
fn scn(xml: &str) -> Vec<u8> {
    tiff(
        Flavor::Big,
        &[
            Image::jpeg(1024, 768).with(Entry::ascii(tag::IMAGE_DESCRIPTION, xml.as_bytes())),
            Image::jpeg(256, 192),
        ],
    )
}

fn leica_cases() -> Cases {
    let glass = (2_000_000, 1_500_000);
    let main =
        |dims: &[ScnDimension]| scn_image((100_000, 50_000), (512_000, 384_000), dims, "brightfield", "20");
    let good = [(1024, 768, 0, 0), (256, 192, 1, 0)];
    let mut cases: Cases = vec![("ok.scn".into(), scn(&scn_xml(glass, &main(&good))))];
    let dims_cases: [(&str, Vec<ScnDimension>); 8] = [
        ("ifd-past-end", vec![(1024, 768, 99, 0)]),
        ("ifd-negative", vec![(1024, 768, -1, 0)]),
        ("width-zero", vec![(0, 768, 0, 0)]),
        ("width-huge", vec![(i64::MAX, 768, 0, 0)]),
        ("width-negative", vec![(-5, 768, 0, 0)]),
        ("only-other-planes", vec![(1024, 768, 0, 1)]),
        ("none", vec![]),
        ("same-ifd-twice", vec![(1024, 768, 0, 0), (512, 384, 0, 0)]),
    ];
    for (name, dims) in dims_cases {
        cases.push((format!("dims-{name}.scn"), scn(&scn_xml(glass, &main(&dims)))));
    }
    for (name, offset, size) in [
        ("view-zero", (0, 0), (0, 0)),
        ("offset-negative", (-1, -1), (512_000, 384_000)),
        ("offset-past-glass", (3_000_000, 0), (512_000, 384_000)),
        ("offset-huge", (i64::MAX, i64::MAX), (512_000, 384_000)),
        ("view-huge", (0, 1), (i64::MAX, i64::MAX)),
    ] {
        let image = scn_image(offset, size, &good, "brightfield", "20");
        cases.push((format!("{name}.scn"), scn(&scn_xml(glass, &image))));
    }
    for (name, glass) in [
        ("glass-zero", (0, 0)),
        ("glass-huge", (i64::MAX, i64::MAX)),
        ("glass-tiny", (1, 1)),
    ] {
        cases.push((format!("{name}.scn"), scn(&scn_xml(glass, &main(&good)))));
    }
    let macro_image = scn_image((0, 0), glass, &[(256, 192, 1, 0)], "brightfield", "0.6");
    let fluorescence = scn_image((100_000, 50_000), (512_000, 384_000), &good, "fluorescence", "20");
    let other = scn_image(
        (700_000, 500_000),
        (512_000, 384_000),
        &[(1100, 800, 0, 0), (256, 192, 1, 0)],
        "brightfield",
        "20",
    );
    let other_objective = scn_image((700_000, 500_000), (512_000, 384_000), &good, "brightfield", "40");
    let no_objective = scn_image((100_000, 50_000), (512_000, 384_000), &good, "brightfield", "")
        .replace("<objective></objective>", "");
    for (name, images) in [
        ("with-macro", format!("{}{macro_image}", main(&good))),
        ("two-macros", format!("{}{macro_image}{macro_image}", main(&good))),
        ("fluorescence", fluorescence),
        ("resolutions-differ", format!("{}{other}", main(&good))),
        ("objectives-differ", format!("{}{other_objective}", main(&good))),
        ("no-objective", no_objective),
        ("no-images", String::new()),
        ("300-images", main(&good).repeat(300)),
        ("200-images", main(&good).repeat(200)),
        (
            "two-views",
            main(&good).replace(
                "</pixels>",
                "</pixels><view sizeX=\"1\" sizeY=\"1\" offsetX=\"0\" offsetY=\"0\"/>",
            ),
        ),
        (
            "not-integers",
            main(&good).replace("sizeX=\"512000\"", "sizeX=\"5e5\""),
        ),
    ] {
        cases.push((format!("{name}.scn"), scn(&scn_xml(glass, &images))));
    }
    cases
}

/// An OME-XML document of `images` (each: SizeC, samples a channel, type, SizeZ, IFD).
fn ome_xml(images: &[(u32, u32, &str, u32, &str)], physical: &str) -> String {
    let images: String = images
        .iter()
        .enumerate()
        .map(|(i, (c, spp, kind, z, ifd))| {
            // At most 8 Channel elements, whatever SizeC says.
            let channels: String = (0..(c / spp).min(8))
                .map(|_| format!("<Channel SamplesPerPixel=\"{spp}\"/>"))
                .collect();
            format!(
                "<Image ID=\"Image:{i}\" Name=\"{}\"><Pixels DimensionOrder=\"XYCZT\" Type=\"{kind}\" SizeX=\"1024\" SizeY=\"768\" SizeC=\"{c}\" SizeZ=\"{z}\" SizeT=\"1\" {physical}>{channels}<TiffData IFD=\"{ifd}\" PlaneCount=\"1\"/></Pixels></Image>",
                if i == 0 { "scan" } else { "macro" }
            )
        })
        .collect();
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><OME xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\">{images}</OME>")
}

/// An OME-TIFF: level 0 (1024 × 768) in the main chain, then `extra` main directories, and
/// SubIFDs 512 × 384 and 256 × 192 outside it, listed by level 0's SubIFDs tag as
/// `sub_ifds(offsets of every directory)` says.
fn ome_tiff(xml: &str, extra: &[Image], sub_ifds: impl Fn(&[u64]) -> Vec<u64>) -> Vec<u8> {
    let build = |subs: &[u64]| {
        let mut b = TiffBuilder::new(Flavor::Classic);
        let mut level0 = Image::jpeg(1024, 768).with(Entry::ascii(tag::IMAGE_DESCRIPTION, xml.as_bytes()));
        if !subs.is_empty() {
            level0 = level0.with(Entry::uints(tag::SUB_IFDS, ty::LONG, subs));
        }
        let entries = level0.entries(&mut b);
        let mut chained = vec![b.dir(entries)];
        for image in extra {
            let e = image.entries(&mut b);
            chained.push(b.dir(e));
        }
        for (w, h) in [(512, 384), (256, 192)] {
            let e = Image::jpeg(w, h)
                .with(Entry::uint(tag::NEW_SUBFILE_TYPE, 1))
                .entries(&mut b);
            b.dir(e);
        }
        let offsets = std::cell::RefCell::new(Vec::new());
        let n = chained.len();
        let bytes = b.finish_linked(
            |i, o| {
                *offsets.borrow_mut() = o.to_vec();
                if i + 1 < n {
                    o[i + 1]
                } else {
                    0
                }
            },
            |o| o[0],
        );
        (bytes, offsets.into_inner())
    };
    // Two passes: the first lays the file out (the tag's size fixed) and finds where the
    // directories land.
    let placeholder = sub_ifds(&[0; 16]);
    let (_, offsets) = build(&placeholder);
    build(&sub_ifds(&offsets)).0
}

fn ome_cases() -> Cases {
    let rgb = [(3, 3, "uint8", 1, "0")];
    let um = "PhysicalSizeX=\"0.25\" PhysicalSizeY=\"0.26\"";
    let subs = |o: &[u64]| o[o.len() - 2..].to_vec();
    let mut cases: Cases = vec![("ok.ome.tif".into(), ome_tiff(&ome_xml(&rgb, um), &[], subs))];
    for (name, sub_ifds) in [
        (
            "sub-is-level-0",
            (|o: &[u64]| vec![o[0]]) as fn(&[u64]) -> Vec<u64>,
        ),
        ("sub-twice", |o| vec![o[o.len() - 1], o[o.len() - 1]]),
        ("sub-past-end", |_| vec![u32::MAX as u64]),
        ("sub-zero", |_| vec![0]),
        ("sub-odd", |o| vec![o[o.len() - 1] + 1]),
        ("subs-growing", |o| vec![o[o.len() - 1], o[o.len() - 2]]),
        ("subs-10k", |o| vec![o[o.len() - 1]; 10_000]),
    ] {
        cases.push((
            format!("{name}.ome.tif"),
            ome_tiff(&ome_xml(&rgb, um), &[], sub_ifds),
        ));
    }
    for (name, images) in [
        ("fluorescence", vec![(3, 1, "uint8", 1, "0")]),
        ("uint16", vec![(3, 3, "uint16", 1, "0")]),
        ("z-stack", vec![(3, 3, "uint8", 5, "0")]),
        ("ifd-past-end", vec![(3, 3, "uint8", 1, "7")]),
        ("ifd-negative", vec![(3, 3, "uint8", 1, "-1")]),
        ("ifd-text", vec![(3, 3, "uint8", 1, "x")]),
        ("channels-huge", vec![(u32::MAX, 1, "uint8", 1, "0")]),
        (
            "macro-is-level-0",
            vec![(3, 3, "uint8", 1, "0"), (3, 3, "uint8", 1, "0")],
        ),
        (
            "macro-past-end",
            vec![(3, 3, "uint8", 1, "0"), (3, 3, "uint8", 1, "9")],
        ),
    ] {
        cases.push((
            format!("{name}.ome.tif"),
            ome_tiff(&ome_xml(&images, um), &[], subs),
        ));
    }
    for (name, physical) in [
        ("size-nan", "PhysicalSizeX=\"NaN\" PhysicalSizeY=\"NaN\""),
        ("size-negative", "PhysicalSizeX=\"-1\" PhysicalSizeY=\"-1\""),
        (
            "size-huge-unit",
            "PhysicalSizeX=\"1e300\" PhysicalSizeXUnit=\"m\" PhysicalSizeY=\"1\" PhysicalSizeYUnit=\"m\"",
        ),
        (
            "unit-unknown",
            "PhysicalSizeX=\"1\" PhysicalSizeXUnit=\"furlong\" PhysicalSizeY=\"1\"",
        ),
    ] {
        cases.push((
            format!("{name}.ome.tif"),
            ome_tiff(&ome_xml(&rgb, physical), &[], subs),
        ));
    }
    let macro_image = [(3, 3, "uint8", 1, "0"), (3, 3, "uint8", 1, "1")];
    cases.push((
        "with-macro.ome.tif".into(),
        ome_tiff(
            &ome_xml(&macro_image, um),
            &[Image::stripped(200, 100, 20, 8)],
            subs,
        ),
    ));
    cases.push((
        "not-ome-root.ome.tif".into(),
        ome_tiff(
            &ome_xml(&rgb, um)
                .replace("<OME ", "<OMX ")
                .replace("</OME>", "</OMX>"),
            &[],
            subs,
        ),
    ));
    cases
}

// ---- Ventana BIF: iScan XMP, EncodeInfo, joints ----

/// A tile joint: direction, tile 1, tile 2, overlap x, overlap y, confidence.
type Joint<'a> = (&'a str, i64, i64, &'a str, &'a str, &'a str);

/// An EncodeInfo of one area of `cols` × `rows` fields of 256² at `origin` and `position`,
/// with `joints`.
fn encode_info(cols: i64, rows: i64, origin: (i64, i64), position: (&str, &str), joints: &[Joint]) -> String {
    let joints: String = joints
        .iter()
        .map(|(d, t1, t2, ox, oy, c)| {
            format!("<TileJointInfo FlagJoined=\"1\" Confidence=\"{c}\" Direction=\"{d}\" Tile1=\"{t1}\" Tile2=\"{t2}\" OverlapX=\"{ox}\" OverlapY=\"{oy}\"/>")
        })
        .collect();
    format!(
        "<?xml version=\"1.0\"?><EncodeInfo Ver=\"2\"><SlideStitchInfo><ImageInfo AOIScanned=\"1\" AOIIndex=\"0\" Width=\"256\" Height=\"256\" NumRows=\"{rows}\" NumCols=\"{cols}\" Pos-X=\"{}\" Pos-Y=\"{}\">{joints}</ImageInfo></SlideStitchInfo><AoiOrigin><AOI0 OriginX=\"{}\" OriginY=\"{}\"/></AoiOrigin></EncodeInfo>",
        position.0, position.1, origin.0, origin.1
    )
}

/// A BIF-like BigTIFF: a label with the iScan XMP, then level 0 (1024 × 768, its XMP the
/// EncodeInfo) and level 1.
fn bif(encode: &str) -> Vec<u8> {
    const XMP: u16 = 700;
    let iscan = b"<?xml version=\"1.0\"?><iScan Magnification=\"20\" ScanRes=\"0.5\"/>";
    tiff(
        Flavor::Big,
        &[
            Image::stripped(64, 48, 48, 1)
                .with(Entry::ascii(tag::IMAGE_DESCRIPTION, b"Label Image"))
                .with(Entry::raw(XMP, ty::BYTE, iscan.len() as u64, iscan.to_vec())),
            Image::jpeg(1024, 768)
                .with(Entry::ascii(tag::IMAGE_DESCRIPTION, b"level=0 mag=20 quality=90"))
                .with(Entry::raw(
                    XMP,
                    ty::BYTE,
                    encode.len() as u64,
                    encode.as_bytes().to_vec(),
                )),
            Image::jpeg(512, 384).with(Entry::ascii(tag::IMAGE_DESCRIPTION, b"level=1 mag=10 quality=90")),
        ],
    )
}

fn bif_cases() -> Cases {
    // 2 × 2 fields numbered from the bottom: 1 2 on the bottom row, 4 3 above.
    let good = [
        ("RIGHT", 1, 2, "20", "0", "90"),
        ("UP", 2, 3, "0", "20", "90"),
        ("RIGHT", 4, 3, "20", "0", "90"),
    ];
    let ok = || encode_info(2, 2, (0, 0), ("0", "0"), &good);
    let mut cases: Cases = vec![("ok.bif".into(), bif(&ok()))];
    let joints: [(&str, Vec<Joint>); 11] = [
        ("none", vec![]),
        ("tile-zero", vec![("RIGHT", 0, 1, "20", "0", "90")]),
        ("tile-past", vec![("RIGHT", 4, 5, "20", "0", "90")]),
        ("left", vec![("LEFT", 2, 1, "20", "0", "90")]),
        ("down", vec![("DOWN", 3, 2, "20", "0", "90")]),
        ("not-beside", vec![("RIGHT", 1, 3, "20", "0", "90")]),
        (
            "confidence-zero",
            vec![("RIGHT", 1, 2, "20", "0", "0"), ("UP", 2, 3, "0", "20", "0")],
        ),
        (
            "confidence-negative",
            vec![("RIGHT", 1, 2, "20", "0", "-90"), ("UP", 2, 3, "0", "20", "90")],
        ),
        (
            "overlap-whole-field",
            vec![("RIGHT", 1, 2, "256", "0", "90"), ("UP", 2, 3, "0", "20", "90")],
        ),
        ("overlap-nan", vec![("RIGHT", 1, 2, "nan", "0", "90")]),
        (
            "overlap-gap",
            vec![
                ("RIGHT", 1, 2, "-500", "0", "90"),
                ("UP", 2, 3, "0", "-500", "90"),
            ],
        ),
    ];
    for (name, j) in joints {
        cases.push((
            format!("joints-{name}.bif"),
            bif(&encode_info(2, 2, (0, 0), ("0", "0"), &j)),
        ));
    }
    for (name, cols, rows, origin, position) in [
        ("fields-huge", 1 << 20, 1 << 20, (0, 0), ("0", "0")),
        ("fields-zero", 0, 2, (0, 0), ("0", "0")),
        ("fields-past-stored", 20, 20, (0, 0), ("0", "0")),
        ("origin-off-grid", 2, 2, (100, 0), ("0", "0")),
        ("origin-negative", 2, 2, (-512, -512), ("0", "0")),
        ("position-huge", 2, 2, (0, 0), ("1e18", "1e18")),
        ("position-negative", 2, 2, (0, 0), ("-300", "-300")),
        ("position-nan", 2, 2, (0, 0), ("nan", "0")),
    ] {
        cases.push((
            format!("area-{name}.bif"),
            bif(&encode_info(cols, rows, origin, position, &good)),
        ));
    }
    let two_origins = ok().replace("</AoiOrigin>", "<AOI1 OriginX=\"0\" OriginY=\"0\"/></AoiOrigin>");
    cases.push(("origins-more-than-areas.bif".into(), bif(&two_origins)));
    cases.push(("encode-not-xml.bif".into(), bif("<EncodeInfo")));
    cases.push((
        "encode-other-root.bif".into(),
        bif("<?xml version=\"1.0\"?><Other/>"),
    ));
    cases.push((
        "size-mismatch.bif".into(),
        bif(&ok().replace("Width=\"256\"", "Width=\"512\"")),
    ));
    cases
}

/// Every family, its cases generated field by field: several hundred hostile files, none of
/// which may panic, hang, take over 2 s or allocate over 256 MiB.
#[test]
fn hostile_slides_never_panic_hang_or_balloon() {
    let _serial = serial();
    type Family = fn() -> Cases;
    let families: [(&str, Family); 16] = [
        ("tile-sizes", tile_sizes),
        ("image-sizes", image_sizes),
        ("offsets-and-counts", offsets_and_counts),
        ("shared-arrays", shared_arrays),
        ("directory-chains", directories),
        ("jpeg-frames", jpeg_frames),
        ("jpeg-truncations", jpeg_truncations),
        ("lossless-bombs", lossless_bombs),
        ("ndpi-restarts", ndpi_cases),
        ("aperio-descriptions", aperio_descriptions),
        ("resolutions", resolutions),
        ("associated-images", associated_images),
        ("philips-xml", philips_cases),
        ("leica-xml", leica_cases),
        ("ome-xml", ome_cases),
        ("ventana-xml", bif_cases),
    ];
    let mut total = Tally::default();
    for (name, make) in families {
        total.add(&run_family(name, make()));
    }
    print_tally("(all)", &total);
    assert!(total.cases >= 500, "only {} cases", total.cases);
}

/// Runs one case and returns its error, which must be one.
fn expect_error(name: &str, bytes: &[u8]) -> String {
    let mut tally = Tally::default();
    run_case(name, bytes, &mut tally).expect_err(&format!("{name} should be refused"))
}

/// A BigTIFF whose tile sides multiply to 2^64 (0, wrapped) is refused, not divided by.
#[test]
fn wrapping_tile_size_is_refused() {
    let _serial = serial();
    let img = Image::raw(1024, 768, 256)
        .with(Entry::uints(tag::TILE_WIDTH, ty::LONG8, &[1 << 32]))
        .with(Entry::uints(tag::TILE_LENGTH, ty::LONG8, &[1 << 32]));
    let e = expect_error("wrap.tif", &tiff(Flavor::Big, &[img]));
    assert!(e.contains("4294967296x4294967296"), "{e}");
}

/// A JPEG frame of 16,384² in a 256² tile is refused before it is decoded.
#[test]
fn jpeg_frame_larger_than_its_tile_is_refused() {
    let _serial = serial();
    let mut img = Image::jpeg(512, 512);
    img.chunks[0] = with_frame_size(&jpeg(256, 256, 0, false), 16384, 16384);
    let e = expect_error("sof.svs", &aperio(APERIO, &[img], &[]));
    assert!(
        e.contains("level 0, tile at column 0, row 0") && e.contains("16384x16384"),
        "{e}"
    );
}

/// A JPEG tile cut 10 bytes into its data is an error naming the slide, level and tile, from
/// `read_region` (the CPU's decoder) and from the stored stream a GPU decoder would get.
#[test]
fn truncated_jpeg_tile_names_slide_level_and_tile() {
    let _serial = serial();
    let good = jpeg(256, 256, 0, false);
    let (_, data) = jpeg_segments(&good);
    let mut img = Image::jpeg(1024, 768);
    img.chunks[6] = good[..data + 10].to_vec(); // column 2, row 1: under the centre read
    let bytes = aperio(APERIO, &[img.clone(), Image::jpeg(256, 192)], &[]);
    let e = expect_error("truncated.svs", &bytes);
    assert!(
        e.contains("truncated.svs: level 0, tile at column 2, row 1"),
        "{e}"
    );
    assert!(e.contains("truncated"), "{e}");

    let path = scratch().join("truncated-gpu.svs");
    std::fs::write(&path, &bytes).unwrap();
    let slide = Slide::open(&path).unwrap();
    let level = slide.jpeg_level(0).expect("YCbCr JPEG tiles");
    assert!(matches!(level.stream(0, 0), Ok(StoredTile::Jpeg(_))));
    let e = match level.stream(2, 1) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a cut stream was handed to the GPU decoder"),
    };
    assert!(
        e.contains("truncated-gpu.svs: level 0, tile at column 2, row 1"),
        "{e}"
    );
    // A tile without its EOI, the rest of its data whole, is refused too.
    img.chunks[6] = good[..good.len() - 2].to_vec();
    let e = expect_error("no-eoi.svs", &aperio(APERIO, &[img], &[]));
    assert!(e.contains("EOI"), "{e}");
    std::fs::remove_file(&path).unwrap();
}

/// 126 directories sharing one 1 MiB BYTE array of offsets: refused while parsing.
#[test]
fn many_directories_sharing_one_array_are_refused() {
    let _serial = serial();
    let case = shared_arrays()
        .into_iter()
        .find(|(n, _)| n == "126x1048576-type1.tif")
        .unwrap();
    let e = expect_error("shared.tif", &case.1);
    assert!(e.contains("more than the file holds"), "{e}");
}

/// An NDPI page whose DRI segment is 2 bytes long is refused, not read past.
#[test]
fn ndpi_dri_segment_of_two_bytes_is_refused() {
    let _serial = serial();
    let case = ndpi_cases()
        .into_iter()
        .find(|(n, _)| n == "dri-2-bytes.ndpi")
        .unwrap();
    let e = expect_error("dri.ndpi", &case.1);
    assert!(e.contains("restart interval segment"), "{e}");
    let case = ndpi_cases()
        .into_iter()
        .find(|(n, _)| n == "no-restarts-16384x16384.ndpi")
        .unwrap();
    let e = expect_error("whole.ndpi", &case.1);
    assert!(e.contains("without restart markers"), "{e}");
}

/// A Deflate tile expanding to 64 MiB in a 256² tile reads as that tile and no more.
#[test]
fn decompression_bombs_stop_at_the_tile_size() {
    let _serial = serial();
    for compression in [5u64, 8] {
        let img = Image::tiled(
            256,
            256,
            256,
            compression,
            compressed_zeros(compression, 64 << 20),
        );
        let mut tally = Tally::default();
        run_case(
            &format!("bomb-{compression}.tif"),
            &tiff(Flavor::Classic, &[img]),
            &mut tally,
        )
        .unwrap();
    }
    // ZSTD refuses a frame larger than the tile rather than cut it.
    let img = Image::tiled(256, 256, 256, 50000, compressed_zeros(50000, 64 << 20));
    expect_error("bomb-zstd.tif", &tiff(Flavor::Classic, &[img]));
}

/// MPP 0, negative, tiny, denormal, NaN or infinite is no MPP, with the reason; valid values
/// are kept as before.
#[test]
fn implausible_mpp_is_reported_not_used() {
    let _serial = serial();
    for mpp in MPP_VALUES {
        let path = scratch().join(format!("mpp-{}.svs", mpp.replace(['.', ','], "_")));
        std::fs::write(&path, plain_aperio(&format!("{APERIO}|AppMag = 20|MPP = {mpp}"))).unwrap();
        let slide = Slide::open(&path).unwrap();
        let value = mpp.trim().replace(',', ".").parse::<f64>();
        match value {
            Ok(v) if (0.05..=100.0).contains(&v) => {
                assert_eq!(slide.mpp().map(|m| m.x), Some(v), "MPP = {mpp}");
                assert_eq!(slide.mpp_problem(), None, "MPP = {mpp}");
            }
            _ => {
                assert!(slide.mpp().is_none(), "MPP = {mpp} accepted");
                let problem = slide
                    .mpp_problem()
                    .unwrap_or_else(|| panic!("MPP = {mpp}: no reason given"));
                assert!(
                    problem.contains("implausible") && problem.contains("aperio.MPP"),
                    "MPP = {mpp}: {problem}"
                );
            }
        }
        std::fs::remove_file(&path).unwrap();
    }
    let path = scratch().join("mpp-zero.svs");
    std::fs::write(&path, plain_aperio(&format!("{APERIO}|MPP = 0"))).unwrap();
    let slide = Slide::open(&path).unwrap();
    assert_eq!(
        slide.mpp_problem(),
        Some("the slide states MPP 0 µm/px (from aperio.MPP), which is implausible (outside 0.05–100 µm/px)")
    );
    std::fs::remove_file(&path).unwrap();
}

/// MPP from the TIFF resolution tags: 0 (an infinite MPP), negative, 72 dpi (353 µm/px) and
/// the like are reported, not used; 40,000 px/cm is 0.25 µm/px, as before.
#[test]
fn implausible_resolution_mpp_is_reported_not_used() {
    let _serial = serial();
    for (name, x, want) in [
        ("zero", Entry::rational(tag::X_RESOLUTION, 0, 1), None),
        ("negative", Entry::srational(tag::X_RESOLUTION, -40000, 1), None),
        ("72-dpi", Entry::rational(tag::X_RESOLUTION, 72, 1), None),
        ("tiny", Entry::rational(tag::X_RESOLUTION, u32::MAX, 1), None),
        ("valid", Entry::rational(tag::X_RESOLUTION, 40000, 1), Some(0.25)),
    ] {
        let y = Entry {
            tag: tag::Y_RESOLUTION,
            ..x.clone()
        };
        let img = Image::raw(512, 512, 256)
            .with(x)
            .with(y)
            .with(Entry::uint(tag::RESOLUTION_UNIT, 3));
        let path = scratch().join(format!("resolution-{name}.tif"));
        std::fs::write(&path, tiff(Flavor::Classic, &[img])).unwrap();
        let slide = Slide::open(&path).unwrap();
        assert_eq!(slide.mpp().map(|m| m.x), want, "{name}");
        assert_eq!(
            slide.mpp_problem().is_some(),
            want.is_none(),
            "{name}: {:?}",
            slide.mpp_problem()
        );
        std::fs::remove_file(&path).unwrap();
    }
}

/// A FIFO (and a directory, and a device) is refused at once, naming the path, rather than
/// blocking on open.
#[cfg(unix)]
#[test]
fn special_files_are_refused_without_blocking() {
    let _serial = serial();
    let fifo = scratch().join("slide.svs");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED special_files_are_refused_without_blocking: mkfifo failed");
        return;
    }
    for path in [fifo.clone(), scratch(), PathBuf::from("/dev/zero")] {
        let (send, receive) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = send.send(Slide::open(&p).map(drop).map_err(|e| e.to_string()));
        });
        let result = receive
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{}: Slide::open blocked", path.display()));
        let e = result.expect_err("a special file opened as a slide");
        assert!(
            e.contains(&path.display().to_string()) && e.contains("not a slide file"),
            "{e}"
        );
    }
    std::fs::remove_file(&fifo).unwrap();
}
