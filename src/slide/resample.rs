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
    use rayon::prelude::*;
    let (w, h) = (width.div_ceil(factor), rows.div_ceil(factor));
    let mut out = vec![0u8; w * h * channels];
    out.par_chunks_mut(w * channels)
        .enumerate()
        .for_each(|(y, out_row)| {
            let mut sums = vec![0u32; w * channels];
            let block_rows = ((y + 1) * factor).min(rows) - y * factor;
            for sy in y * factor..y * factor + block_rows {
                let row = &src[sy * width * channels..(sy + 1) * width * channels];
                for (ox, sum) in sums.chunks_exact_mut(channels).enumerate() {
                    let x0 = ox * factor;
                    for px in row[x0 * channels..((x0 + factor).min(width)) * channels].chunks_exact(channels)
                    {
                        for (s, &v) in sum.iter_mut().zip(px) {
                            *s += v as u32;
                        }
                    }
                }
            }
            for (ox, (o, sum)) in out_row
                .chunks_exact_mut(channels)
                .zip(sums.chunks_exact(channels))
                .enumerate()
            {
                let n = (block_rows * ((ox * factor + factor).min(width) - ox * factor)) as u32;
                for (o, &s) in o.iter_mut().zip(sum) {
                    *o = ((s + n / 2) / n) as u8;
                }
            }
        });
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
