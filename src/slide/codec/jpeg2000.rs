//! JPEG 2000 codestreams (DICOM frames, Aperio's JPEG 2000 tiles) through hayro-jpeg2000:
//! pure Rust with no unsafe code, so a hostile codestream can fail but not corrupt memory.
//! The frame's size is read from its header and checked before anything is decoded; the
//! colour transform, when the codestream applies one (RCT or ICT), is undone by the decoder.
//! Aperio's compression 33003 stores YCbCr samples with no transform in the codestream:
//! those are converted here (`ycbcr`), as OpenSlide converts them.

use super::{expand_to_rgba, Tile};
use crate::slide::error::{corrupt, Result};
use hayro_jpeg2000::{DecodeSettings, DecoderContext, Image};

/// Decodes a codestream that must be exactly `width` x `height` pixels of 1, 3 or 4
/// components; with `ycbcr`, three components the codestream does not transform itself are
/// YCbCr, converted to RGB.
pub(crate) fn decode(stream: &[u8], width: u32, height: u32, ycbcr: bool) -> Result<Tile> {
    let image =
        Image::new(stream, &DecodeSettings::default()).map_err(|e| corrupt(format!("JPEG 2000: {e}")))?;
    if (image.width(), image.height()) != (width, height) {
        return Err(corrupt(format!(
            "JPEG 2000 image of {}x{} pixels where {width}x{height} are expected",
            image.width(),
            image.height()
        )));
    }
    let mut context = DecoderContext::default();
    let decoded = image
        .decode(&mut context)
        .map_err(|e| corrupt(format!("JPEG 2000: {e}")))?;
    let samples = decoded.data_u8();
    let pixels = width as usize * height as usize;
    let channels = samples.len() / pixels.max(1);
    if !matches!(channels, 1 | 3 | 4) || samples.len() != channels * pixels {
        return Err(corrupt(format!(
            "JPEG 2000 image of {} samples for {pixels} pixels (1, 3 or 4 a pixel are read)",
            samples.len()
        )));
    }
    let mut rgba = Vec::with_capacity(pixels * 4);
    rgba.extend_from_slice(&samples);
    if ycbcr && channels == 3 && !applies_colour_transform(stream) {
        rgba.chunks_exact_mut(3).for_each(ycbcr_to_rgb);
    }
    Ok(Tile {
        width,
        height,
        rgba: expand_to_rgba(rgba, channels, pixels),
    })
}

/// Whether the codestream's coding style (COD) applies a multiple-component transform.
fn applies_colour_transform(stream: &[u8]) -> bool {
    // Main-header marker segments after SOC: marker, 16-bit length (itself included), body.
    let mut at = 2;
    while at + 4 <= stream.len() && stream[at] == 0xFF {
        let len = u16::from_be_bytes([stream[at + 2], stream[at + 3]]) as usize;
        match stream[at + 1] {
            // COD: Scod, progression order, 16-bit layer count, then the MCT flag.
            0x52 => return stream.get(at + 8).is_some_and(|&mct| mct != 0),
            // Start of the first tile: no COD before it.
            0x90 => return false,
            _ => at += 2 + len,
        }
    }
    false
}

/// Full-range YCbCr (ITU-R BT.601, as JFIF and OpenSlide's Aperio reader) to RGB, in place.
fn ycbcr_to_rgb(p: &mut [u8]) {
    let (y, cb, cr) = (p[0] as f32, p[1] as f32 - 128.0, p[2] as f32 - 128.0);
    let c = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    p[0] = c(y + 1.402 * cr);
    p[1] = c(y - 0.344_136 * cb - 0.714_136 * cr);
    p[2] = c(y + 1.772 * cb);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_colour_transform_flag_is_read_from_the_coding_style() {
        // SOC, SIZ (length 4, no body worth reading), COD with MCT 1, then 0.
        let mut stream = vec![0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x04, 0x00, 0x00];
        stream.extend([0xFF, 0x52, 0x00, 0x0C, 0x00, 0x00, 0x00, 0x01, 0x01]);
        assert!(super::applies_colour_transform(&stream));
        *stream.last_mut().unwrap() = 0;
        assert!(!super::applies_colour_transform(&stream));
        assert!(!super::applies_colour_transform(&[0xFF, 0x4F, 0xFF, 0x90, 0, 10]));
    }
}
