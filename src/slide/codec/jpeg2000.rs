//! JPEG 2000 codestreams (DICOM frames) through hayro-jpeg2000: pure Rust with no unsafe
//! code, so a hostile codestream can fail but not corrupt memory. The frame's size is read
//! from its header and checked before anything is decoded; the colour transform, when the
//! codestream applies one (RCT or ICT), is undone by the decoder.

use super::{expand_to_rgba, Tile};
use crate::slide::error::{corrupt, Result};
use hayro_jpeg2000::{DecodeSettings, DecoderContext, Image};

/// Decodes a codestream that must be exactly `width` x `height` pixels of 1, 3 or 4
/// components.
pub(crate) fn decode(stream: &[u8], width: u32, height: u32) -> Result<Tile> {
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
    Ok(Tile {
        width,
        height,
        rgba: expand_to_rgba(rgba, channels, pixels),
    })
}
