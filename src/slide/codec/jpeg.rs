//! JPEG as found in slides: abbreviated streams completed by TIFF's JPEGTables, the colour
//! space taken from the TIFF photometric tag rather than guessed, and NDPI restart
//! intervals cut out of one huge strip and decoded as small images of their own.

use super::{expand_to_rgba, Tile};
use crate::slide::error::{corrupt, Result};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// How to interpret three-component JPEG data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JpegColour {
    /// Data is RGB: no colour transform (Aperio's "JPEG/RGB" tiles; OpenSlide does the same).
    Rgb,
    /// Data is YCbCr, converted to RGB.
    YCbCr,
    /// As the stream itself says (greyscale, or a stand-alone JPEG).
    Native,
}

const SOI: [u8; 2] = [0xFF, 0xD8];
const EOI: [u8; 2] = [0xFF, 0xD9];

/// An Adobe APP14 segment, the standard way to state the colour transform of a JPEG stream.
fn adobe_app14(transform: u8) -> [u8; 16] {
    [
        0xFF, 0xEE, 0x00, 0x0E, b'A', b'd', b'o', b'b', b'e', 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, transform,
    ]
}

/// Builds a complete JPEG stream: SOI, the colour-transform marker, the shared tables (the
/// TIFF JPEGTables stream without its SOI/EOI) and the abbreviated tile stream without its SOI.
pub(crate) fn complete_stream(data: &[u8], tables: Option<&[u8]>, colour: JpegColour) -> Result<Vec<u8>> {
    if data.len() < 4 || data[..2] != SOI {
        return Err(corrupt("JPEG data does not start with an SOI marker"));
    }
    let tables = match tables {
        Some(t) if t.len() >= 4 && t[..2] == SOI => {
            let end = if t[t.len() - 2..] == EOI {
                t.len() - 2
            } else {
                t.len()
            };
            &t[2..end]
        }
        Some(_) => return Err(corrupt("JPEGTables is not a JPEG tables-only stream")),
        None => &[][..],
    };
    let mut out = Vec::with_capacity(data.len() + tables.len() + 16);
    out.extend_from_slice(&SOI);
    match colour {
        JpegColour::Rgb => out.extend_from_slice(&adobe_app14(0)),
        JpegColour::YCbCr => out.extend_from_slice(&adobe_app14(1)),
        JpegColour::Native => {}
    }
    out.extend_from_slice(tables);
    out.extend_from_slice(&data[2..]);
    Ok(out)
}

/// Decodes a complete JPEG stream to RGBA. The stream's declared size must not exceed
/// `max_width` × `max_height` (checked before the decoder allocates anything).
pub(crate) fn decode(stream: &[u8], max_width: u32, max_height: u32) -> Result<Tile> {
    let opts = DecoderOptions::default()
        .set_max_width(max_width as usize)
        .set_max_height(max_height as usize)
        .set_strict_mode(false);
    // Slides are nearly all YCbCr, decoded to RGBA: ask for that up front, so the common
    // case reads the headers once.
    let mut dec = JpegDecoder::new_with_options(
        ZCursor::new(stream),
        opts.jpeg_set_out_colorspace(ColorSpace::RGBA),
    );
    dec.decode_headers().map_err(|e| corrupt(format!("JPEG: {e}")))?;
    let info = dec.info().ok_or_else(|| corrupt("JPEG: no frame header"))?;
    let (width, height) = (info.width as u32, info.height as u32);
    if width == 0 || height == 0 {
        return Err(corrupt("JPEG frame of zero size"));
    }
    let input = dec.input_colorspace().unwrap_or(ColorSpace::YCbCr);
    let (out_space, channels) = match input {
        ColorSpace::Luma => (ColorSpace::Luma, 1),
        ColorSpace::YCbCr => (ColorSpace::RGBA, 4),
        // Adobe transform 0 reads as CMYK until the decoder sees three components: RGB.
        ColorSpace::RGB | ColorSpace::CMYK if info.components == 3 => (ColorSpace::RGB, 3),
        other => return Err(corrupt(format!("JPEG with unsupported colour space {other:?}"))),
    };
    // The output colour space must be set before headers are read: for the others, decode
    // with a fresh decoder now that the input's is known.
    if out_space != ColorSpace::RGBA {
        dec = JpegDecoder::new_with_options(ZCursor::new(stream), opts.jpeg_set_out_colorspace(out_space));
    }
    let pixels = width as usize * height as usize;
    let samples = dec.decode().map_err(|e| corrupt(format!("JPEG: {e}")))?;
    if dec.output_colorspace().map(|c| c.num_components()) != Some(channels)
        || samples.len() < pixels * channels
    {
        return Err(corrupt("JPEG decoded to fewer pixels than its header declares"));
    }
    let rgba = if channels == 4 {
        samples
    } else {
        expand_to_rgba(&samples, channels, pixels)
    };
    Ok(Tile { width, height, rgba })
}

/// The parts of a baseline JPEG stream needed to cut it into restart intervals.
#[derive(Clone, Debug)]
pub(crate) struct JpegLayout {
    /// Everything before the entropy-coded data (SOI … SOS), with the SOF's size fields
    /// at `sof_size_at` and the DRI segment, if any, blanked into a comment.
    pub header: Vec<u8>,
    pub sof_size_at: usize,
    pub width: u32,
    pub height: u32,
    pub components: u32,
    pub mcu_width: u32,
    pub mcu_height: u32,
    /// MCUs per restart interval; 0 when the stream has no restart markers.
    pub restart_interval: u32,
    /// Offset of the first entropy-coded byte from the start of the stream.
    pub data_start: u64,
}

/// Parses the marker segments of a JPEG stream up to its first SOS.
pub(crate) fn parse_layout(head: &[u8]) -> Result<JpegLayout> {
    if head.len() < 4 || head[..2] != SOI {
        return Err(corrupt("JPEG strip does not start with an SOI marker"));
    }
    let mut header = SOI.to_vec();
    let mut pos = 2usize;
    let mut sof: Option<(usize, u32, u32, u32, u32, u32)> = None;
    let mut restart_interval = 0u32;
    loop {
        // Skip fill bytes before a marker.
        while pos < head.len() && head[pos] == 0xFF && head.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if pos + 4 > head.len() || head[pos] != 0xFF {
            return Err(corrupt("JPEG header is truncated or malformed"));
        }
        let marker = head[pos + 1];
        let len = u16::from_be_bytes([head[pos + 2], head[pos + 3]]) as usize;
        if len < 2 || pos + 2 + len > head.len() {
            return Err(corrupt("JPEG marker segment runs past the header"));
        }
        let seg = &head[pos..pos + 2 + len];
        match marker {
            0xC0 | 0xC1 => {
                if len < 8 + 3 {
                    return Err(corrupt("JPEG frame header too short"));
                }
                let height = u16::from_be_bytes([seg[5], seg[6]]) as u32;
                let width = u16::from_be_bytes([seg[7], seg[8]]) as u32;
                let ncomp = seg[9] as usize;
                if ncomp == 0 || len < 8 + 3 * ncomp {
                    return Err(corrupt("JPEG frame header with bad component count"));
                }
                let (mut hmax, mut vmax) = (1u32, 1u32);
                for c in 0..ncomp {
                    let s = seg[11 + 3 * c];
                    hmax = hmax.max((s >> 4) as u32);
                    vmax = vmax.max((s & 15) as u32);
                }
                sof = Some((header.len() + 5, width, height, ncomp as u32, hmax * 8, vmax * 8));
                header.extend_from_slice(seg);
            }
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(corrupt(
                    "only baseline JPEG strips can be split into restart intervals",
                ));
            }
            0xDD => {
                restart_interval = u16::from_be_bytes([seg[4], seg[5]]) as u32;
                // Each interval becomes a stream of its own, so the DRI must go: keep its
                // length by turning it into a comment.
                let mut com = seg.to_vec();
                com[1] = 0xFE;
                header.extend_from_slice(&com);
            }
            0xDA => {
                header.extend_from_slice(seg);
                let (sof_size_at, width, height, components, mcu_width, mcu_height) =
                    sof.ok_or_else(|| corrupt("JPEG scan before its frame header"))?;
                if width == 0 || height == 0 {
                    return Err(corrupt("JPEG frame of zero size"));
                }
                return Ok(JpegLayout {
                    header,
                    sof_size_at,
                    width,
                    height,
                    components,
                    mcu_width,
                    mcu_height,
                    restart_interval,
                    data_start: (pos + 2 + len) as u64,
                });
            }
            _ => header.extend_from_slice(seg),
        }
        pos += 2 + len;
    }
}

impl JpegLayout {
    /// A stand-alone JPEG stream of `width` × `height` pixels around one interval's
    /// entropy-coded bytes (without its trailing RST marker).
    pub fn interval_stream(&self, entropy: &[u8], width: u32, height: u32) -> Vec<u8> {
        let mut s = Vec::with_capacity(self.header.len() + entropy.len() + 2);
        s.extend_from_slice(&self.header);
        s[self.sof_size_at..self.sof_size_at + 2].copy_from_slice(&(height as u16).to_be_bytes());
        s[self.sof_size_at + 2..self.sof_size_at + 4].copy_from_slice(&(width as u16).to_be_bytes());
        s.extend_from_slice(entropy);
        s.extend_from_slice(&EOI);
        s
    }
}
