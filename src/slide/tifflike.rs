//! Defensive TIFF container parsing: classic TIFF, BigTIFF and Hamamatsu NDPI.
//!
//! Only the directory structure is read here (tags and their values); pixel data is read
//! by the images. Every count and offset declared in the file is checked against the file's
//! length before anything is allocated for it, directory chains are walked with cycle
//! detection, and what all directories declare together (entry tables and the values stored
//! out of line) must fit in the file: distinct directories and arrays take distinct bytes, so
//! a small file cannot make many directories share one large array and multiply it.
//!
//! NDPI is classic TIFF stretched past 4 GiB: its first-directory and next-directory offsets
//! are 8 bytes, and after each directory's entries and next offset comes one 32-bit high word
//! per entry, completing that entry's value or offset to 64 bits (an inline LONG becomes a
//! LONG8). Arrays stored out of line keep 32-bit elements; NDPI's own tags carry their high
//! words (McuStarts 65426 has 65432).

use super::error::{corrupt, Result};
use super::io::SlideFile;
use std::collections::BTreeMap;

pub(crate) mod tag {
    pub const NEW_SUBFILE_TYPE: u16 = 254;
    pub const IMAGE_WIDTH: u16 = 256;
    pub const IMAGE_LENGTH: u16 = 257;
    pub const BITS_PER_SAMPLE: u16 = 258;
    pub const COMPRESSION: u16 = 259;
    pub const PHOTOMETRIC: u16 = 262;
    pub const DOCUMENT_NAME: u16 = 269;
    pub const IMAGE_DESCRIPTION: u16 = 270;
    pub const MAKE: u16 = 271;
    pub const MODEL: u16 = 272;
    pub const STRIP_OFFSETS: u16 = 273;
    pub const SAMPLES_PER_PIXEL: u16 = 277;
    pub const ROWS_PER_STRIP: u16 = 278;
    pub const STRIP_BYTE_COUNTS: u16 = 279;
    pub const X_RESOLUTION: u16 = 282;
    pub const Y_RESOLUTION: u16 = 283;
    pub const PLANAR_CONFIG: u16 = 284;
    pub const X_POSITION: u16 = 286;
    pub const Y_POSITION: u16 = 287;
    pub const RESOLUTION_UNIT: u16 = 296;
    pub const SOFTWARE: u16 = 305;
    pub const DATE_TIME: u16 = 306;
    pub const ARTIST: u16 = 315;
    pub const HOST_COMPUTER: u16 = 316;
    pub const PREDICTOR: u16 = 317;
    pub const TILE_WIDTH: u16 = 322;
    pub const TILE_LENGTH: u16 = 323;
    pub const TILE_OFFSETS: u16 = 324;
    pub const TILE_BYTE_COUNTS: u16 = 325;
    pub const SUB_IFDS: u16 = 330;
    pub const SAMPLE_FORMAT: u16 = 339;
    pub const JPEG_TABLES: u16 = 347;
    pub const XMP: u16 = 700;
    pub const COPYRIGHT: u16 = 33432;
    pub const ICC_PROFILE: u16 = 34675;
    pub const IMAGE_DEPTH: u16 = 32997;
}

/// TIFF field types, with their sizes in bytes.
fn type_size(field_type: u16) -> Option<u64> {
    Some(match field_type {
        1 | 2 | 6 | 7 => 1,   // BYTE ASCII SBYTE UNDEFINED
        3 | 8 => 2,           // SHORT SSHORT
        4 | 9 | 11 | 13 => 4, // LONG SLONG FLOAT IFD
        5 | 10 | 12 => 8,     // RATIONAL SRATIONAL DOUBLE
        16..=18 => 8,         // LONG8 SLONG8 IFD8
        _ => return None,
    })
}

/// Directory bytes (entry tables and out-of-line values) a file may declare in all, beyond
/// which it is refused, however large the file.
const MAX_DIRECTORY_BYTES: u64 = 256 << 20;
/// Directory bytes allowed beyond the file's length: room for small values a writer might
/// share between directories (BitsPerSample, resolutions).
const SHARED_SLACK_BYTES: u64 = 64 << 10;
/// Directories in one file, beyond which it is refused (real slides have tens).
const MAX_DIRECTORIES: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    Classic,
    Big,
    Ndpi,
}

/// One tag's value: its type and raw bytes (in the file's byte order).
#[derive(Clone, Debug)]
pub(crate) struct Field {
    pub field_type: u16,
    pub bytes: Vec<u8>,
}

/// One image file directory.
#[derive(Clone, Debug)]
pub(crate) struct Directory {
    pub offset: u64,
    fields: BTreeMap<u16, Field>,
    big_endian: bool,
    /// The directories its SubIFDs tag lists (OME-TIFF keeps a page's reduced resolutions
    /// there), in the tag's order; their own SubIFDs are not followed.
    pub sub_directories: Vec<Directory>,
}

/// A parsed TIFF-like file: its flavour and directories in file order.
pub(crate) struct TiffFile {
    pub flavor: Flavor,
    pub directories: Vec<Directory>,
}

/// True when the first bytes look like a TIFF or BigTIFF header.
pub(crate) fn is_tiff_header(head: &[u8]) -> bool {
    head.len() >= 4 && matches!(&head[..4], b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+")
}

/// NDPI files mark themselves with this private tag in every directory.
pub(crate) const NDPI_FORMAT_FLAG: u16 = 65420;

struct Endian(bool);
impl Endian {
    fn u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.0 {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }
    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.0 {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
    fn u64(&self, b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        if self.0 {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        }
    }
}

impl TiffFile {
    pub fn parse(file: &SlideFile) -> Result<TiffFile> {
        let head = file.read_up_to(0, 16)?;
        if !is_tiff_header(&head) || head.len() < 8 {
            return Err(corrupt("not a TIFF file"));
        }
        let e = Endian(head[0] == b'M');
        let version = e.u16(&head[2..4]);
        let limit = file
            .len()
            .saturating_add(SHARED_SLACK_BYTES)
            .min(MAX_DIRECTORY_BYTES);
        let mut budget = Budget { used: 0, limit };
        let (flavor, first) = if version == 43 {
            if head.len() < 16 || e.u16(&head[4..6]) != 8 {
                return Err(corrupt("BigTIFF header with an unsupported offset size"));
            }
            (Flavor::Big, e.u64(&head[8..16]))
        } else {
            // NDPI keeps a 64-bit first-directory offset where classic TIFF has 32 bits (the
            // next 4 bytes are image data there): try it as NDPI first, as OpenSlide does.
            let wide = if head.len() >= 12 { e.u64(&head[4..12]) } else { 0 };
            let is_ndpi = wide != 0
                && read_directory(file, &e, Flavor::Ndpi, wide, &mut budget)
                    .map(|(d, _)| d.has(NDPI_FORMAT_FLAG))
                    .unwrap_or(false);
            budget.used = 0;
            if is_ndpi {
                (Flavor::Ndpi, wide)
            } else {
                (Flavor::Classic, e.u32(&head[4..8]) as u64)
            }
        };

        let mut directories = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut next = first;
        while next != 0 {
            if !seen.insert(next) {
                return Err(corrupt(format!("directory chain loops back to offset {next}")));
            }
            if seen.len() > MAX_DIRECTORIES {
                return Err(corrupt(format!("more than {MAX_DIRECTORIES} directories")));
            }
            let (mut dir, following) = read_directory(file, &e, flavor, next, &mut budget)?;
            for offset in dir.uints(tag::SUB_IFDS)?.unwrap_or_default() {
                if !seen.insert(offset) {
                    return Err(corrupt(format!(
                        "SubIFD at offset {offset} is also another directory"
                    )));
                }
                if seen.len() > MAX_DIRECTORIES {
                    return Err(corrupt(format!("more than {MAX_DIRECTORIES} directories")));
                }
                let (sub, _) = read_directory(file, &e, flavor, offset, &mut budget)?;
                dir.sub_directories.push(sub);
            }
            directories.push(dir);
            next = following;
        }
        if directories.is_empty() {
            return Err(corrupt("TIFF has no image directory"));
        }
        Ok(TiffFile { flavor, directories })
    }
}

/// Directory bytes declared so far, and how many the file allows.
struct Budget {
    used: u64,
    limit: u64,
}

impl Budget {
    /// Counts `bytes` more declared bytes, refusing them past the limit (before they are read).
    fn spend(&mut self, bytes: u64) -> Result<()> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(corrupt(format!(
                "directories declare more than {} bytes of entries and values, more than the file holds",
                self.limit
            )));
        }
        Ok(())
    }
}

fn read_directory(
    file: &SlideFile,
    e: &Endian,
    flavor: Flavor,
    offset: u64,
    budget: &mut Budget,
) -> Result<(Directory, u64)> {
    let (count_size, entry_size, inline_size, next_size) = match flavor {
        Flavor::Classic => (2u64, 12u64, 4u64, 4u64),
        Flavor::Ndpi => (2, 12, 4, 8),
        Flavor::Big => (8, 20, 8, 8),
    };
    let count_bytes = file.read_at(offset, count_size, "directory entry count")?;
    let count = if count_size == 2 {
        e.u16(&count_bytes) as u64
    } else {
        e.u64(&count_bytes)
    };
    let high_words = if flavor == Flavor::Ndpi { count * 4 } else { 0 };
    let table_len = count
        .checked_mul(entry_size)
        .and_then(|n| n.checked_add(next_size + high_words))
        .ok_or_else(|| corrupt("directory entry count overflows"))?;
    budget.spend(count_size + table_len)?;
    let table = file.read_at(offset + count_size, table_len, "directory entries")?;
    let entries_end = (count * entry_size) as usize;
    let next_field = &table[entries_end..entries_end + next_size as usize];
    let next = if next_size == 8 {
        e.u64(next_field)
    } else {
        e.u32(next_field) as u64
    };
    let highs = &table[entries_end + next_size as usize..];

    let mut fields = BTreeMap::new();
    for i in 0..count as usize {
        let entry = &table[i * entry_size as usize..(i + 1) * entry_size as usize];
        let tag = e.u16(&entry[0..2]);
        let mut field_type = e.u16(&entry[2..4]);
        let (n, mut value_field) = if flavor == Flavor::Big {
            (e.u64(&entry[4..12]), entry[12..20].to_vec())
        } else {
            (e.u32(&entry[4..8]) as u64, entry[8..12].to_vec())
        };
        let Some(size) = type_size(field_type) else {
            return Err(corrupt(format!("tag {tag} has unknown field type {field_type}")));
        };
        let total = n
            .checked_mul(size)
            .ok_or_else(|| corrupt(format!("tag {tag}: value count {n} overflows")))?;
        let mut inline = total <= inline_size;
        if flavor == Flavor::Ndpi {
            let high = e.u32(&highs[i * 4..i * 4 + 4]);
            inline &= field_type != 2; // NDPI never stores ASCII inline
            if inline && high != 0 {
                // A 32-bit value completed to 64 bits (e.g. a StripOffsets past 4 GiB).
                field_type = match field_type {
                    4 if n == 1 => 16,
                    9 if n == 1 => 17,
                    _ => return Err(corrupt(format!("tag {tag}: unexpected NDPI high word"))),
                };
                let low = e.u32(&value_field) as u64;
                let full = low | (high as u64) << 32;
                value_field = if e.0 {
                    full.to_be_bytes()
                } else {
                    full.to_le_bytes()
                }
                .to_vec();
                fields.insert(
                    tag,
                    Field {
                        field_type,
                        bytes: value_field,
                    },
                );
                continue;
            }
            if !inline {
                let low = e.u32(&value_field) as u64;
                let full = low | (high as u64) << 32;
                value_field = if e.0 {
                    full.to_be_bytes()
                } else {
                    full.to_le_bytes()
                }
                .to_vec();
            }
        }
        let bytes = if inline {
            value_field[..total as usize].to_vec()
        } else {
            let at = if value_field.len() == 8 {
                e.u64(&value_field)
            } else {
                e.u32(&value_field) as u64
            };
            budget.spend(total)?;
            file.read_at(at, total, &format!("value of tag {tag}"))?
        };
        if n > 0 {
            // A tag with no values is as good as absent (as in OpenSlide).
            fields.insert(tag, Field { field_type, bytes });
        }
    }
    Ok((
        Directory {
            offset,
            fields,
            big_endian: e.0,
            sub_directories: Vec::new(),
        },
        next,
    ))
}

impl Directory {
    pub fn has(&self, tag: u16) -> bool {
        self.fields.contains_key(&tag)
    }

    fn endian(&self) -> Endian {
        Endian(self.big_endian)
    }

    /// All values of an integer-typed tag, widened to u64.
    pub fn uints(&self, tag: u16) -> Result<Option<Vec<u64>>> {
        let Some(f) = self.fields.get(&tag) else {
            return Ok(None);
        };
        let e = self.endian();
        let b = &f.bytes;
        let values = match f.field_type {
            1 | 7 => b.iter().map(|&v| v as u64).collect(),
            3 => b.chunks_exact(2).map(|c| e.u16(c) as u64).collect(),
            4 | 13 => b.chunks_exact(4).map(|c| e.u32(c) as u64).collect(),
            16 | 18 => b.chunks_exact(8).map(|c| e.u64(c)).collect(),
            t => {
                return Err(corrupt(format!(
                    "tag {tag} has type {t}, expected an unsigned integer"
                )))
            }
        };
        Ok(Some(values))
    }

    /// The single value of an integer-typed tag.
    pub fn uint(&self, tag: u16) -> Result<Option<u64>> {
        Ok(self.uints(tag)?.and_then(|v| v.first().copied()))
    }

    /// A required integer tag.
    pub fn require_uint(&self, tag: u16, name: &str) -> Result<u64> {
        self.uint(tag)?
            .ok_or_else(|| corrupt(format!("directory at offset {} lacks {name}", self.offset)))
    }

    /// A signed integer tag (NDPI stores magnifications and offsets as SLONG or FLOAT).
    pub fn number(&self, tag: u16) -> Option<f64> {
        let f = self.fields.get(&tag)?;
        let e = self.endian();
        let b = &f.bytes;
        Some(match f.field_type {
            1 | 7 => *b.first()? as f64,
            6 => *b.first()? as i8 as f64,
            3 => e.u16(b.get(..2)?) as f64,
            8 => e.u16(b.get(..2)?) as i16 as f64,
            4 | 13 => e.u32(b.get(..4)?) as f64,
            9 => e.u32(b.get(..4)?) as i32 as f64,
            11 => f32::from_bits(e.u32(b.get(..4)?)) as f64,
            12 => f64::from_bits(e.u64(b.get(..8)?)),
            16 | 18 => e.u64(b.get(..8)?) as f64,
            17 => e.u64(b.get(..8)?) as i64 as f64,
            5 => {
                let (n, d) = (e.u32(b.get(..4)?), e.u32(b.get(4..8)?));
                if d == 0 {
                    return None;
                }
                n as f64 / d as f64
            }
            10 => {
                let (n, d) = (e.u32(b.get(..4)?) as i32, e.u32(b.get(4..8)?) as i32);
                if d == 0 {
                    return None;
                }
                n as f64 / d as f64
            }
            _ => return None,
        })
    }

    /// An ASCII tag as text, up to its first NUL (invalid UTF-8 replaced).
    pub fn string(&self, tag: u16) -> Option<String> {
        let f = self.fields.get(&tag)?;
        if f.field_type != 2 && f.field_type != 1 && f.field_type != 7 {
            return None;
        }
        let end = f.bytes.iter().position(|&b| b == 0).unwrap_or(f.bytes.len());
        Some(String::from_utf8_lossy(&f.bytes[..end]).into_owned())
    }

    /// A tag's raw bytes (JPEGTables, ICC profile).
    pub fn bytes(&self, tag: u16) -> Option<&[u8]> {
        self.fields.get(&tag).map(|f| f.bytes.as_slice())
    }

    pub fn width(&self) -> Result<u64> {
        self.require_uint(tag::IMAGE_WIDTH, "ImageWidth")
    }

    pub fn height(&self) -> Result<u64> {
        self.require_uint(tag::IMAGE_LENGTH, "ImageLength")
    }

    pub fn is_tiled(&self) -> bool {
        self.has(tag::TILE_WIDTH) && self.has(tag::TILE_OFFSETS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Our directory parsing agrees with the `tiff` crate's on every directory of the real
    /// classic and BigTIFF slides (sizes, tile/strip offsets and byte counts, compression).
    #[test]
    fn directories_agree_with_the_tiff_crate() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/slides");
        if !root.is_dir() {
            eprintln!("SKIPPED directories_agree_with_the_tiff_crate: ../shared/slides is absent");
            return;
        }
        let files = [
            "aperio/CMU-1-Small-Region.svs",
            "generic-tiff/boxes.tiff",
            "generic-tiff/small_HE_levels.tiff",
            "generic-tiff/yb10kx5k.zstd.tiff",
            "generic-tiff/test_orient1.tif",
        ];
        for f in files {
            let path = root.join(f);
            let ours = TiffFile::parse(&SlideFile::open(&path).unwrap()).unwrap();
            let mut theirs = tiff::decoder::Decoder::new(std::fs::File::open(&path).unwrap()).unwrap();
            for (i, dir) in ours.directories.iter().enumerate() {
                if i > 0 {
                    theirs.next_image().unwrap();
                }
                let (w, h) = theirs.dimensions().unwrap();
                assert_eq!(
                    (dir.width().unwrap(), dir.height().unwrap()),
                    (w as u64, h as u64),
                    "{f} #{i}"
                );
                for t in [
                    tiff::tags::Tag::TileOffsets,
                    tiff::tags::Tag::TileByteCounts,
                    tiff::tags::Tag::StripOffsets,
                    tiff::tags::Tag::StripByteCounts,
                    tiff::tags::Tag::Compression,
                ] {
                    let want = theirs.find_tag_unsigned_vec::<u64>(t).unwrap();
                    assert_eq!(dir.uints(t.to_u16()).unwrap(), want, "{f} #{i} {t:?}");
                }
            }
            assert!(!theirs.more_images(), "{f}: the tiff crate sees more directories");
        }
    }
}
