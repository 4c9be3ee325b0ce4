//! heatmap.png: the slide at thumbnail size with the tumour probability over its tissue in
//! viridis, a colour bar (0 to 1) beside it and a scale bar in mm on it.

use super::colormap::viridis;
use super::font::{draw_text, text_width};
use super::ProbabilityGrid;
use crate::slide::resample::box_downsample;
use crate::slide::{Slide, SlideError, SlideErrorKind};
use rayon::prelude::*;
use std::path::Path;

/// Opacity of the probability colours over the tissue: from 0.15 at 0 (the tissue stays
/// readable where nothing was found) to 0.75 at 1.
fn alpha(p: f32) -> f32 {
    0.15 + 0.6 * p.clamp(0.0, 1.0)
}
/// Width of the strip right of the image holding the colour bar.
const MARGIN: usize = 90;

/// The slide as RGB at about `max_side` pixels on its long side (never upsampled), read from
/// the coarsest level fine enough, band by band. Returns pixels, width, height and the
/// level-0 pixels per thumbnail pixel.
pub fn thumbnail(slide: &Slide, max_side: u64) -> Result<(Vec<u8>, usize, usize, f64), SlideError> {
    let (w0, h0) = slide.dimensions();
    let target = (w0.max(h0) as f64 / max_side as f64).max(1.0);
    let level = slide.best_level_for_downsample(target);
    let l = &slide.levels()[level];
    let factor = (target / l.downsample).floor().max(1.0) as usize;
    let (lw, lh) = (l.width as usize, l.height as usize);
    let band_rows = factor * 64;
    let mut out = Vec::new();
    let (mut tw, mut th) = (0, 0);
    for y in (0..lh).step_by(band_rows) {
        let rows = band_rows.min(lh - y);
        // Half a pixel in, so that level row y maps back to y exactly.
        let region = slide.read_region(
            level,
            0,
            ((y as f64 + 0.5) * l.downsample) as i64,
            lw as u32,
            rows as u32,
        )?;
        let rgb = region.to_rgb_on_white();
        let (small, w, h) = box_downsample(&rgb, lw, rows, 3, factor);
        out.extend(small);
        tw = w;
        th += h;
    }
    Ok((out, tw, th, l.downsample * factor as f64))
}

/// Renders and writes the heatmap.
pub fn write_heatmap(
    path: &Path,
    slide: &Slide,
    grid: &ProbabilityGrid,
    max_side: u64,
) -> Result<(), SlideError> {
    let (thumb, tw, th, scale) = thumbnail(slide, max_side)?;
    let (w, h) = (tw + MARGIN, th.max(200));
    let mut img = vec![255u8; w * h * 3];
    img.par_chunks_mut(w * 3)
        .take(th)
        .enumerate()
        .for_each(|(y, row)| {
            for x in 0..tw {
                let src = &thumb[(y * tw + x) * 3..][..3];
                let dst = &mut row[x * 3..][..3];
                match grid.at((x as f64 + 0.5) * scale, (y as f64 + 0.5) * scale) {
                    Some(p) => {
                        let (c, a) = (viridis(p), alpha(p));
                        for i in 0..3 {
                            dst[i] = (a * c[i] as f32 + (1.0 - a) * src[i] as f32).round() as u8;
                        }
                    }
                    None => dst.copy_from_slice(src),
                }
            }
        });
    draw_colour_bar(&mut img, w, tw + 16, 16, (h - 32).min(300));
    draw_scale_bar(&mut img, w, tw, th, grid.mpp * scale);
    let png = image::RgbImage::from_raw(w as u32, h as u32, img).expect("buffer has its size");
    let mut bytes = Vec::new();
    png.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| SlideError::new(path, SlideErrorKind::BadRequest(e.to_string())))?;
    crate::atomic::write_bytes(path, &bytes).map_err(|e| SlideError::new(path, SlideErrorKind::Io(e)))
}

/// A vertical viridis bar, 1 at the top, labelled 1, 0.5 and 0.
fn draw_colour_bar(img: &mut [u8], width: usize, x: usize, y: usize, height: usize) {
    let bar = 18;
    for dy in 0..height {
        let c = viridis(1.0 - dy as f32 / (height - 1).max(1) as f32);
        for dx in 0..bar {
            img[((y + dy) * width + x + dx) * 3..][..3].copy_from_slice(&c);
        }
    }
    for (label, at) in [("1", 0usize), ("0.5", height / 2), ("0", height - 1)] {
        draw_text(
            img,
            width,
            x + bar + 6,
            (y + at).saturating_sub(7),
            label,
            2,
            [0, 0, 0],
        );
    }
}

/// A bar of a round length in mm (about a fifth of the image's width) at the bottom left,
/// black on a white box, labelled.
fn draw_scale_bar(img: &mut [u8], width: usize, image_w: usize, image_h: usize, um_per_px: f64) {
    let mm_per_px = um_per_px / 1000.0;
    let wanted = image_w as f64 / 5.0 * mm_per_px;
    let length_mm = [0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
        .into_iter()
        .rev()
        .find(|&l| l <= wanted)
        .unwrap_or(0.05);
    let bar_px = (length_mm / mm_per_px).round() as usize;
    let label = if length_mm >= 1.0 {
        format!("{length_mm:.0} mm")
    } else {
        format!("{} µm", (length_mm * 1000.0).round())
    };
    let box_w = bar_px.max(text_width(&label, 2)) + 16;
    let box_h = 40;
    if box_w + 8 > image_w || box_h + 8 > image_h {
        return;
    }
    let (x0, y0) = (8, image_h - box_h - 8);
    for y in y0..y0 + box_h {
        for x in x0..x0 + box_w {
            img[(y * width + x) * 3..][..3].copy_from_slice(&[255, 255, 255]);
        }
    }
    for y in y0 + 26..y0 + 32 {
        for x in x0 + 8..x0 + 8 + bar_px {
            img[(y * width + x) * 3..][..3].copy_from_slice(&[0, 0, 0]);
        }
    }
    draw_text(img, width, x0 + 8, y0 + 6, &label, 2, [0, 0, 0]);
}
