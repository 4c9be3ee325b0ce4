//! Text for the labels drawn on pictures (the heatmap's legend, the benchmark plots): Roboto
//! Regular (assets/fonts/, Apache-2.0), embedded in the binary and rasterised with
//! anti-aliasing by ab_glyph. Sizes are cap heights: the height in pixels of a capital or a
//! digit, which is what a reader sees as the size of a label.

use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};
use std::sync::OnceLock;

static ROBOTO: &[u8] = include_bytes!("../../assets/fonts/Roboto-Regular.ttf");

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(ROBOTO).expect("the embedded Roboto parses"))
}

/// The ab_glyph scale (ascent to descent in pixels) whose capitals are `cap` pixels tall.
fn scale_for(cap: f32) -> PxScale {
    // Capitals per unit of scale, measured once on "H" (flat top and bottom).
    static CAP_PER_SCALE: OnceLock<f32> = OnceLock::new();
    let ratio = *CAP_PER_SCALE.get_or_init(|| {
        let f = font();
        // Unscaled bounds run from the top (min) down to the bottom (max) in y-up units.
        let h = f
            .outline(f.glyph_id('H'))
            .map_or(0.7, |o| o.bounds.height().abs());
        h / f.height_unscaled()
    });
    PxScale::from(cap / ratio)
}

/// Each glyph of `text` with its pen position (left of the glyph, from the text's left).
fn layout(text: &str, cap: f32) -> (Vec<(GlyphId, f32)>, f32) {
    let f = font().as_scaled(scale_for(cap));
    let mut caret = 0.0;
    let mut previous: Option<GlyphId> = None;
    let glyphs = text
        .chars()
        .map(|c| {
            let id = f.glyph_id(c);
            if let Some(p) = previous {
                caret += f.kern(p, id);
            }
            let at = caret;
            caret += f.h_advance(id);
            previous = Some(id);
            (id, at)
        })
        .collect();
    (glyphs, caret)
}

/// Width in pixels of `text` with capitals `cap` pixels tall.
pub fn text_width(text: &str, cap: f32) -> usize {
    layout(text, cap).1.ceil() as usize
}

/// Draws `text` into an RGB image `width` pixels wide, its left at `x` and the top of its
/// capitals at `y` (descenders reach about 0.3 · `cap` below the capitals, accents above),
/// blending `colour` over what is there by each pixel's coverage. Pixels outside the image
/// are skipped.
pub fn draw_text(img: &mut [u8], width: usize, x: usize, y: usize, text: &str, cap: f32, colour: [u8; 3]) {
    let height = img.len() / (3 * width);
    let scale = scale_for(cap);
    let baseline = y as f32 + cap;
    let (glyphs, _) = layout(text, cap);
    for (id, at) in glyphs {
        let glyph = id.with_scale_and_position(scale, point(x as f32 + at, baseline));
        let Some(outlined) = font().outline_glyph(glyph) else {
            continue; // a space, or a character the font lacks
        };
        let bounds = outlined.px_bounds();
        outlined.draw(|gx, gy, coverage| {
            let (px, py) = (bounds.min.x as i64 + gx as i64, bounds.min.y as i64 + gy as i64);
            if px < 0 || py < 0 || px as usize >= width || py as usize >= height {
                return;
            }
            let a = coverage.clamp(0.0, 1.0);
            let dst = &mut img[(py as usize * width + px as usize) * 3..][..3];
            for (d, &c) in dst.iter_mut().zip(&colour) {
                *d = (a * c as f32 + (1.0 - a) * *d as f32).round() as u8;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The box of the pixels `draw_text` darkened on white: (left, top, right, bottom),
    /// exclusive ends.
    fn ink(text: &str, cap: f32) -> (usize, usize, usize, usize) {
        let (width, height) = (text_width(text, cap) + 40, (cap * 3.0) as usize);
        let mut img = vec![255u8; width * height * 3];
        draw_text(&mut img, width, 20, cap as usize, text, cap, [0, 0, 0]);
        let dark: Vec<(usize, usize)> = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .filter(|&(x, y)| img[(y * width + x) * 3] < 128)
            .collect();
        let (xs, ys) = (dark.iter().map(|p| p.0), dark.iter().map(|p| p.1));
        (
            xs.clone().min().unwrap(),
            ys.clone().min().unwrap(),
            xs.max().unwrap() + 1,
            ys.max().unwrap() + 1,
        )
    }

    #[test]
    fn digits_and_capitals_are_as_tall_as_asked() {
        for cap in [9.0, 14.0, 32.0, 40.0] {
            for text in ["0.5", "HE 1 mm"] {
                let (left, top, right, bottom) = ink(text, cap);
                let h = (bottom - top) as f32;
                // Round digits overshoot the flat capitals a little.
                assert!(
                    h >= cap - 1.0 && h <= cap * 1.1 + 1.0,
                    "{text:?} at {cap}: {h} px tall"
                );
                assert!(
                    right - left <= text_width(text, cap) + 1,
                    "{text:?} wider than said"
                );
                assert!(
                    top + 1 >= cap as usize && top <= cap as usize + 2,
                    "{text:?} top at {top}"
                );
            }
        }
    }

    #[test]
    fn the_labels_characters_have_glyphs() {
        for c in "tumour probability µm ≥ 0123456789.,()-"
            .chars()
            .filter(|c| *c != ' ')
        {
            assert_ne!(font().glyph_id(c).0, 0, "{c:?} has no glyph");
        }
    }
}
