//! Builds DICOM Part 10 files byte by byte, for tests that need files that lie: the 128-byte
//! preamble and "DICM", the file meta group (explicit VR little endian, with its group
//! length), then a data set in explicit or implicit VR little endian. Every element is raw
//! bytes: its tag, VR and length are the caller's, so a length may run past the end of the
//! file, be odd or be 0xFFFFFFFF on any VR, and a VR need not be two letters. Sequences and
//! items take a defined length (their true one, or any other) or an undefined one, closed by
//! their delimiter or left open; pixel data is native (one element) or encapsulated (basic
//! offset table item, fragment items, sequence delimiter), each item declared as the caller
//! likes.

use std::collections::BTreeMap;

/// The undefined length.
pub const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Transfer syntax UIDs.
pub mod ts {
    pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
    pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
    pub const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
    pub const BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
    pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
    pub const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";
    pub const JPEG_LS_NEAR_LOSSLESS: &str = "1.2.840.10008.1.2.4.81";
    pub const JPEG_2000: &str = "1.2.840.10008.1.2.4.90";
    pub const RLE: &str = "1.2.840.10008.1.2.5";
}

/// SOP class UIDs.
pub mod sop {
    /// VL Whole Slide Microscopy Image Storage.
    pub const WSM: &str = "1.2.840.10008.5.1.4.1.1.77.1.6";
    /// CT Image Storage.
    pub const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
}

/// Tags the tests use, group in the high 16 bits.
pub mod tag {
    pub const META_GROUP_LENGTH: u32 = 0x0002_0000;
    pub const META_VERSION: u32 = 0x0002_0001;
    pub const MEDIA_STORAGE_SOP_CLASS: u32 = 0x0002_0002;
    pub const MEDIA_STORAGE_SOP_INSTANCE: u32 = 0x0002_0003;
    pub const TRANSFER_SYNTAX: u32 = 0x0002_0010;
    pub const IMPLEMENTATION_CLASS: u32 = 0x0002_0012;
    pub const IMAGE_TYPE: u32 = 0x0008_0008;
    pub const SOP_CLASS: u32 = 0x0008_0016;
    pub const SOP_INSTANCE: u32 = 0x0008_0018;
    pub const MODALITY: u32 = 0x0008_0060;
    pub const STUDY_DESCRIPTION: u32 = 0x0008_1030;
    pub const PATIENT_NAME: u32 = 0x0010_0010;
    pub const STUDY_UID: u32 = 0x0020_000D;
    pub const SERIES_UID: u32 = 0x0020_000E;
    pub const INSTANCE_NUMBER: u32 = 0x0020_0013;
    pub const CONCATENATION_UID: u32 = 0x0020_9161;
    pub const CONCATENATION_SOURCE: u32 = 0x0020_0242;
    pub const CONCATENATION_FRAME_OFFSET: u32 = 0x0020_9228;
    pub const DIMENSION_ORGANIZATION_TYPE: u32 = 0x0020_9311;
    pub const SAMPLES_PER_PIXEL: u32 = 0x0028_0002;
    pub const PHOTOMETRIC: u32 = 0x0028_0004;
    pub const PLANAR_CONFIGURATION: u32 = 0x0028_0006;
    pub const NUMBER_OF_FRAMES: u32 = 0x0028_0008;
    pub const ROWS: u32 = 0x0028_0010;
    pub const COLUMNS: u32 = 0x0028_0011;
    pub const PIXEL_SPACING: u32 = 0x0028_0030;
    pub const BITS_ALLOCATED: u32 = 0x0028_0100;
    pub const BITS_STORED: u32 = 0x0028_0101;
    pub const HIGH_BIT: u32 = 0x0028_0102;
    pub const PIXEL_REPRESENTATION: u32 = 0x0028_0103;
    pub const ICC_PROFILE: u32 = 0x0028_2000;
    pub const TOTAL_COLUMNS: u32 = 0x0048_0006;
    pub const TOTAL_ROWS: u32 = 0x0048_0007;
    pub const PLANE_POSITION_SLIDE: u32 = 0x0048_021A;
    pub const COLUMN_POSITION: u32 = 0x0048_021E;
    pub const ROW_POSITION: u32 = 0x0048_021F;
    pub const PIXEL_MEASURES: u32 = 0x0028_9110;
    pub const SHARED_GROUPS: u32 = 0x5200_9229;
    pub const PER_FRAME_GROUPS: u32 = 0x5200_9230;
    pub const EXTENDED_OFFSET_TABLE: u32 = 0x7FE0_0001;
    pub const EXTENDED_OFFSET_TABLE_LENGTHS: u32 = 0x7FE0_0002;
    pub const PIXEL_DATA: u32 = 0x7FE0_0010;
    pub const ITEM: u32 = 0xFFFE_E000;
    pub const ITEM_END: u32 = 0xFFFE_E00D;
    pub const SEQUENCE_END: u32 = 0xFFFE_E0DD;
}

/// Explicit VRs whose length is 32 bits, after two reserved bytes (PS3.5 §7.1.2).
pub fn has_long_length(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV"
    )
}

/// A tag's four bytes: group then element, each little endian.
pub fn tag_bytes(tag: u32) -> [u8; 4] {
    let (g, e) = ((tag >> 16) as u16, tag as u16);
    let (g, e) = (g.to_le_bytes(), e.to_le_bytes());
    [g[0], g[1], e[0], e[1]]
}

/// An item, item delimiter or sequence delimiter header: tag and 32-bit length (the same in
/// either VR encoding).
pub fn item_header(tag: u32, len: u32) -> Vec<u8> {
    let mut out = tag_bytes(tag).to_vec();
    out.extend_from_slice(&len.to_le_bytes());
    out
}

pub fn item_delimiter() -> Vec<u8> {
    item_header(tag::ITEM_END, 0)
}

pub fn sequence_delimiter() -> Vec<u8> {
    item_header(tag::SEQUENCE_END, 0)
}

/// How a sequence or item states its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Len {
    /// Its true length.
    Defined,
    /// 0xFFFFFFFF, closed by its delimiter.
    Undefined,
    /// 0xFFFFFFFF with no delimiter after it.
    Unclosed,
    /// This length, whatever the content's.
    Declared(u32),
}

impl Len {
    /// The length field for `content_len` bytes of content.
    fn field(self, content_len: usize) -> u32 {
        match self {
            Len::Defined => content_len as u32,
            Len::Undefined | Len::Unclosed => UNDEFINED,
            Len::Declared(n) => n,
        }
    }
}

/// An item (a sequence's, or a pixel data fragment) holding `content`.
pub fn item(content: &[u8], len: Len) -> Vec<u8> {
    let mut out = item_header(tag::ITEM, len.field(content.len()));
    out.extend_from_slice(content);
    if len == Len::Undefined {
        out.extend(item_delimiter());
    }
    out
}

/// The data set's VR encoding (both little endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enc {
    Explicit,
    Implicit,
}

/// Explicit VR little endian, as the file meta group always is.
pub const EX: Enc = Enc::Explicit;
/// Implicit VR little endian.
pub const IM: Enc = Enc::Implicit;

impl Enc {
    /// An element header as declared: explicit VR writes the two VR bytes and a 16-bit
    /// length (truncated to 16 bits), or two reserved bytes and a 32-bit length for the long
    /// VRs; implicit VR writes a 32-bit length and no VR.
    pub fn header(self, tag: u32, vr: &[u8; 2], len: u32) -> Vec<u8> {
        let mut out = tag_bytes(tag).to_vec();
        match self {
            Enc::Explicit => {
                out.extend_from_slice(vr);
                if has_long_length(*vr) {
                    out.extend_from_slice(&[0, 0]);
                    out.extend_from_slice(&len.to_le_bytes());
                } else {
                    out.extend_from_slice(&(len as u16).to_le_bytes());
                }
            }
            Enc::Implicit => out.extend_from_slice(&len.to_le_bytes()),
        }
        out
    }

    /// An element with `value` and its true length (odd if the value is).
    pub fn element(self, tag: u32, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        self.element_len(tag, vr, value.len() as u32, value)
    }

    /// An element declaring `len` whatever `value` holds.
    pub fn element_len(self, tag: u32, vr: &[u8; 2], len: u32, value: &[u8]) -> Vec<u8> {
        let mut out = self.header(tag, vr, len);
        out.extend_from_slice(value);
        out
    }

    /// Text padded to an even length (UI with a NUL, the others with a space).
    pub fn text(self, tag: u32, vr: &[u8; 2], text: &str) -> Vec<u8> {
        let mut value = text.as_bytes().to_vec();
        if value.len() % 2 == 1 {
            value.push(if vr == b"UI" { 0 } else { b' ' });
        }
        self.element(tag, vr, &value)
    }

    pub fn ui(self, tag: u32, uid: &str) -> Vec<u8> {
        self.text(tag, b"UI", uid)
    }

    pub fn cs(self, tag: u32, text: &str) -> Vec<u8> {
        self.text(tag, b"CS", text)
    }

    /// An IS (integer string).
    pub fn is(self, tag: u32, text: &str) -> Vec<u8> {
        self.text(tag, b"IS", text)
    }

    /// A DS (decimal string).
    pub fn ds(self, tag: u32, text: &str) -> Vec<u8> {
        self.text(tag, b"DS", text)
    }

    pub fn us(self, tag: u32, values: &[u16]) -> Vec<u8> {
        let value: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.element(tag, b"US", &value)
    }

    pub fn ul(self, tag: u32, values: &[u32]) -> Vec<u8> {
        let value: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.element(tag, b"UL", &value)
    }

    pub fn sl(self, tag: u32, values: &[i32]) -> Vec<u8> {
        let value: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.element(tag, b"SL", &value)
    }

    pub fn fd(self, tag: u32, values: &[f64]) -> Vec<u8> {
        let value: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.element(tag, b"FD", &value)
    }

    /// A sequence of `items` (each already an item, or any bytes), its length as `len` says.
    pub fn sequence(self, tag: u32, items: &[Vec<u8>], len: Len) -> Vec<u8> {
        let content = items.concat();
        let mut out = self.header(tag, b"SQ", len.field(content.len()));
        out.extend(content);
        if len == Len::Undefined {
            out.extend(sequence_delimiter());
        }
        out
    }

    /// A sequence of items of defined length, each holding one data set's bytes.
    pub fn sq(self, tag: u32, items: &[Vec<u8>]) -> Vec<u8> {
        let items: Vec<Vec<u8>> = items.iter().map(|c| item(c, Len::Defined)).collect();
        self.sequence(tag, &items, Len::Defined)
    }

    /// Native (uncompressed) pixel data: one OB element of `data`'s length.
    pub fn native_pixels(self, data: &[u8]) -> Vec<u8> {
        self.element(tag::PIXEL_DATA, b"OB", data)
    }

    /// Encapsulated pixel data: an undefined-length OB, the basic offset table item (empty
    /// for `None`), one item per fragment, the sequence delimiter.
    pub fn encapsulated(self, offset_table: Option<&[u32]>, fragments: &[Vec<u8>]) -> Vec<u8> {
        let table: Vec<u8> = offset_table
            .unwrap_or(&[])
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut items = vec![item(&table, Len::Defined)];
        items.extend(fragments.iter().map(|f| item(f, Len::Defined)));
        self.encapsulated_raw(&items.concat(), true)
    }

    /// Encapsulated pixel data around `items` as given (any bytes), with or without the
    /// closing sequence delimiter.
    pub fn encapsulated_raw(self, items: &[u8], closed: bool) -> Vec<u8> {
        let mut out = self.header(tag::PIXEL_DATA, b"OB", UNDEFINED);
        out.extend_from_slice(items);
        if closed {
            out.extend(sequence_delimiter());
        }
        out
    }
}

/// Offsets of each frame's first item, from the first fragment item's first byte, for
/// frames made of `fragments_per_frame` fragments each (as the basic offset table holds).
pub fn offset_table(fragments: &[Vec<u8>], fragments_per_frame: &[usize]) -> Vec<u32> {
    let mut out = Vec::new();
    let (mut at, mut next) = (0u32, 0usize);
    for &n in fragments_per_frame {
        out.push(at);
        for f in &fragments[next..next + n] {
            at += 8 + f.len() as u32;
        }
        next += n;
    }
    out
}

/// A data set (or the file meta group, or an item's content) under construction: raw byte
/// runs kept in the order of their keys (a tag, normally that of the element the run
/// holds), so a test can replace, remove or add any element, or put any bytes anywhere.
#[derive(Clone, Debug, Default)]
pub struct DataSet {
    entries: BTreeMap<u64, Vec<u8>>,
}

impl DataSet {
    pub fn new() -> DataSet {
        DataSet::default()
    }

    /// Puts `bytes` at `tag`'s place (replacing what was there).
    pub fn set(&mut self, tag: u32, bytes: Vec<u8>) -> &mut DataSet {
        self.entries.insert((tag as u64) << 8, bytes);
        self
    }

    /// Puts `bytes` just after `tag`'s place (before the next tag): junk between elements.
    pub fn set_after(&mut self, tag: u32, bytes: Vec<u8>) -> &mut DataSet {
        self.entries.insert(((tag as u64) << 8) | 0x80, bytes);
        self
    }

    pub fn with(mut self, tag: u32, bytes: Vec<u8>) -> DataSet {
        self.set(tag, bytes);
        self
    }

    pub fn remove(&mut self, tag: u32) -> &mut DataSet {
        self.entries.remove(&((tag as u64) << 8));
        self
    }

    pub fn get(&self, tag: u32) -> Option<&[u8]> {
        self.entries.get(&((tag as u64) << 8)).map(Vec::as_slice)
    }

    /// Every run, in key order.
    pub fn bytes(&self) -> Vec<u8> {
        self.entries.values().flatten().copied().collect()
    }
}

/// A file meta group: its group length element (0002,0000) counting what follows, then
/// `meta`'s elements.
pub fn meta_group(meta: &DataSet) -> Vec<u8> {
    let rest = meta.bytes();
    let mut out = EX.ul(tag::META_GROUP_LENGTH, &[rest.len() as u32]);
    out.extend(rest);
    out
}

/// The usual file meta elements (without the group length): version, media storage SOP
/// class and instance, transfer syntax (left out for `None`), implementation class.
pub fn file_meta(sop_class: &str, sop_instance: &str, transfer_syntax: Option<&str>) -> DataSet {
    let mut meta = DataSet::new();
    meta.set(tag::META_VERSION, EX.element(tag::META_VERSION, b"OB", &[0, 1]))
        .set(
            tag::MEDIA_STORAGE_SOP_CLASS,
            EX.ui(tag::MEDIA_STORAGE_SOP_CLASS, sop_class),
        )
        .set(
            tag::MEDIA_STORAGE_SOP_INSTANCE,
            EX.ui(tag::MEDIA_STORAGE_SOP_INSTANCE, sop_instance),
        )
        .set(
            tag::IMPLEMENTATION_CLASS,
            EX.ui(tag::IMPLEMENTATION_CLASS, "1.2.826.0.1.3680043.10.1"),
        );
    if let Some(ts) = transfer_syntax {
        meta.set(tag::TRANSFER_SYNTAX, EX.ui(tag::TRANSFER_SYNTAX, ts));
    }
    meta
}

/// A Part 10 file: 128 zero bytes, "DICM", the meta group bytes, the data set bytes.
pub fn part10(meta_group: &[u8], data_set: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    out.extend_from_slice(meta_group);
    out.extend_from_slice(data_set);
    out
}
