//! Text for the labels drawn on pictures (heatmap scale bars, benchmark plots): the public
//! domain 8 × 8 bitmap font of the font8x8 crate, ASCII and Latin-1 (µ included).

use font8x8::UnicodeFonts;

/// One glyph's rows, top to bottom, the low bit leftmost.
fn glyph(c: char) -> Option<[u8; 8]> {
    font8x8::BASIC_FONTS
        .get(c)
        .or_else(|| font8x8::LATIN_FONTS.get(c))
}

/// Width in pixels of `text` drawn at `scale`.
pub fn text_width(text: &str, scale: usize) -> usize {
    text.chars().count() * 8 * scale
}

/// Draws `text` with its top-left at (x, y) into an RGB image `width` pixels wide; pixels
/// outside the image are skipped, characters without a glyph left blank.
pub fn draw_text(
    img: &mut [u8],
    width: usize,
    x: usize,
    y: usize,
    text: &str,
    scale: usize,
    colour: [u8; 3],
) {
    let height = img.len() / (3 * width);
    for (i, c) in text.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        for (gy, bits) in rows.iter().enumerate() {
            for gx in 0..8 {
                if bits & (1 << gx) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (x + (i * 8 + gx) * scale + dx, y + gy * scale + dy);
                        if px < width && py < height {
                            img[(py * width + px) * 3..][..3].copy_from_slice(&colour);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_letters_digits_and_micro() {
        let width = 80;
        let mut img = vec![0u8; width * 8 * 3];
        draw_text(&mut img, width, 0, 0, "FP 2 µm", 1, [255, 255, 255]);
        // Every character but the spaces leaves pixels in its cell.
        for (i, c) in "FP 2 µm".chars().enumerate() {
            let lit = (0..8).any(|y| (0..8).any(|x| img[(y * width + i * 8 + x) * 3] == 255));
            assert_eq!(lit, c != ' ', "{c:?}");
        }
        assert_eq!(text_width("FP 2 µm", 2), 7 * 16);
    }
}
