//! Builds TIFF, BigTIFF and NDPI-like files field by field, for tests that need files that
//! lie. Every entry's type, count and value (or a raw offset, pointing anywhere) is the
//! caller's, as is every directory's link to the next, so a test can declare what no writer
//! would: wrapping tile sizes, arrays past the end of the file, arrays shared by many
//! directories, directory loops. Little-endian throughout.

/// The container's flavour: classic TIFF, BigTIFF, or NDPI's classic TIFF with 64-bit
/// directory offsets and a high word per entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Classic,
    Big,
    Ndpi,
}

/// TIFF field types.
pub mod ty {
    pub const BYTE: u16 = 1;
    pub const ASCII: u16 = 2;
    pub const SHORT: u16 = 3;
    pub const LONG: u16 = 4;
    pub const RATIONAL: u16 = 5;
    pub const SBYTE: u16 = 6;
    pub const UNDEFINED: u16 = 7;
    pub const SSHORT: u16 = 8;
    pub const SLONG: u16 = 9;
    pub const SRATIONAL: u16 = 10;
    pub const FLOAT: u16 = 11;
    pub const DOUBLE: u16 = 12;
    pub const LONG8: u16 = 16;
}

/// Tags the tests use.
pub mod tag {
    pub const NEW_SUBFILE_TYPE: u16 = 254;
    pub const IMAGE_WIDTH: u16 = 256;
    pub const IMAGE_LENGTH: u16 = 257;
    pub const BITS_PER_SAMPLE: u16 = 258;
    pub const COMPRESSION: u16 = 259;
    pub const PHOTOMETRIC: u16 = 262;
    pub const IMAGE_DESCRIPTION: u16 = 270;
    pub const STRIP_OFFSETS: u16 = 273;
    pub const SAMPLES_PER_PIXEL: u16 = 277;
    pub const ROWS_PER_STRIP: u16 = 278;
    pub const STRIP_BYTE_COUNTS: u16 = 279;
    pub const X_RESOLUTION: u16 = 282;
    pub const Y_RESOLUTION: u16 = 283;
    pub const PLANAR_CONFIG: u16 = 284;
    pub const RESOLUTION_UNIT: u16 = 296;
    pub const SOFTWARE: u16 = 305;
    pub const PREDICTOR: u16 = 317;
    pub const TILE_WIDTH: u16 = 322;
    pub const TILE_LENGTH: u16 = 323;
    pub const TILE_OFFSETS: u16 = 324;
    pub const TILE_BYTE_COUNTS: u16 = 325;
    pub const SUB_IFDS: u16 = 330;
    pub const JPEG_TABLES: u16 = 347;
    pub const NDPI_FORMAT_FLAG: u16 = 65420;
    pub const NDPI_SOURCE_LENS: u16 = 65421;
    pub const NDPI_FOCAL_PLANE: u16 = 65424;
    pub const NDPI_MCU_STARTS: u16 = 65426;
    pub const NDPI_MCU_STARTS_HIGH: u16 = 65432;
}

/// Bytes per value of a field type (unknown types count as one byte, so a test can declare
/// them).
pub fn type_size(field_type: u16) -> u64 {
    match field_type {
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16..=18 => 8,
        _ => 1,
    }
}

/// What an entry holds: bytes to store (inline where they fit, otherwise appended to the
/// file), or an offset to declare whatever lies there.
#[derive(Clone, Debug)]
pub enum Value {
    Bytes(Vec<u8>),
    At(u64),
}

/// One directory entry, as declared.
#[derive(Clone, Debug)]
pub struct Entry {
    pub tag: u16,
    pub field_type: u16,
    pub count: u64,
    pub value: Value,
    /// NDPI only: the high word completing the entry's value or offset to 64 bits.
    pub high: u32,
}

impl Entry {
    /// Raw bytes with a declared type and count (which need not agree with them).
    pub fn raw(tag: u16, field_type: u16, count: u64, bytes: Vec<u8>) -> Entry {
        Entry {
            tag,
            field_type,
            count,
            value: Value::Bytes(bytes),
            high: 0,
        }
    }

    /// `count` values of `field_type` said to lie at `offset`.
    pub fn at(tag: u16, field_type: u16, count: u64, offset: u64) -> Entry {
        Entry {
            tag,
            field_type,
            count,
            value: Value::At(offset),
            high: 0,
        }
    }

    /// Unsigned values, each written in `field_type`'s width (truncated to it).
    pub fn uints(tag: u16, field_type: u16, values: &[u64]) -> Entry {
        let size = type_size(field_type) as usize;
        let bytes = values
            .iter()
            .flat_map(|v| v.to_le_bytes()[..size].to_vec())
            .collect();
        Entry::raw(tag, field_type, values.len() as u64, bytes)
    }

    /// One unsigned value, in the narrowest of SHORT, LONG and LONG8 that holds it.
    pub fn uint(tag: u16, value: u64) -> Entry {
        let field_type = if value <= u16::MAX as u64 {
            ty::SHORT
        } else if value <= u32::MAX as u64 {
            ty::LONG
        } else {
            ty::LONG8
        };
        Entry::uints(tag, field_type, &[value])
    }

    /// A NUL-terminated ASCII string.
    pub fn ascii(tag: u16, text: &[u8]) -> Entry {
        let mut bytes = text.to_vec();
        bytes.push(0);
        Entry::raw(tag, ty::ASCII, bytes.len() as u64, bytes)
    }

    pub fn rational(tag: u16, numerator: u32, denominator: u32) -> Entry {
        let mut bytes = numerator.to_le_bytes().to_vec();
        bytes.extend_from_slice(&denominator.to_le_bytes());
        Entry::raw(tag, ty::RATIONAL, 1, bytes)
    }

    pub fn srational(tag: u16, numerator: i32, denominator: i32) -> Entry {
        let mut bytes = numerator.to_le_bytes().to_vec();
        bytes.extend_from_slice(&denominator.to_le_bytes());
        Entry::raw(tag, ty::SRATIONAL, 1, bytes)
    }

    pub fn float(tag: u16, value: f32) -> Entry {
        Entry::raw(tag, ty::FLOAT, 1, value.to_le_bytes().to_vec())
    }

    /// The same entry with an NDPI high word.
    pub fn with_high(mut self, high: u32) -> Entry {
        self.high = high;
        self
    }
}

/// A file under construction: data blobs first, directories written by `finish`.
pub struct TiffBuilder {
    flavor: Flavor,
    bytes: Vec<u8>,
    dirs: Vec<Vec<Entry>>,
}

impl TiffBuilder {
    pub fn new(flavor: Flavor) -> TiffBuilder {
        let header_len = match flavor {
            Flavor::Classic => 8,
            Flavor::Big | Flavor::Ndpi => 16,
        };
        TiffBuilder {
            flavor,
            bytes: vec![0; header_len],
            dirs: Vec::new(),
        }
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Appends `data` (at an even offset, as TIFF wants) and returns its offset.
    pub fn blob(&mut self, data: &[u8]) -> u64 {
        if self.bytes.len() % 2 == 1 {
            self.bytes.push(0);
        }
        let at = self.bytes.len() as u64;
        self.bytes.extend_from_slice(data);
        at
    }

    /// The offset the next blob will get.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Adds a directory; they are chained in the order added.
    pub fn dir(&mut self, entries: Vec<Entry>) -> usize {
        self.dirs.push(entries);
        self.dirs.len() - 1
    }

    /// The file, each directory linked to the next and the last to none.
    pub fn finish(self) -> Vec<u8> {
        self.finish_linked(
            |i, offsets| offsets.get(i + 1).copied().unwrap_or(0),
            |offsets| offsets.first().copied().unwrap_or(0),
        )
    }

    /// The file, with `next(i, offsets)` the link from directory `i` (`offsets` being every
    /// directory's), and `first(offsets)` the header's link.
    pub fn finish_linked(
        mut self,
        next: impl Fn(usize, &[u64]) -> u64,
        first: impl Fn(&[u64]) -> u64,
    ) -> Vec<u8> {
        let (count_size, entry_size, inline, next_size) = match self.flavor {
            Flavor::Classic => (2, 12, 4, 4),
            Flavor::Big => (8, 20, 8, 8),
            Flavor::Ndpi => (2, 12, 4, 8),
        };
        // Out-of-line values first, so every directory's size and place is known.
        let dirs = std::mem::take(&mut self.dirs);
        let flavor = self.flavor;
        let mut laid_out: Vec<Vec<(Entry, Vec<u8>)>> = Vec::new();
        for mut entries in dirs {
            entries.sort_by_key(|e| e.tag);
            let mut dir = Vec::new();
            for e in entries {
                // NDPI never stores ASCII inline.
                let fits =
                    |b: &[u8]| b.len() <= inline && !(flavor == Flavor::Ndpi && e.field_type == ty::ASCII);
                let field = match &e.value {
                    Value::Bytes(b) if fits(b) => {
                        let mut f = b.clone();
                        f.resize(inline, 0);
                        f
                    }
                    Value::Bytes(b) => {
                        let at = self.blob(b);
                        at.to_le_bytes()[..inline].to_vec()
                    }
                    Value::At(at) => at.to_le_bytes()[..inline].to_vec(),
                };
                dir.push((e, field));
            }
            laid_out.push(dir);
        }
        if self.bytes.len() % 2 == 1 {
            self.bytes.push(0);
        }
        let mut offsets = Vec::new();
        let mut at = self.bytes.len() as u64;
        for dir in &laid_out {
            offsets.push(at);
            let n = dir.len() as u64;
            let highs = if self.flavor == Flavor::Ndpi { 4 * n } else { 0 };
            at += count_size + entry_size * n + next_size + highs;
        }
        for (i, dir) in laid_out.iter().enumerate() {
            let n = dir.len() as u64;
            self.bytes
                .extend_from_slice(&n.to_le_bytes()[..count_size as usize]);
            for (e, field) in dir {
                self.bytes.extend_from_slice(&e.tag.to_le_bytes());
                self.bytes.extend_from_slice(&e.field_type.to_le_bytes());
                let count_width = if self.flavor == Flavor::Big { 8 } else { 4 };
                self.bytes
                    .extend_from_slice(&e.count.to_le_bytes()[..count_width]);
                self.bytes.extend_from_slice(field);
            }
            let link = next(i, &offsets);
            self.bytes
                .extend_from_slice(&link.to_le_bytes()[..next_size as usize]);
            if self.flavor == Flavor::Ndpi {
                for (e, _) in dir {
                    self.bytes.extend_from_slice(&e.high.to_le_bytes());
                }
            }
        }
        let first = first(&offsets);
        match self.flavor {
            Flavor::Classic => {
                self.bytes[..4].copy_from_slice(b"II*\0");
                self.bytes[4..8].copy_from_slice(&(first as u32).to_le_bytes());
            }
            Flavor::Big => {
                self.bytes[..8].copy_from_slice(&[b'I', b'I', 43, 0, 8, 0, 0, 0]);
                self.bytes[8..16].copy_from_slice(&first.to_le_bytes());
            }
            Flavor::Ndpi => {
                self.bytes[..4].copy_from_slice(b"II*\0");
                self.bytes[4..12].copy_from_slice(&first.to_le_bytes());
            }
        }
        self.bytes
    }
}
