//! heatmap.png: the slide at thumbnail size (at most `max_side` pixels on its long side) with
//! the tumour probability in viridis over its tissue and the tumour regions at the threshold
//! outlined, above a legend: the titled colour bar, the outline's key and a scale bar, their
//! labels at least 2% of the picture's long side (legible in index.html's cards).

use super::colormap::viridis;
use super::font::{draw_text, text_width};
use super::ProbabilityGrid;
use crate::analysis::tissue::TissueMask;
use crate::slide::resample::{box_downsample, resize_rgb};
use crate::slide::{Slide, SlideError, SlideErrorKind};
use rayon::prelude::*;
use std::path::Path;

/// Opacity of the probability colours over the tissue: from 0.15 at 0 (the tissue stays
/// readable where nothing was found) to 0.75 at 1.
pub fn tint_alpha(p: f32) -> f32 {
    0.15 + 0.6 * p.clamp(0.0, 1.0)
}

/// The outline of the regions at the threshold: red, a hue viridis never takes.
pub const OUTLINE: [u8; 3] = [230, 20, 60];

/// The legend's title, above the colour bar.
pub const TITLE: &str = "tumour probability";

/// The slide at thumbnail size, as RGB.
pub struct Thumbnail {
    pub rgb: Vec<u8>,
    pub width: usize,
    pub height: usize,
    /// Level-0 pixels per thumbnail pixel.
    pub scale: f64,
}

/// The slide at `max_side` pixels on its long side (never upsampled): the coarsest level at
/// least that fine is read band by band and box-averaged by a whole factor, then resampled the
/// rest of the way, since a pyramid's levels rarely land on the size (CMU-1-Small-Region has
/// a single level, 2220 × 2967).
pub fn thumbnail(slide: &Slide, max_side: u64) -> Result<Thumbnail, SlideError> {
    let (w0, h0) = slide.dimensions();
    let max_side = max_side.max(1) as usize;
    let target = (w0.max(h0) as f64 / max_side as f64).max(1.0);
    let level = slide.best_level_for_downsample(target);
    let l = &slide.levels()[level];
    let factor = (target / l.downsample).floor().max(1.0) as usize;
    let (lw, lh) = (l.width as usize, l.height as usize);
    let band_rows = factor * 64;
    let mut rgb = Vec::new();
    let (mut bw, mut bh) = (0, 0);
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
        let (small, w, h) = box_downsample(&region.to_rgb_on_white(), lw, rows, 3, factor);
        rgb.extend(small);
        bw = w;
        bh += h;
    }
    let scale = l.downsample * factor as f64;
    let long = bw.max(bh);
    if long <= max_side {
        return Ok(Thumbnail {
            rgb,
            width: bw,
            height: bh,
            scale,
        });
    }
    let r = max_side as f64 / long as f64;
    let side = |v: usize| ((v as f64 * r).round() as usize).clamp(1, max_side) as u32;
    let (width, height) = (side(bw), side(bh));
    Ok(Thumbnail {
        rgb: resize_rgb(&rgb, bw as u32, bh as u32, width, height),
        width: width as usize,
        height: height as usize,
        scale: scale / r,
    })
}

/// A rendered heatmap.
pub struct Heatmap {
    pub image: image::RgbImage,
    /// The cap height of the legend's labels, in pixels.
    pub label_px: f32,
}

/// Renders and writes the heatmap.
pub fn write_heatmap(
    path: &Path,
    slide: &Slide,
    grid: &ProbabilityGrid,
    mask: &TissueMask,
    threshold: f32,
    max_side: u64,
) -> Result<(), SlideError> {
    let heatmap = render(&thumbnail(slide, max_side)?, grid, mask, threshold);
    let mut bytes = Vec::new();
    heatmap
        .image
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| SlideError::new(path, SlideErrorKind::BadRequest(e.to_string())))?;
    crate::util::atomic::write_bytes(path, &bytes).map_err(|e| SlideError::new(path, SlideErrorKind::Io(e)))
}

/// The thumbnail tinted where the mask has tissue and the grid a probability, the regions at
/// `threshold` outlined, with the legend below.
pub fn render(thumb: &Thumbnail, grid: &ProbabilityGrid, mask: &TissueMask, threshold: f32) -> Heatmap {
    let (tw, th, s) = (thumb.width, thumb.height, thumb.scale);
    // Per thumbnail pixel: its share of tissue and the probability at its centre.
    let (tissue, probability): (Vec<f32>, Vec<Option<f32>>) = (0..tw * th)
        .into_par_iter()
        .map(|i| {
            let (x, y) = (i % tw, i / tw);
            (
                tissue_share(mask, s, x, y),
                grid.at((x as f64 + 0.5) * s, (y as f64 + 0.5) * s),
            )
        })
        .unzip();
    let region: Vec<bool> = tissue
        .iter()
        .zip(&probability)
        .map(|(&t, p)| t >= 0.5 && p.is_some_and(|p| p >= threshold))
        .collect();
    let edge = inner_edge(&region, tw, th, (tw.max(th) / 600).max(2));

    let legend = Legend::new(tw, th, grid.mpp * s, threshold);
    let (w, h) = (tw.max(legend.width), th + legend.height);
    let mut img = vec![255u8; w * h * 3];
    img.par_chunks_mut(w * 3)
        .take(th)
        .enumerate()
        .for_each(|(y, row)| {
            for x in 0..tw {
                let i = y * tw + x;
                let src = &thumb.rgb[i * 3..][..3];
                let dst = &mut row[x * 3..][..3];
                match probability[i] {
                    _ if edge[i] => dst.copy_from_slice(&OUTLINE),
                    Some(p) if tissue[i] > 0.0 => {
                        let (c, a) = (viridis(p), tint_alpha(p) * tissue[i]);
                        for ((d, &c), &s) in dst.iter_mut().zip(&c).zip(src) {
                            *d = (a * c as f32 + (1.0 - a) * s as f32).round() as u8;
                        }
                    }
                    _ => dst.copy_from_slice(src),
                }
            }
        });
    legend.draw(&mut img, w, th);
    Heatmap {
        image: image::RgbImage::from_raw(w as u32, h as u32, img).expect("buffer has its size"),
        label_px: legend.cap,
    }
}

/// How much of thumbnail pixel (x, y) is tissue, 0 to 1. A mask finer than the thumbnail is
/// averaged over the pixel; a coarser one is interpolated and its half level sharpened to
/// one pixel, so that the tint follows the tissue's outline, not the mask's steps.
fn tissue_share(mask: &TissueMask, scale: f64, x: usize, y: usize) -> f32 {
    if mask.downsample <= scale {
        return mask.fraction(x as f64 * scale, y as f64 * scale, scale, scale) as f32;
    }
    let at = |c: i64, r: i64| -> f64 {
        let inside = c >= 0 && r >= 0 && (c as usize) < mask.width && (r as usize) < mask.height;
        (inside && mask.tissue[r as usize * mask.width + c as usize]) as u8 as f64
    };
    // In mask pixels, from the centres of mask pixels.
    let mx = (x as f64 + 0.5) * scale / mask.downsample - 0.5;
    let my = (y as f64 + 0.5) * scale / mask.downsample - 0.5;
    let (c, r) = (mx.floor() as i64, my.floor() as i64);
    let (fx, fy) = (mx - c as f64, my - r as f64);
    let top = at(c, r) * (1.0 - fx) + at(c + 1, r) * fx;
    let bottom = at(c, r + 1) * (1.0 - fx) + at(c + 1, r + 1) * fx;
    let smooth = top * (1.0 - fy) + bottom * fy;
    ((smooth - 0.5) * mask.downsample / scale + 0.5).clamp(0.0, 1.0) as f32
}

/// The pixels of `region` within `thickness` steps (4-neighbour) of its outside; the image's
/// border counts as outside, so outlines close there.
fn inner_edge(region: &[bool], w: usize, h: usize, thickness: usize) -> Vec<bool> {
    let mut inner = region.to_vec();
    for _ in 0..thickness {
        let before = inner.clone();
        let at = |x: usize, y: usize| before[y * w + x];
        for y in 0..h {
            for x in 0..w {
                inner[y * w + x] = at(x, y)
                    && x > 0
                    && y > 0
                    && x + 1 < w
                    && y + 1 < h
                    && at(x - 1, y)
                    && at(x + 1, y)
                    && at(x, y - 1)
                    && at(x, y + 1);
            }
        }
    }
    region.iter().zip(&inner).map(|(&r, &i)| r && !i).collect()
}

/// The strip below the slide, in three columns: the title over a horizontal colour bar over
/// its ticks; the outline's key; the scale bar over its length.
struct Legend {
    /// Cap height of every label.
    cap: f32,
    width: usize,
    height: usize,
    /// Left and width of the colour bar.
    bar_x: usize,
    bar_w: usize,
    key_x: usize,
    key_label: String,
    scale_x: usize,
    scale_px: usize,
    scale_label: String,
    /// Thickness of the key's and the threshold mark's lines.
    line: usize,
    threshold: f32,
}

const KEY_TITLE: &str = "tumour region";

impl Legend {
    /// For a `tw` × `th` slide picture of `um_per_px` µm per pixel.
    fn new(tw: usize, th: usize, um_per_px: f64, threshold: f32) -> Legend {
        // 2.5% of the slide's long side: the legend adds at most a fifth of that side, so
        // labels stay above 2% of the whole picture's.
        let cap = (0.025 * tw.max(th) as f32).ceil().max(12.0);
        let unit = cap.round() as usize;
        let bar_w = text_width(TITLE, cap).max(10 * unit);
        let key_label = format!("p ≥ {threshold}");
        let key_x = unit + bar_w + 2 * unit;
        let key_w = text_width(KEY_TITLE, cap).max(text_width(&key_label, cap));
        let (scale_px, scale_label) = scale_bar(tw as f64 / 5.0, um_per_px);
        let scale_x = key_x + key_w + 2 * unit;
        let scale_w = scale_px.max(text_width(&scale_label, cap));
        Legend {
            cap,
            width: scale_x + scale_w + unit,
            height: 6 * unit,
            bar_x: unit,
            bar_w,
            key_x,
            key_label,
            scale_x,
            scale_px,
            scale_label,
            line: (unit / 10).max(2),
            threshold,
        }
    }

    /// Draws the legend with its top at row `y0` of an RGB image `width` pixels wide.
    fn draw(&self, img: &mut [u8], width: usize, y0: usize) {
        let (cap, unit) = (self.cap, self.cap.round() as usize);
        let (title_y, bar_y, bar_h) = (y0 + unit, y0 + unit * 27 / 10, unit);
        let tick_y = bar_y + bar_h + unit / 2;
        let black = [0, 0, 0];
        let mut fill = |x0: usize, y0: usize, w: usize, h: usize, colour: [u8; 3]| {
            for y in y0..y0 + h {
                img[(y * width + x0) * 3..(y * width + x0 + w) * 3]
                    .chunks_exact_mut(3)
                    .for_each(|p| p.copy_from_slice(&colour));
            }
        };
        // The colour bar, 0 at the left.
        let t = |x: usize| x as f32 / (self.bar_w - 1) as f32;
        for x in 0..self.bar_w {
            fill(self.bar_x + x, bar_y, 1, bar_h, viridis(t(x)));
        }
        // The threshold marked on the bar in the outline's colour.
        let mark = (self.threshold.clamp(0.0, 1.0) * (self.bar_w - self.line) as f32).round() as usize;
        fill(self.bar_x + mark, bar_y, self.line, bar_h, OUTLINE);
        // The key: a box outlined as the regions are.
        let (key_w, l) = (2 * unit, self.line);
        fill(self.key_x, bar_y, key_w, l, OUTLINE);
        fill(self.key_x, bar_y + bar_h - l, key_w, l, OUTLINE);
        fill(self.key_x, bar_y, l, bar_h, OUTLINE);
        fill(self.key_x + key_w - l, bar_y, l, bar_h, OUTLINE);
        // The scale bar, level with the middle of the colour bar.
        fill(self.scale_x, bar_y + bar_h / 3, self.scale_px, bar_h / 3, black);
        draw_text(img, width, self.bar_x, title_y, TITLE, cap, black);
        draw_text(img, width, self.key_x, title_y, KEY_TITLE, cap, black);
        draw_text(img, width, self.key_x, tick_y, &self.key_label, cap, black);
        draw_text(img, width, self.scale_x, tick_y, &self.scale_label, cap, black);
        for (label, at) in [("0", 0.0), ("0.5", 0.5), ("1", 1.0)] {
            let centre = self.bar_x + (at * (self.bar_w - 1) as f32).round() as usize;
            let x = centre.saturating_sub(text_width(label, cap) / 2);
            draw_text(img, width, x, tick_y, label, cap, black);
        }
    }
}

/// The scale bar: a round length (1, 2 or 5 times a power of ten, 10 µm to 50 mm) of at most
/// `max_px` pixels of `um_per_px` µm, as its pixels and its label.
fn scale_bar(max_px: f64, um_per_px: f64) -> (usize, String) {
    let wanted_um = max_px * um_per_px;
    let length_um = [
        10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4,
    ]
    .into_iter()
    .rev()
    .find(|&l| l <= wanted_um)
    .unwrap_or(10.0);
    let label = if length_um >= 1000.0 {
        format!("{} mm", length_um / 1000.0)
    } else {
        format!("{length_um} µm")
    };
    (((length_um / um_per_px).round() as usize).max(1), label)
}
