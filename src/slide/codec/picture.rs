//! Stand-alone pictures as MIRAX stores its camera images: PNG (RGB, no transparency) and
//! 24-bit BMP, each of a size known beforehand, checked before any pixel is allocated.

use super::{expand_to_rgba, Tile};
use crate::slide::error::{corrupt, unsupported, Result};

/// A PNG of exactly `width` × `height` RGB pixels (16-bit samples reduced, palettes and
/// grey expanded; an alpha channel is refused, as OpenSlide refuses it).
pub(crate) fn decode_png(data: &[u8], width: u32, height: u32) -> Result<Tile> {
    use image::ImageDecoder;
    let decoder = image::codecs::png::PngDecoder::new(std::io::Cursor::new(data))
        .map_err(|e| corrupt(format!("PNG: {e}")))?;
    if decoder.dimensions() != (width, height) {
        let (w, h) = decoder.dimensions();
        return Err(corrupt(format!(
            "PNG of {w}x{h} pixels where {width}x{height} are expected"
        )));
    }
    if decoder.color_type().has_alpha() {
        return Err(unsupported("PNG with transparency"));
    }
    let image = image::DynamicImage::from_decoder(decoder).map_err(|e| corrupt(format!("PNG: {e}")))?;
    let rgb = image.into_rgb8().into_raw();
    Ok(Tile {
        width,
        height,
        rgba: expand_to_rgba(rgb, 3, width as usize * height as usize),
    })
}

/// A BMP of exactly `width` × `height` pixels, 24 bits a pixel, uncompressed, stored bottom
/// row first: the only kind MIRAX writes (and OpenSlide reads).
pub(crate) fn decode_bmp24(data: &[u8], width: u32, height: u32) -> Result<Tile> {
    let u32_at = |at: usize| -> Result<u32> {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| corrupt("BMP header cut short"))
    };
    let u16_at = |at: usize| -> Result<u16> {
        data.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(|| corrupt("BMP header cut short"))
    };
    if data.get(..2) != Some(b"BM") {
        return Err(corrupt("BMP without its BM signature"));
    }
    let pixels_at = u32_at(10)? as usize;
    let header = (
        u32_at(14)?,
        u32_at(18)?,
        u32_at(22)?,
        u16_at(26)?,
        u16_at(28)?,
        u32_at(30)?,
    );
    if header != (40, width, height, 1, 24, 0) {
        return Err(unsupported(format!(
            "BMP other than {width}x{height}, 24 bits, uncompressed and bottom-up (header {header:?})"
        )));
    }
    let row_bytes = (width as usize * 3).div_ceil(4) * 4;
    let rows = data
        .get(pixels_at..)
        .filter(|rows| pixels_at >= 54 && rows.len() >= row_bytes * height as usize)
        .ok_or_else(|| corrupt("BMP pixels run past its data"))?;
    let mut rgba = Vec::with_capacity(width as usize * height as usize * 4);
    for row in rows.chunks_exact(row_bytes).take(height as usize).rev() {
        for bgr in row[..width as usize * 3].chunks_exact(3) {
            rgba.extend_from_slice(&[bgr[2], bgr[1], bgr[0], 255]);
        }
    }
    Ok(Tile { width, height, rgba })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bmp_is_read_bottom_up_and_lies_are_refused() {
        let (w, h) = (2u32, 2u32);
        let row = 8; // 6 bytes of pixels padded to 4
        let mut bmp = b"BM".to_vec();
        bmp.extend((54 + row * 2u32).to_le_bytes());
        bmp.extend([0; 4]);
        bmp.extend(54u32.to_le_bytes());
        bmp.extend(40u32.to_le_bytes());
        bmp.extend(w.to_le_bytes());
        bmp.extend(h.to_le_bytes());
        bmp.extend(1u16.to_le_bytes());
        bmp.extend(24u16.to_le_bytes());
        bmp.extend([0; 24]);
        bmp.extend([1, 2, 3, 4, 5, 6, 0, 0]); // bottom row, BGR
        bmp.extend([7, 8, 9, 10, 11, 12, 0, 0]); // top row
        let t = super::decode_bmp24(&bmp, w, h).unwrap();
        assert_eq!(&t.rgba[..8], &[9, 8, 7, 255, 12, 11, 10, 255]);
        assert_eq!(&t.rgba[8..], &[3, 2, 1, 255, 6, 5, 4, 255]);
        assert!(super::decode_bmp24(&bmp, 3, 2).is_err());
        assert!(super::decode_bmp24(&bmp[..60], w, h).is_err());
    }
}
