//! JPEG as found in slides: abbreviated streams completed by TIFF's JPEGTables, the colour
//! space taken from the TIFF photometric tag rather than guessed, and NDPI restart
//! intervals cut out of one huge strip and decoded as small images of their own.

use super::{expand_to_rgba, Tile};
use crate::slide::error::{corrupt, unsupported, Result};
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
pub(crate) const EOI: [u8; 2] = [0xFF, 0xD9];

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

/// Decodes a complete JPEG stream to RGBA. The stream must be whole ([`check`]) and its frame
/// no larger than `max_width` × `max_height`, both checked before the decoder sees it.
pub(crate) fn decode(stream: &[u8], max_width: u32, max_height: u32) -> Result<Tile> {
    let frame = check(stream, max_width, max_height)?;
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
    if (width, height) != (frame.width, frame.height) {
        return Err(corrupt(
            "JPEG decoder disagrees with the frame header on the size",
        ));
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
        expand_to_rgba(samples, channels, pixels)
    };
    Ok(Tile { width, height, rgba })
}

/// What a JPEG frame header (SOFn) declares.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub width: u32,
    pub height: u32,
    /// Each component's id and horizontal and vertical sampling factors (1 to 4).
    components: Vec<(u8, u32, u32)>,
    /// Baseline or extended sequential Huffman (SOF0, SOF1): one scan, what any decoder reads.
    pub sequential: bool,
    /// Offset of the frame header's height field, then its width field, in the stream.
    size_at: usize,
}

impl Frame {
    fn parse(seg: &[u8], at: usize) -> Result<Frame> {
        let len = seg.len() - 2;
        if len < 8 {
            return Err(corrupt("JPEG frame header too short"));
        }
        let height = u16::from_be_bytes([seg[5], seg[6]]) as u32;
        let width = u16::from_be_bytes([seg[7], seg[8]]) as u32;
        let ncomp = seg[9] as usize;
        if !(1..=4).contains(&ncomp) || len < 8 + 3 * ncomp {
            return Err(corrupt("JPEG frame header with a bad component count"));
        }
        if width == 0 || height == 0 {
            return Err(corrupt("JPEG frame of zero size"));
        }
        let components = seg[10..10 + 3 * ncomp]
            .chunks_exact(3)
            .map(|c| (c[0], (c[1] >> 4) as u32, (c[1] & 15) as u32))
            .collect::<Vec<_>>();
        if components
            .iter()
            .any(|&(_, h, v)| !(1..=4).contains(&h) || !(1..=4).contains(&v))
        {
            return Err(corrupt("JPEG frame header with a bad sampling factor"));
        }
        Ok(Frame {
            width,
            height,
            components,
            sequential: matches!(seg[1], 0xC0 | 0xC1),
            size_at: at + 5,
        })
    }

    pub fn components(&self) -> usize {
        self.components.len()
    }

    /// The size of an interleaved MCU in pixels.
    fn mcu_size(&self) -> (u32, u32) {
        let hmax = self.components.iter().map(|c| c.1).max().unwrap_or(1);
        let vmax = self.components.iter().map(|c| c.2).max().unwrap_or(1);
        (8 * hmax, 8 * vmax)
    }

    /// MCUs in a scan of the components `ids`, and 8 × 8 blocks in each MCU.
    fn scan_mcus(&self, ids: &[u8]) -> Result<(u64, u64)> {
        let (mcu_w, mcu_h) = self.mcu_size();
        let (w, h) = (self.width as u64, self.height as u64);
        let mut sampling = Vec::with_capacity(ids.len());
        for id in ids {
            let &(_, hs, vs) = self
                .components
                .iter()
                .find(|c| c.0 == *id)
                .ok_or_else(|| corrupt("JPEG scan of a component the frame lacks"))?;
            sampling.push((hs as u64, vs as u64));
        }
        Ok(match sampling[..] {
            // A scan of one component goes block by block over that component's own size.
            [(hs, vs)] => {
                let across = (w * hs).div_ceil(mcu_w as u64 / 8).div_ceil(8);
                let down = (h * vs).div_ceil(mcu_h as u64 / 8).div_ceil(8);
                (across * down, 1)
            }
            _ => {
                let mcus = w.div_ceil(mcu_w as u64) * h.div_ceil(mcu_h as u64);
                (mcus, sampling.iter().map(|(hs, vs)| hs * vs).sum())
            }
        })
    }
}

/// Walks marker segments from `pos` (just after SOI, or after a scan's entropy-coded data)
/// up to the next SOS, handing each segment (marker, length and payload) and its offset to
/// `visit`. Returns the offset just after the SOS segment, or `None` at an EOI.
fn walk_segments(
    data: &[u8],
    mut pos: usize,
    mut visit: impl FnMut(&[u8], usize) -> Result<()>,
) -> Result<Option<usize>> {
    loop {
        // Fill bytes may precede a marker.
        while data.get(pos) == Some(&0xFF) && data.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        match data.get(pos..pos + 2) {
            Some([0xFF, 0xD9]) => return Ok(None),
            Some(&[0xFF, m]) if !matches!(m, 0x00 | 0x01 | 0xD0..=0xD8) => {}
            Some(_) => return Err(corrupt("JPEG header is malformed")),
            None => return Err(corrupt("JPEG header is truncated")),
        }
        let len = match data.get(pos + 2..pos + 4) {
            Some(l) => u16::from_be_bytes([l[0], l[1]]) as usize,
            None => return Err(corrupt("JPEG header is truncated")),
        };
        let seg = data
            .get(pos..pos + 2 + len)
            .filter(|_| len >= 2)
            .ok_or_else(|| corrupt("JPEG marker segment runs past the data"))?;
        visit(seg, pos)?;
        pos += 2 + len;
        if seg[1] == 0xDA {
            return Ok(Some(pos));
        }
    }
}

/// The restart interval a DRI segment declares, in MCUs (0: none).
fn restart_interval(seg: &[u8]) -> Result<u32> {
    match seg {
        [_, _, _, _, hi, lo] => Ok(u16::from_be_bytes([*hi, *lo]) as u32),
        _ => Err(corrupt("JPEG restart interval segment of the wrong length")),
    }
}

/// The components a scan header (SOS) covers.
fn scan_components(seg: &[u8]) -> Result<&[u8]> {
    let n = *seg.get(4).ok_or_else(|| corrupt("JPEG scan header too short"))? as usize;
    if !(1..=4).contains(&n) || seg.len() < 8 + 2 * n {
        return Err(corrupt("JPEG scan header with a bad component count"));
    }
    Ok(&seg[5..5 + 2 * n])
}

/// Checks that a complete JPEG stream is whole before any decoder sees it, by reading its
/// markers only: a frame header no larger than `max_width` × `max_height`, every scan's
/// restart markers all present and in order, each sequential scan long enough for its
/// blocks, and an EOI after the last scan. Decoders fill a stream cut short with grey (or
/// with what follows), so a truncated tile would otherwise decode to plausible garbage.
pub(crate) fn check(stream: &[u8], max_width: u32, max_height: u32) -> Result<Frame> {
    if stream.len() < 4 || stream[..2] != SOI {
        return Err(corrupt("JPEG data does not start with an SOI marker"));
    }
    let mut frame: Option<Frame> = None;
    let mut interval = 0u32;
    let mut scan: Vec<u8> = Vec::new();
    let mut scans = 0;
    let mut pos = 2;
    loop {
        let next = walk_segments(stream, pos, |seg, at| {
            match seg[1] {
                0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                    if frame.is_some() {
                        return Err(corrupt("JPEG with two frame headers"));
                    }
                    let f = Frame::parse(seg, at)?;
                    if f.width > max_width || f.height > max_height {
                        return Err(corrupt(format!(
                            "JPEG frame of {}x{} pixels is larger than its {max_width}x{max_height} tile",
                            f.width, f.height
                        )));
                    }
                    frame = Some(f);
                }
                0xDD => interval = restart_interval(seg)?,
                0xDA => scan = scan_components(seg)?.iter().step_by(2).copied().collect(),
                _ => {}
            }
            Ok(())
        })?;
        let Some(data_start) = next else {
            return match frame {
                Some(f) if scans > 0 => Ok(f),
                _ => Err(corrupt("JPEG without a scan")),
            };
        };
        let f = frame
            .as_ref()
            .ok_or_else(|| corrupt("JPEG scan before its frame header"))?;
        let (mcus, blocks) = f.scan_mcus(&scan)?;
        let restarts = if interval == 0 {
            0
        } else {
            mcus.div_ceil(interval as u64) - 1
        };
        let (end, marker_at) = scan_entropy(stream, data_start, restarts)?;
        // Huffman codes are at least one bit long, and a block needs two (its DC difference
        // and an end-of-block), so a shorter scan was cut.
        let bytes = (end - data_start) as u64 - 2 * restarts;
        if f.sequential && bytes * 4 < mcus * blocks {
            return Err(corrupt(format!(
                "JPEG scan of {bytes} bytes is too short for its {} blocks (truncated)",
                mcus * blocks
            )));
        }
        scans += 1;
        pos = marker_at;
    }
}

/// Reads a scan's entropy-coded data from `pos` to the next marker other than a restart
/// marker, checking that exactly `restarts` restart markers come first, numbered in order.
/// Returns where the data ends and where that marker (or the fill before it) starts.
fn scan_entropy(data: &[u8], mut pos: usize, restarts: u64) -> Result<(usize, usize)> {
    let mut seen = 0u64;
    loop {
        let Some(ff) = find_ff(data, pos) else {
            return Err(corrupt(
                "JPEG data ends inside a scan, without an EOI marker (truncated)",
            ));
        };
        let mut m = ff + 1;
        while data.get(m) == Some(&0xFF) {
            m += 1;
        }
        match data.get(m) {
            None => {
                return Err(corrupt(
                    "JPEG data ends inside a scan, without an EOI marker (truncated)",
                ));
            }
            Some(0x00) => pos = m + 1, // a stuffed 0xFF data byte
            Some(&rst @ 0xD0..=0xD7) => {
                if seen == restarts {
                    return Err(corrupt("JPEG scan has more restart markers than its MCUs need"));
                }
                if (rst - 0xD0) as u64 != seen % 8 {
                    return Err(corrupt("JPEG restart markers out of order"));
                }
                seen += 1;
                pos = m + 1;
            }
            Some(_) => {
                if seen < restarts {
                    return Err(corrupt(format!(
                        "JPEG scan has {seen} of its {restarts} restart markers (truncated)"
                    )));
                }
                return Ok((ff, m - 1));
            }
        }
    }
}

/// The offset of the first 0xFF byte at or after `from`, eight bytes a step: the scan runs
/// over every tile before it is decoded, so it must cost little beside decoding (a quarter
/// of a byte-wise search).
fn find_ff(data: &[u8], mut from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    while let Some(word) = data.get(from..from + 8) {
        // A 0xFF byte is a zero byte of the complement: the classic has-zero-byte test.
        let x = !u64::from_le_bytes(word.try_into().expect("eight bytes"));
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            break;
        }
        from += 8;
    }
    data[from..].iter().position(|&b| b == 0xFF).map(|i| from + i)
}

/// The parts of a baseline JPEG stream needed to cut it into restart intervals.
#[derive(Clone, Debug)]
pub(crate) struct JpegLayout {
    /// Everything before the entropy-coded data (SOI … SOS), with the DRI segment, if any,
    /// blanked into a comment.
    pub header: Vec<u8>,
    pub frame: Frame,
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
    let mut frame: Option<Frame> = None;
    let mut restart = 0u32;
    let data_start = walk_segments(head, 2, |seg, _| {
        match seg[1] {
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                let f = Frame::parse(seg, header.len())?;
                if !f.sequential || frame.is_some() {
                    return Err(unsupported(
                        "only baseline JPEG strips can be split into restart intervals",
                    ));
                }
                frame = Some(f);
                header.extend_from_slice(seg);
            }
            0xDD => {
                restart = restart_interval(seg)?;
                // Each interval becomes a stream of its own, so the DRI must go: keep its
                // length by turning it into a comment.
                header.extend_from_slice(&[0xFF, 0xFE]);
                header.extend_from_slice(&seg[2..]);
            }
            _ => header.extend_from_slice(seg),
        }
        Ok(())
    })?
    .ok_or_else(|| corrupt("JPEG strip without a scan"))?;
    let frame = frame.ok_or_else(|| corrupt("JPEG scan before its frame header"))?;
    let (mcu_width, mcu_height) = frame.mcu_size();
    Ok(JpegLayout {
        header,
        frame,
        mcu_width,
        mcu_height,
        restart_interval: restart,
        data_start: data_start as u64,
    })
}

impl JpegLayout {
    /// A stand-alone JPEG stream of `width` × `height` pixels (at most 65,535 each, as the
    /// frame's own) around one interval's entropy-coded bytes (without its trailing RST).
    pub fn interval_stream(&self, entropy: &[u8], width: u32, height: u32) -> Vec<u8> {
        let mut s = Vec::with_capacity(self.header.len() + entropy.len() + 2);
        s.extend_from_slice(&self.header);
        let at = self.frame.size_at;
        s[at..at + 2].copy_from_slice(&(height as u16).to_be_bytes());
        s[at + 2..at + 4].copy_from_slice(&(width as u16).to_be_bytes());
        s.extend_from_slice(entropy);
        s.extend_from_slice(&EOI);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(interval: u16) -> Vec<u8> {
        let pixels: Vec<u8> = (0..64 * 48 * 3).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 80);
        enc.set_restart_interval(interval);
        enc.encode(&pixels, 64, 48, jpeg_encoder::ColorType::Rgb).unwrap();
        out
    }

    #[test]
    fn ff_search_agrees_with_a_bytewise_one() {
        let data: Vec<u8> = (0..1000u32)
            .map(|i| if i % 37 == 0 { 0xFF } else { (i * 13) as u8 | 1 })
            .collect();
        for from in 0..data.len() {
            let want = data[from..].iter().position(|&b| b == 0xFF).map(|i| from + i);
            assert_eq!(find_ff(&data, from), want, "from {from}");
        }
    }

    /// A whole stream passes; every stream cut short of its end fails, before decoding.
    #[test]
    fn every_truncation_is_caught() {
        for interval in [0, 1, 3] {
            let whole = encoded(interval);
            let frame = check(&whole, 64, 48).unwrap();
            assert_eq!((frame.width, frame.height, frame.components()), (64, 48, 3));
            assert!(check(&whole, 63, 48).is_err(), "a frame larger than the tile");
            for cut in 0..whole.len() {
                assert!(
                    check(&whole[..cut], 64, 48).is_err(),
                    "interval {interval}, cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn a_short_restart_segment_is_refused() {
        let whole = encoded(2);
        let dri = whole.windows(2).position(|w| w == [0xFF, 0xDD]).unwrap();
        let mut short = whole[..dri].to_vec();
        short.extend_from_slice(&[0xFF, 0xDD, 0x00, 0x02]);
        short.extend_from_slice(&whole[dri + 6..]);
        assert!(parse_layout(&short).is_err());
        assert!(check(&short, 64, 48).is_err());
        assert_eq!(parse_layout(&whole).unwrap().restart_interval, 2);
    }
}
