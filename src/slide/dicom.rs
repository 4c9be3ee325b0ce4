//! DICOM Part 10 files as whole-slide images use them: the file meta group, then the data
//! set (explicit or implicit VR little endian) read element by element up to the pixel
//! data, sequences nested; large binary values left in the file (offset and length, never
//! read); the pixel data located, as native frames or encapsulated fragments (their offsets
//! found by walking the item headers). Every length is checked against what is left of the
//! file before anything is allocated or skipped, nesting is bounded, and a length that
//! would go backwards or loop is refused.

use super::error::{corrupt, unsupported, Result};
use super::io::SlideFile;
use dicom_core::dictionary::{DataDictionary, VirtualVr};
use dicom_dictionary_std::StandardDataDictionary;
use std::sync::Arc;

/// A tag as one number: group in the high 16 bits, element in the low.
pub(crate) type Tag = u32;

pub(crate) mod tags {
    use super::Tag;
    pub const TRANSFER_SYNTAX: Tag = 0x0002_0010;
    pub const IMAGE_TYPE: Tag = 0x0008_0008;
    pub const SOP_CLASS: Tag = 0x0008_0016;
    pub const SERIES_UID: Tag = 0x0020_000E;
    pub const CONCATENATION_FRAME_OFFSET: Tag = 0x0020_9228;
    pub const DIMENSION_ORGANIZATION_TYPE: Tag = 0x0020_9311;
    pub const SAMPLES_PER_PIXEL: Tag = 0x0028_0002;
    pub const PHOTOMETRIC: Tag = 0x0028_0004;
    pub const PLANAR_CONFIGURATION: Tag = 0x0028_0006;
    pub const NUMBER_OF_FRAMES: Tag = 0x0028_0008;
    pub const ROWS: Tag = 0x0028_0010;
    pub const COLUMNS: Tag = 0x0028_0011;
    pub const BITS_ALLOCATED: Tag = 0x0028_0100;
    pub const TOTAL_COLUMNS: Tag = 0x0048_0006;
    pub const TOTAL_ROWS: Tag = 0x0048_0007;
    pub const OPTICAL_PATHS: Tag = 0x0048_0105;
    pub const PLANE_POSITION_SLIDE: Tag = 0x0048_021A;
    pub const COLUMN_POSITION: Tag = 0x0048_021E;
    pub const ROW_POSITION: Tag = 0x0048_021F;
    pub const ICC_PROFILE: Tag = 0x0028_2000;
    pub const PER_FRAME_GROUPS: Tag = 0x5200_9230;
    pub const EXTENDED_OFFSET_TABLE: Tag = 0x7FE0_0001;
    pub const PIXEL_DATA: Tag = 0x7FE0_0010;
    pub const ITEM: Tag = 0xFFFE_E000;
    pub const ITEM_END: Tag = 0xFFFE_E00D;
    pub const SEQUENCE_END: Tag = 0xFFFE_E0DD;
}

/// Sequences nested deeper than this are refused (the WSI IOD nests four deep).
const MAX_DEPTH: usize = 16;
/// Values longer than this stay in the file (an ICC profile, a lookup table).
const MAX_INLINE: u64 = 1 << 20;
const UNDEFINED: u32 = u32::MAX;

/// A two-letter value representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Vr(pub [u8; 2]);

impl Vr {
    const SQ: Vr = Vr(*b"SQ");
    const UN: Vr = Vr(*b"UN");

    /// Explicit VRs whose length is 32-bit (after two reserved bytes).
    fn has_long_length(self) -> bool {
        matches!(
            &self.0,
            b"OB"
                | b"OD"
                | b"OF"
                | b"OL"
                | b"OV"
                | b"OW"
                | b"SQ"
                | b"SV"
                | b"UC"
                | b"UN"
                | b"UR"
                | b"UT"
                | b"UV"
        )
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

#[derive(Debug)]
pub(crate) struct Element {
    pub tag: Tag,
    pub vr: Vr,
    pub value: Value,
}

#[derive(Debug)]
pub(crate) enum Value {
    Bytes(Vec<u8>),
    Items(Vec<Vec<Element>>),
    /// A value too large to hold, left in the file.
    InFile {
        len: u64,
    },
}

/// Where a file's frames are.
#[derive(Debug)]
pub(crate) enum PixelData {
    /// Uncompressed frames, one after the other from `offset`.
    Native { offset: u64, len: u64 },
    /// Compressed frames: each fragment's (offset, length), and the basic offset table.
    Encapsulated {
        fragments: Vec<(u64, u64)>,
        offset_table: Vec<u64>,
    },
}

/// One DICOM file's header and where its pixels are.
pub(crate) struct DicomFile {
    pub file: Arc<SlideFile>,
    pub transfer_syntax: String,
    /// The file meta group (0002,xxxx), then the data set, in file order.
    pub elements: Vec<Element>,
    pub pixels: Option<PixelData>,
}

/// Whether a file's first bytes are a Part 10 header ("DICM" after the 128-byte preamble).
pub(crate) fn is_dicom_header(head: &[u8]) -> bool {
    head.len() >= 132 && &head[128..132] == b"DICM"
}

const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

impl DicomFile {
    /// Parses the whole header and locates the pixel data.
    pub fn parse(file: Arc<SlideFile>) -> Result<DicomFile> {
        Self::parse_until(file, None)
    }

    /// Parses the header up to (not including) the first top-level element at or past
    /// `stop` (all of it with `None`), and locates the pixel data only when reached.
    pub fn parse_until(file: Arc<SlideFile>, stop: Option<Tag>) -> Result<DicomFile> {
        let head = file.read_up_to(0, 132)?;
        if !is_dicom_header(&head) {
            return Err(corrupt("no DICM signature after the 128-byte preamble"));
        }
        let mut reader = Reader::new(&file, 132, true);
        let mut elements = reader.elements(0, None, Some(0x0003_0000), None)?;
        let transfer_syntax = find(&elements, tags::TRANSFER_SYNTAX)
            .and_then(Element::string)
            .ok_or_else(|| corrupt("the file meta group has no TransferSyntaxUID"))?;
        reader.explicit = match transfer_syntax.as_str() {
            IMPLICIT_LE => false,
            "1.2.840.10008.1.2.2" => return Err(unsupported("big-endian DICOM (a retired transfer syntax)")),
            "1.2.840.10008.1.2.1.99" => return Err(unsupported("deflated DICOM data sets")),
            _ => true,
        };
        let stop = stop.unwrap_or(tags::PIXEL_DATA).min(tags::PIXEL_DATA);
        elements.extend(reader.elements(0, None, Some(stop), None)?);
        let pixels = match reader.peek_tag()? {
            Some(tags::PIXEL_DATA) => Some(reader.pixel_data()?),
            _ => None,
        };
        Ok(DicomFile {
            file,
            transfer_syntax,
            elements,
            pixels,
        })
    }

    pub fn get(&self, tag: Tag) -> Option<&Element> {
        find(&self.elements, tag)
    }

    pub fn string(&self, tag: Tag) -> Option<String> {
        self.get(tag).and_then(Element::string)
    }

    pub fn uint(&self, tag: Tag) -> Option<u64> {
        self.get(tag).and_then(Element::uint)
    }

    /// The transfer syntax's frames are stored uncompressed.
    pub fn is_native(&self) -> bool {
        matches!(self.transfer_syntax.as_str(), IMPLICIT_LE | EXPLICIT_LE)
    }
}

/// The first element with `tag` among `elements`.
pub(crate) fn find(elements: &[Element], tag: Tag) -> Option<&Element> {
    elements.iter().find(|e| e.tag == tag)
}

/// The element at `path` (sequence tags, each through its first item, then the last tag).
pub(crate) fn find_path<'a>(elements: &'a [Element], path: &[Tag]) -> Option<&'a Element> {
    let (last, seqs) = path.split_last()?;
    let mut here = elements;
    for &tag in seqs {
        here = find(here, tag)?.items()?.first()?;
    }
    find(here, *last)
}

impl Element {
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.value {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn items(&self) -> Option<&[Vec<Element>]> {
        match &self.value {
            Value::Items(items) => Some(items),
            _ => None,
        }
    }

    /// The value as text, padding (trailing spaces and NULs) and surrounding spaces trimmed;
    /// a multi-valued one still holds its backslashes.
    pub fn string(&self) -> Option<String> {
        let b = self.bytes()?;
        Some(
            String::from_utf8_lossy(b)
                .trim_end_matches(['\0', ' '])
                .trim_start()
                .to_string(),
        )
    }

    /// Its values as text, split at backslashes where the VR allows several.
    pub fn strings(&self) -> Option<Vec<String>> {
        let s = self.string()?;
        Some(match &self.vr.0 {
            b"LT" | b"ST" | b"UT" | b"UR" => vec![s],
            _ => s.split('\\').map(|v| v.trim().to_string()).collect(),
        })
    }

    /// The first value as an unsigned integer: binary (US, UL, UV, and signed ones that are
    /// not negative) or text (IS).
    pub fn uint(&self) -> Option<u64> {
        self.numbers()?
            .first()
            .and_then(|&v| (v >= 0.0 && v.fract() == 0.0).then_some(v as u64))
    }

    /// Every value of a binary integer VR, exactly.
    pub fn integers(&self) -> Option<Vec<i128>> {
        let b = self.bytes()?;
        let take = |n: usize| b.chunks_exact(n);
        Some(match &self.vr.0 {
            b"US" => take(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as i128)
                .collect(),
            b"SS" => take(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i128)
                .collect(),
            b"UL" => take(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i128)
                .collect(),
            b"SL" => take(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i128)
                .collect(),
            b"UV" => take(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()) as i128)
                .collect(),
            b"SV" => take(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as i128)
                .collect(),
            _ => return None,
        })
    }

    /// Every value as a number: binary integers and floats, or DS/IS text.
    pub fn numbers(&self) -> Option<Vec<f64>> {
        let b = self.bytes()?;
        let take = |n: usize| b.chunks_exact(n);
        if let Some(ints) = self.integers() {
            return Some(ints.into_iter().map(|v| v as f64).collect());
        }
        Some(match &self.vr.0 {
            b"FL" => take(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            b"FD" => take(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            b"DS" | b"IS" => self
                .strings()?
                .iter()
                .map(|s| s.parse().ok())
                .collect::<Option<_>>()?,
            _ => return None,
        })
    }
}

/// A buffered cursor over the file.
struct Reader<'a> {
    file: &'a SlideFile,
    pos: u64,
    explicit: bool,
    buf: Vec<u8>,
    buf_start: u64,
}

const CHUNK: u64 = 64 << 10;

impl<'a> Reader<'a> {
    fn new(file: &'a SlideFile, pos: u64, explicit: bool) -> Self {
        Reader {
            file,
            pos,
            explicit,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// `n` bytes at the cursor (at most [`MAX_INLINE`]), checked against the file first.
    fn take(&mut self, n: u64, what: &str) -> Result<Vec<u8>> {
        if n > CHUNK {
            self.file.check_range(self.pos, n, what)?;
            let v = self.file.read_at(self.pos, n, what)?;
            self.pos += n;
            return Ok(v);
        }
        Ok(self.slice(n, what)?.to_vec())
    }

    /// `n` bytes (at most [`CHUNK`]) at the cursor, from the buffer, refilled as needed.
    fn slice(&mut self, n: u64, what: &str) -> Result<&[u8]> {
        self.file.check_range(self.pos, n, what)?;
        let end = self.pos + n;
        if self.pos < self.buf_start || end > self.buf_start + self.buf.len() as u64 {
            self.buf = self.file.read_up_to(self.pos, CHUNK)?;
            self.buf_start = self.pos;
        }
        let at = (self.pos - self.buf_start) as usize;
        self.pos = end;
        Ok(&self.buf[at..at + n as usize])
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        self.file.check_range(self.pos, n, what)?;
        self.pos += n;
        Ok(())
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.slice(2, "element header")?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.slice(4, "element header")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn tag(&mut self) -> Result<Tag> {
        let group = self.u16()? as u32;
        Ok(group << 16 | self.u16()? as u32)
    }

    /// The next tag, or None at the end of the file.
    fn peek_tag(&mut self) -> Result<Option<Tag>> {
        if self.pos + 4 > self.file.len() {
            return Ok(None);
        }
        let at = self.pos;
        let tag = self.tag()?;
        self.pos = at;
        Ok(Some(tag))
    }

    /// Elements until `end` (a defined length's end), an item delimiter (undefined length:
    /// `end` None inside an item), the end of the file, or a top-level tag at or past `stop`.
    /// `keep`: the one tag kept at this level (a per-frame item's), else every standard one.
    fn elements(
        &mut self,
        depth: usize,
        end: Option<u64>,
        stop: Option<Tag>,
        keep: Option<Tag>,
    ) -> Result<Vec<Element>> {
        if depth > MAX_DEPTH {
            return Err(corrupt(format!("sequences nested more than {MAX_DEPTH} deep")));
        }
        let mut out = Vec::new();
        loop {
            if end.is_some_and(|e| self.pos >= e) {
                if end.is_some_and(|e| self.pos > e) {
                    return Err(corrupt("an element runs past the end of its item"));
                }
                return Ok(out);
            }
            let Some(tag) = self.peek_tag()? else {
                if depth > 0 {
                    return Err(corrupt("the file ends inside a sequence"));
                }
                return Ok(out);
            };
            if depth == 0 && stop.is_some_and(|s| tag >= s) {
                return Ok(out);
            }
            if tag == tags::ITEM_END {
                if end.is_some() || depth == 0 {
                    return Err(corrupt("an item delimiter outside an item of undefined length"));
                }
                self.tag()?;
                self.u32()?;
                return Ok(out);
            }
            // The meta group is always explicit VR; it ends where group 2 does.
            let explicit = self.explicit || tag >> 16 == 2;
            let element = self.element(depth, explicit)?;
            // Only standard elements are kept (private and unknown ones are of no use here,
            // and a header of millions of them must not cost their memory); in a per-frame
            // item only the frame's position.
            let kept = match keep {
                Some(only) => element.tag == only,
                None => keyword(element.tag).is_some() || element.tag == tags::PIXEL_DATA,
            };
            if kept {
                out.push(element);
            }
        }
    }

    fn element(&mut self, depth: usize, explicit: bool) -> Result<Element> {
        let tag = self.tag()?;
        let (vr, len) = if explicit {
            let b = self.slice(2, "element header")?;
            let vr = Vr([b[0], b[1]]);
            if !vr.0.iter().all(u8::is_ascii_uppercase) {
                return Err(corrupt(format!(
                    "element {}: VR {:?} is not two letters",
                    show(tag),
                    b
                )));
            }
            let len = if vr.has_long_length() {
                self.skip(2, "element header")?;
                self.u32()?
            } else {
                self.u16()? as u32
            };
            (vr, len)
        } else {
            let len = self.u32()?;
            (dictionary_vr(tag, len), len)
        };
        let value = if vr == Vr::SQ || (vr == Vr::UN && len == UNDEFINED) {
            // Of the per-frame groups (one item a frame), only each frame's position is kept.
            let keep = (tag == tags::PER_FRAME_GROUPS).then_some(tags::PLANE_POSITION_SLIDE);
            Value::Items(self.items(depth + 1, len, keep)?)
        } else if len == UNDEFINED {
            return Err(corrupt(format!(
                "element {} ({}) has an undefined length",
                show(tag),
                vr.as_str()
            )));
        } else if len as u64 > MAX_INLINE {
            self.skip(len as u64, "element value")?;
            Value::InFile { len: len as u64 }
        } else {
            Value::Bytes(self.take(len as u64, "element value")?)
        };
        Ok(Element { tag, vr, value })
    }

    /// Where a value of `len` bytes from the cursor ends (None for an undefined length),
    /// checked against the file.
    fn end_of(&self, len: u32, what: &str) -> Result<Option<u64>> {
        if len == UNDEFINED {
            return Ok(None);
        }
        self.file.check_range(self.pos, len as u64, what)?;
        Ok(Some(self.pos + len as u64))
    }

    /// A sequence's items: of defined length (`len` bytes) or to a sequence delimiter.
    fn items(&mut self, depth: usize, len: u32, keep: Option<Tag>) -> Result<Vec<Vec<Element>>> {
        let end = self.end_of(len, "sequence")?;
        let mut items = Vec::new();
        loop {
            if let Some(e) = end {
                if self.pos == e {
                    return Ok(items);
                }
            }
            let tag = self.tag()?;
            let item_len = self.u32()?;
            match tag {
                tags::SEQUENCE_END if end.is_none() => return Ok(items),
                tags::ITEM => {
                    let item_end = self.end_of(item_len, "sequence item")?;
                    if let (Some(ie), Some(e)) = (item_end, end) {
                        if ie > e {
                            return Err(corrupt("a sequence item runs past the end of its sequence"));
                        }
                    }
                    items.push(self.elements(depth, item_end, None, keep)?);
                }
                t => return Err(corrupt(format!("{} where a sequence item is expected", show(t)))),
            }
            if end.is_some_and(|e| self.pos > e) {
                return Err(corrupt("a sequence's items run past its length"));
            }
        }
    }

    /// The pixel data element at the cursor.
    fn pixel_data(&mut self) -> Result<PixelData> {
        let _ = self.tag()?;
        let len = if self.explicit {
            self.skip(2, "pixel data header")?;
            let b = self.take(2, "pixel data header")?;
            if b != [0, 0] {
                // A short-length VR (none is right for pixel data): the 16 bits were its length.
                return Err(corrupt("pixel data with a 16-bit length"));
            }
            self.u32()?
        } else {
            self.u32()?
        };
        if len != UNDEFINED {
            // Under a compressed syntax this is refused by the image, once it knows whether
            // that syntax is one it reads.
            self.file.check_range(self.pos, len as u64, "pixel data")?;
            return Ok(PixelData::Native {
                offset: self.pos,
                len: len as u64,
            });
        }
        // Encapsulated: the basic offset table item, then one item per fragment, then the
        // sequence delimiter. Each item header is 8 bytes, so a file has fewer fragments
        // than it has bytes / 8: the walk ends.
        let mut offset_table = Vec::new();
        let mut fragments = Vec::new();
        let mut first = true;
        loop {
            let tag = self.tag()?;
            let len = self.u32()? as u64;
            match tag {
                tags::SEQUENCE_END => break,
                tags::ITEM if len == UNDEFINED as u64 => {
                    return Err(corrupt("a pixel data fragment of undefined length"))
                }
                tags::ITEM if first => {
                    if len % 4 != 0 {
                        return Err(corrupt(format!(
                            "basic offset table of {len} bytes, not whole 32-bit offsets"
                        )));
                    }
                    let table = self.take(len, "basic offset table")?;
                    offset_table = table
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as u64)
                        .collect();
                }
                tags::ITEM => {
                    self.file.check_range(self.pos, len, "pixel data fragment")?;
                    fragments.push((self.pos, len));
                    self.pos += len;
                }
                t => return Err(corrupt(format!("{} inside the encapsulated pixel data", show(t)))),
            }
            first = false;
        }
        Ok(PixelData::Encapsulated {
            fragments,
            offset_table,
        })
    }
}

/// An implicit-VR element's VR from the standard dictionary (UN where it is not there, or
/// where its VR depends on the data, as with OB or OW).
fn dictionary_vr(tag: Tag, len: u32) -> Vr {
    let entry = StandardDataDictionary.by_tag(dicom_core::Tag((tag >> 16) as u16, tag as u16));
    let vr = match entry.map(|e| e.vr) {
        Some(VirtualVr::Exact(vr)) => vr.to_string().as_bytes().try_into().unwrap_or(*b"UN"),
        _ => *b"UN",
    };
    // An undefined length on an unknown element is a sequence (PS3.5 §7.5.1).
    if len == UNDEFINED && vr == *b"UN" {
        return Vr::SQ;
    }
    Vr(vr)
}

/// The standard keyword of a tag, for property names.
pub(crate) fn keyword(tag: Tag) -> Option<&'static str> {
    StandardDataDictionary
        .by_tag(dicom_core::Tag((tag >> 16) as u16, tag as u16))
        .map(|e| e.alias)
        .filter(|a| !a.is_empty() && !a.starts_with("Generic"))
}

/// A tag as DICOM writes it: (gggg,eeee).
pub(crate) fn show(tag: Tag) -> String {
    format!("({:04X},{:04X})", tag >> 16, tag & 0xFFFF)
}
