//! Finding tissue on the glass: Otsu's threshold on saturation at low resolution, then
//! specks removed and small holes filled. Glass is bright and grey (low saturation); stained
//! tissue is coloured, whatever its brightness. Pen ink (blue, green, black marker) is
//! coloured too and is excluded first, by its optical density (see [`is_pen_ink`]).

use crate::slide::{Slide, SlideError};
use rayon::prelude::*;
use std::sync::OnceLock;

#[derive(Clone, Debug)]
pub struct TissueOptions {
    /// Size of a mask pixel in µm (the slide is read at the level closest to it, never finer
    /// than needed).
    pub mask_um: f64,
    /// Connected tissue smaller than this (µm²) is a speck and dropped.
    pub min_tissue_um2: f64,
    /// Background enclosed by tissue smaller than this (µm²) is a hole and filled.
    pub max_hole_um2: f64,
}

impl Default for TissueOptions {
    fn default() -> Self {
        TissueOptions {
            mask_um: 8.0,
            min_tissue_um2: 0.05e6,
            max_hole_um2: 0.02e6,
        }
    }
}

/// A tissue mask: `true` where there is tissue, one pixel per `downsample` level-0 pixels.
#[derive(Clone, Debug)]
pub struct TissueMask {
    pub width: usize,
    pub height: usize,
    pub downsample: f64,
    pub tissue: Vec<bool>,
    /// The saturation threshold Otsu chose (0–255).
    pub threshold: u8,
    /// The median brightness (mean of R, G and B, 0–255) of the mask's pixels: high where
    /// glass shows (brightfield), low on a dark background (fluorescence).
    pub median_brightness: u8,
}

impl TissueMask {
    /// Fraction of tissue in the level-0 rectangle (x, y, w, h).
    pub fn fraction(&self, x: f64, y: f64, w: f64, h: f64) -> f64 {
        let d = self.downsample;
        let (c0, r0) = (
            (x / d).floor().max(0.0) as usize,
            (y / d).floor().max(0.0) as usize,
        );
        let (c1, r1) = (((x + w) / d).ceil() as usize, ((y + h) / d).ceil() as usize);
        let (c1, r1) = (c1.min(self.width), r1.min(self.height));
        if c0 >= c1 || r0 >= r1 {
            return 0.0;
        }
        let inside: usize = (r0..r1)
            .map(|r| {
                self.tissue[r * self.width + c0..r * self.width + c1]
                    .iter()
                    .filter(|&&t| t)
                    .count()
            })
            .sum();
        inside as f64 / ((c1 - c0) * (r1 - r0)) as f64
    }
}

/// Whether a colour (averaged over a mask pixel) is pen ink rather than H&E. Judged by
/// optical density OD = −ln(v/255) per channel, where the stains have fixed ratios
/// (Ruifrok & Johnston): haematoxylin absorbs green a little more than red (×1.08) and eosin
/// far more, so H&E never absorbs red more than green. Blue and green inks do: blue ink
/// absorbs red well above green and hardly any blue, green ink red and blue but not green.
/// Black ink absorbs every channel strongly and evenly.
pub fn is_pen_ink(rgb: [u8; 3]) -> bool {
    let od = optical_densities();
    let [r, g, b] = rgb.map(|v| od[v as usize]);
    let blue_or_green = r > 0.4 && r > 1.15 * g && (b < 0.6 * r || g < 0.6 * r);
    let black = r.min(g).min(b) > 1.6 && r.max(g).max(b) < 1.5 * r.min(g).min(b);
    blue_or_green || black
}

/// −ln((v + 1) / 256) for each byte value: looked up, not computed for every mask pixel.
fn optical_densities() -> &'static [f32; 256] {
    static TABLE: OnceLock<[f32; 256]> = OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|v| -((v as f32 + 1.0) / 256.0).ln()))
}

/// A mask pixel's colour: `None` for pen ink (neither tissue nor glass), else its
/// saturation (0–255).
fn saturation_unless_ink(rgb: [u8; 3]) -> Option<u8> {
    if is_pen_ink(rgb) {
        return None;
    }
    let (max, min) = (
        rgb.iter().max().copied().unwrap_or(0),
        rgb.iter().min().copied().unwrap_or(0),
    );
    Some(if max == 0 {
        0
    } else {
        (255 * (max - min) as u32 / max as u32) as u8
    })
}

/// A mask pixel no level pixel covers (past the level's edge), for the brightness.
const NO_PIXELS: u16 = u16::MAX;

/// Computes the tissue mask of `slide`, whose level-0 pixels are `mpp` µm.
pub fn detect_tissue(slide: &Slide, mpp: f64, options: &TissueOptions) -> Result<TissueMask, SlideError> {
    let target = (options.mask_um / mpp).max(1.0);
    let level = slide.best_level_for_downsample(target);
    let l = &slide.levels()[level];
    // Read the level whole (it is small at this resolution) and average it down to the mask.
    let factor = (target / l.downsample).floor().max(1.0) as usize;
    let img = slide.read_region(level, 0, 0, l.width as u32, l.height as u32)?;
    let (w, h) = (
        (l.width as usize).div_ceil(factor),
        (l.height as usize).div_ceil(factor),
    );
    let mut saturation = vec![0u8; w * h];
    // Every pixel the level covers, ink or not (a dark background may look like black ink).
    let mut brightness = vec![NO_PIXELS; w * h];
    let mut opaque = vec![false; w * h];
    let (level_w, level_h) = (l.width as usize, l.height as usize);
    saturation
        .par_chunks_mut(w)
        .zip(brightness.par_chunks_mut(w))
        .zip(opaque.par_chunks_mut(w))
        .enumerate()
        .for_each(|(y, ((saturation, brightness), opaque))| {
            for x in 0..w {
                let (mut sum, mut n) = ([0u32; 3], 0u32);
                for sy in y * factor..((y + 1) * factor).min(level_h) {
                    let row = &img.data[sy * level_w * 4..(sy + 1) * level_w * 4];
                    for p in row[x * factor * 4..((x + 1) * factor).min(level_w) * 4].chunks_exact(4) {
                        if p[3] > 0 {
                            (0..3).for_each(|c| sum[c] += p[c] as u32);
                            n += 1;
                        }
                    }
                }
                if n > 0 {
                    let mean = sum.map(|s| (s / n) as u8);
                    brightness[x] = (mean[0] as u16 + mean[1] as u16 + mean[2] as u16) / 3;
                    if let Some(s) = saturation_unless_ink(mean) {
                        saturation[x] = s;
                        opaque[x] = true;
                    }
                }
            }
        });
    let threshold = otsu(
        saturation
            .iter()
            .zip(&opaque)
            .filter(|(_, &o)| o)
            .map(|(&s, _)| s),
    );
    let mut tissue: Vec<bool> = saturation
        .iter()
        .zip(&opaque)
        .map(|(&s, &o)| o && s > threshold)
        .collect();
    let px_um2 = (l.downsample * factor as f64 * mpp).powi(2);
    remove_small(
        &mut tissue,
        w,
        h,
        true,
        (options.min_tissue_um2 / px_um2).ceil() as usize,
    );
    remove_small(
        &mut tissue,
        w,
        h,
        false,
        (options.max_hole_um2 / px_um2).ceil() as usize,
    );
    let mut seen: Vec<u16> = brightness.into_iter().filter(|&b| b != NO_PIXELS).collect();
    let middle = seen.len() / 2;
    let median_brightness = if seen.is_empty() {
        255
    } else {
        *seen.select_nth_unstable(middle).1 as u8
    };
    Ok(TissueMask {
        width: w,
        height: h,
        downsample: l.downsample * factor as f64,
        tissue,
        threshold,
        median_brightness,
    })
}

/// Otsu's threshold: the value splitting the histogram into two classes of maximal
/// between-class variance. Pixels above it are the foreground.
pub fn otsu(values: impl Iterator<Item = u8>) -> u8 {
    let mut hist = [0u64; 256];
    values.for_each(|v| hist[v as usize] += 1);
    let total: u64 = hist.iter().sum();
    let sum_all: f64 = hist.iter().enumerate().map(|(i, &c)| i as f64 * c as f64).sum();
    let (mut weight_low, mut sum_low) = (0u64, 0f64);
    let (mut best, mut best_t) = (-1f64, 0u8);
    for (t, &count) in hist.iter().enumerate() {
        weight_low += count;
        sum_low += t as f64 * count as f64;
        let weight_high = total - weight_low;
        if weight_low == 0 || weight_high == 0 {
            continue;
        }
        let (mean_low, mean_high) = (
            sum_low / weight_low as f64,
            (sum_all - sum_low) / weight_high as f64,
        );
        let between = weight_low as f64 * weight_high as f64 * (mean_low - mean_high).powi(2);
        if between > best {
            best = between;
            best_t = t as u8;
        }
    }
    best_t
}

/// Flips 4-connected components of `value` smaller than `min_size` pixels to `!value`. For
/// holes (`value == false`), components touching the border are background, never holes.
/// Components are found as runs of `value` along rows, joined (union–find) where runs of
/// neighbouring rows share a column: a few thousand runs instead of millions of pixels.
fn remove_small(mask: &mut [bool], w: usize, h: usize, value: bool, min_size: usize) {
    // Runs (row, first column, end column), row by row; `row_start[y]` is row y's first.
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    let mut row_start = Vec::with_capacity(h + 1);
    for y in 0..h {
        row_start.push(runs.len());
        let row = &mask[y * w..(y + 1) * w];
        let mut x = 0;
        while x < w {
            let begin = x;
            while x < w && row[x] == value {
                x += 1;
            }
            if x > begin {
                runs.push((y, begin, x));
            }
            x += 1;
        }
    }
    row_start.push(runs.len());

    let mut parent: Vec<usize> = (0..runs.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for y in 1..h {
        let (mut above, mut below) = (row_start[y - 1], row_start[y]);
        while above < row_start[y] && below < row_start[y + 1] {
            let ((_, a0, a1), (_, b0, b1)) = (runs[above], runs[below]);
            if a0 < b1 && b0 < a1 {
                let (ra, rb) = (root(&mut parent, above), root(&mut parent, below));
                parent[ra.max(rb)] = ra.min(rb);
            }
            if a1 < b1 {
                above += 1;
            } else {
                below += 1;
            }
        }
    }

    let mut size = vec![0usize; runs.len()];
    let mut touches_border = vec![false; runs.len()];
    for (i, &(y, x0, x1)) in runs.iter().enumerate() {
        let r = root(&mut parent, i);
        size[r] += x1 - x0;
        touches_border[r] |= y == 0 || y == h - 1 || x0 == 0 || x1 == w;
    }
    for (i, &(y, x0, x1)) in runs.iter().enumerate() {
        let r = root(&mut parent, i);
        let is_hole_at_border = !value && touches_border[r];
        if size[r] < min_size && !is_hole_at_border {
            mask[y * w + x0..y * w + x1].fill(!value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pen_ink_is_told_from_every_h_and_e_colour() {
        // H&E by Beer–Lambert with Ruifrok & Johnston's vectors, light to very heavy, alone
        // and mixed: never ink.
        let (h, e) = ([0.650f32, 0.704, 0.286], [0.072f32, 0.990, 0.105]);
        for i in 0..=16 {
            for j in 0..=16 {
                let (a, b) = (i as f32 * 0.2, j as f32 * 0.2);
                let rgb = [0, 1, 2].map(|c| (255.0 * (-(a * h[c] + b * e[c])).exp()) as u8);
                assert!(!is_pen_ink(rgb), "H {a} E {b}: {rgb:?} taken for ink");
            }
        }
        // Glass, and the inks: blue ballpoint and marker, green marker, black marker.
        assert!(!is_pen_ink([245, 245, 245]));
        for ink in [
            [30, 60, 160],
            [20, 40, 120],
            [40, 140, 60],
            [60, 150, 110],
            [20, 20, 25],
            [35, 30, 40],
        ] {
            assert!(is_pen_ink(ink), "{ink:?} not taken for ink");
        }
    }

    #[test]
    fn otsu_splits_two_populations() {
        let values = (0..1000).map(|i| if i % 3 == 0 { 200 } else { 20 });
        let t = otsu(values);
        assert!((20..200).contains(&t), "{t}");
    }

    /// Pixel-by-pixel flood fill: the definition `remove_small` must agree with.
    fn remove_small_by_flood_fill(mask: &mut [bool], w: usize, h: usize, value: bool, min_size: usize) {
        let mut seen = vec![false; mask.len()];
        for start in 0..mask.len() {
            if seen[start] || mask[start] != value {
                continue;
            }
            let (mut stack, mut component, mut touches_border) = (vec![start], Vec::new(), false);
            seen[start] = true;
            while let Some(i) = stack.pop() {
                component.push(i);
                let (x, y) = (i % w, i / w);
                touches_border |= x == 0 || y == 0 || x == w - 1 || y == h - 1;
                let neighbours = [
                    (x > 0).then(|| i - 1),
                    (x + 1 < w).then(|| i + 1),
                    (y > 0).then(|| i - w),
                    (y + 1 < h).then(|| i + w),
                ];
                for j in neighbours.into_iter().flatten() {
                    if !seen[j] && mask[j] == value {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
            if component.len() < min_size && (value || !touches_border) {
                component.iter().for_each(|&i| mask[i] = !value);
            }
        }
    }

    #[test]
    fn runs_find_the_components_a_flood_fill_finds() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for case in 0..200 {
            let (w, h) = (1 + case % 23, 1 + case % 17);
            // Random masks of varying density, blobby enough for long runs and holes.
            let density = (case % 5) as u64 + 3;
            let mask: Vec<bool> = (0..w * h)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state % 10 < density
                })
                .collect();
            for value in [true, false] {
                for min_size in [1, 2, 3, 5, 9, 40] {
                    let (mut by_runs, mut by_fill) = (mask.clone(), mask.clone());
                    remove_small(&mut by_runs, w, h, value, min_size);
                    remove_small_by_flood_fill(&mut by_fill, w, h, value, min_size);
                    assert_eq!(by_runs, by_fill, "{w}x{h} value {value} min {min_size}");
                }
            }
        }
    }

    #[test]
    fn specks_go_and_holes_fill() {
        // 8x6: a 1-pixel speck at (0,0); a block with a 1-pixel hole at (5,2).
        let (w, h) = (8, 6);
        let mut m = vec![false; w * h];
        m[0] = true;
        for y in 1..5 {
            for x in 3..8 {
                m[y * w + x] = true;
            }
        }
        m[2 * w + 5] = false;
        remove_small(&mut m, w, h, true, 2);
        remove_small(&mut m, w, h, false, 2);
        assert!(!m[0], "speck removed");
        assert!(m[2 * w + 5], "hole filled");
        assert!(!m[w], "background at the border stays");
    }
}
