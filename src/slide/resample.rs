//! Shrinking images by whole factors.

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
    let (w, h) = (width.div_ceil(factor), rows.div_ceil(factor));
    let mut out = vec![0u8; w * h * channels];
    let mut sums = vec![0u32; w * channels];
    let mut counts = vec![0u32; w];
    for y in 0..h {
        sums.iter_mut().for_each(|s| *s = 0);
        counts.iter_mut().for_each(|c| *c = 0);
        for sy in y * factor..((y + 1) * factor).min(rows) {
            let row = &src[sy * width * channels..(sy + 1) * width * channels];
            for (x, px) in row.chunks_exact(channels).enumerate() {
                let ox = x / factor;
                for (c, &v) in px.iter().enumerate() {
                    sums[ox * channels + c] += v as u32;
                }
                counts[ox] += 1;
            }
        }
        for x in 0..w {
            let n = counts[x].max(1);
            for c in 0..channels {
                out[(y * w + x) * channels + c] = ((sums[x * channels + c] + n / 2) / n) as u8;
            }
        }
    }
    (out, w, h)
}

#[cfg(test)]
mod tests {
    #[test]
    fn averages_blocks_and_partial_edges() {
        // 3x3 grey, factor 2: blocks of 4, 2, 2 and 1 pixels.
        let src = [0, 2, 10, 4, 6, 20, 100, 100, 50];
        let (out, w, h) = super::box_downsample(&src, 3, 3, 1, 2);
        assert_eq!((w, h), (2, 2));
        assert_eq!(out, vec![3, 15, 100, 50]);
    }
}
