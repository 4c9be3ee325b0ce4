//! Shrinking images: by whole factors (box averages), or to any size (a triangle filter).

/// Box-averages `src` (`width` × `rows` pixels of `channels` interleaved 8-bit samples) by
/// `factor` in both directions; partial blocks at the right and bottom average what they
/// hold. Returns the pixels, their width and their height.
pub(crate) fn box_downsample(
    src: &[u8],
    width: usize,
    rows: usize,
    channels: usize,
    factor: usize,
) -> (Vec<u8>, usize, usize) {
    use rayon::prelude::*;
    let (w, h) = (width.div_ceil(factor), rows.div_ceil(factor));
    let mut out = vec![0u8; w * h * channels];
    let full_block = RoundedDivision::by((factor * factor) as u32);
    out.par_chunks_mut(w * channels).enumerate().for_each_init(
        || vec![0u32; width * channels],
        |column_sums, (y, out_row)| {
            // Sum the block's rows first (a loop the compiler vectorises), then across.
            column_sums.fill(0);
            let (y0, y1) = (y * factor, ((y + 1) * factor).min(rows));
            for row in src[y0 * width * channels..y1 * width * channels].chunks_exact(width * channels) {
                for (sum, &v) in column_sums.iter_mut().zip(row) {
                    *sum += v as u32;
                }
            }
            let block_rows = (y1 - y0) as u32;
            match channels {
                1 => sum_across::<1>(column_sums, out_row, factor, block_rows, full_block),
                3 => sum_across::<3>(column_sums, out_row, factor, block_rows, full_block),
                4 => sum_across::<4>(column_sums, out_row, factor, block_rows, full_block),
                _ => unreachable!("images have 1, 3 or 4 channels"),
            }
        },
    );
    (out, w, h)
}

/// RGBA (`width` × `height`, even sides) averaged 2 × 2 into RGB, transparent pixels
/// counted as white like glass: the read of a model tile from a level twice as fine.
pub(crate) fn halve_rgba_to_rgb(rgba: &[u8], width: usize, height: usize) -> Vec<u8> {
    let mut out = vec![0u8; (width / 2) * (height / 2) * 3];
    halve_rgba_into(rgba, width, width, height, &mut out, width / 2);
    out
}

/// [`halve_rgba_to_rgb`] between strided images: `width` × `height` RGBA pixels (even
/// sides) of `src`, rows `src_stride` pixels apart, into `dst`'s RGB rows `dst_stride`
/// pixels apart. Row pairs are summed in one pass the compiler vectorises; the alpha sums
/// tell the rare blocks that hold a transparent pixel, which take the slow path.
pub(crate) fn halve_rgba_into(
    src: &[u8],
    src_stride: usize,
    width: usize,
    height: usize,
    dst: &mut [u8],
    dst_stride: usize,
) {
    let mut pair_sums = vec![0u16; width * 4];
    for y in 0..height / 2 {
        let top = &src[2 * y * src_stride * 4..][..width * 4];
        let bottom = &src[(2 * y + 1) * src_stride * 4..][..width * 4];
        for ((sum, &t), &b) in pair_sums.iter_mut().zip(top).zip(bottom) {
            *sum = t as u16 + b as u16;
        }
        let out_row = &mut dst[y * dst_stride * 3..][..width / 2 * 3];
        for (x, (o, s)) in out_row
            .chunks_exact_mut(3)
            .zip(pair_sums.chunks_exact(8))
            .enumerate()
        {
            if s[3] + s[7] == 4 * 255 {
                for i in 0..3 {
                    o[i] = ((s[i] + s[i + 4] + 2) >> 2) as u8;
                }
            } else {
                let pixels = [
                    &top[8 * x..][..4],
                    &top[8 * x + 4..][..4],
                    &bottom[8 * x..][..4],
                    &bottom[8 * x + 4..][..4],
                ];
                for i in 0..3 {
                    let sum: u16 = pixels
                        .iter()
                        .map(|p| if p[3] == 0 { 255 } else { p[i] as u16 })
                        .sum();
                    o[i] = ((sum + 2) >> 2) as u8;
                }
            }
        }
    }
}

/// One output row from its block's column sums: `C` channels, blocks `factor` wide (the last
/// one what is left) and `block_rows` high.
fn sum_across<const C: usize>(
    column_sums: &[u32],
    out_row: &mut [u8],
    factor: usize,
    block_rows: u32,
    full_block: RoundedDivision,
) {
    for (out_px, block) in out_row.chunks_exact_mut(C).zip(column_sums.chunks(factor * C)) {
        let columns = (block.len() / C) as u32;
        let divide = if block_rows * columns == full_block.n {
            full_block
        } else {
            RoundedDivision::by(block_rows * columns)
        };
        let mut sums = [0u32; C];
        for px in block.chunks_exact(C) {
            for c in 0..C {
                sums[c] += px[c];
            }
        }
        for c in 0..C {
            out_px[c] = divide.of(sums[c]) as u8;
        }
    }
}

/// s / n rounded to nearest, as a multiply and a shift: exact for sums of 8-bit samples
/// over blocks of fewer than 4,096 pixels (then s + n/2 < 2^32 / n); a division beyond.
#[derive(Clone, Copy)]
struct RoundedDivision {
    n: u32,
    magic: u64,
}

impl RoundedDivision {
    fn by(n: u32) -> Self {
        RoundedDivision {
            n,
            magic: (1u64 << 32).div_ceil(n as u64),
        }
    }

    fn of(self, s: u32) -> u32 {
        let x = (s + self.n / 2) as u64;
        if self.n < 4096 {
            ((x * self.magic) >> 32) as u32
        } else {
            (x / self.n as u64) as u32
        }
    }
}

/// `rgb` (`width` × `height`) resampled to `to_width` × `to_height` with a triangle filter
/// widened by the scale (antialiased, as image's `Triangle`), in SIMD.
pub(crate) fn resize_rgb(rgb: &[u8], width: u32, height: u32, to_width: u32, to_height: u32) -> Vec<u8> {
    use fast_image_resize::{images, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let from = images::ImageRef::new(width, height, rgb, PixelType::U8x3).expect("buffer has its size");
    let mut to = images::Image::new(to_width, to_height, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new()
        .resize(&from, &mut to, &options)
        .expect("same pixel type, sizes of at least 1");
    to.into_vec()
}

#[cfg(test)]
mod tests {
    #[test]
    fn resizing_keeps_flat_colour_and_the_order_of_a_gradient() {
        // 250 x 4, a flat colour over a horizontal ramp in red, to 97 x 3.
        let src: Vec<u8> = (0..4)
            .flat_map(|_| (0..250u32).flat_map(|x| [x as u8, 40, 200]))
            .collect();
        let out = super::resize_rgb(&src, 250, 4, 97, 3);
        assert_eq!(out.len(), 97 * 3 * 3);
        for row in out.chunks(97 * 3) {
            let reds: Vec<u8> = row.chunks(3).map(|p| p[0]).collect();
            assert!(reds.windows(2).all(|w| w[0] < w[1]), "{reds:?}");
            assert!(row.chunks(3).all(|p| p[1] == 40 && p[2] == 200));
        }
    }

    #[test]
    fn averages_blocks_and_partial_edges() {
        // 3x3 grey, factor 2: blocks of 4, 2, 2 and 1 pixels.
        let src = [0, 2, 10, 4, 6, 20, 100, 100, 50];
        let (out, w, h) = super::box_downsample(&src, 3, 3, 1, 2);
        assert_eq!((w, h), (2, 2));
        assert_eq!(out, vec![3, 15, 100, 50]);
    }

    #[test]
    fn halving_rgba_matches_converting_then_averaging() {
        let (w, h) = (6, 4);
        let rgba: Vec<u8> = (0..w * h * 4)
            .map(|i| {
                if i % 4 == 3 {
                    [0, 255][(i / 4) % 5 % 2]
                } else {
                    (i * 37 % 256) as u8
                }
            })
            .collect();
        let image = crate::slide::RgbaImage {
            width: w as u32,
            height: h as u32,
            data: rgba.clone(),
        };
        let (expected, _, _) = super::box_downsample(&image.to_rgb_on_white(), w, h, 3, 2);
        assert_eq!(super::halve_rgba_to_rgb(&rgba, w, h), expected);
    }

    #[test]
    fn rounded_division_is_exact_for_every_block_sum() {
        for n in [1u32, 2, 3, 4, 9, 16, 63, 64, 255, 1024, 4095, 4096, 5000] {
            let d = super::RoundedDivision::by(n);
            for s in (0..=255 * n).step_by(1 + n as usize / 64) {
                assert_eq!(d.of(s), (s + n / 2) / n, "{s} / {n}");
            }
        }
    }
}
