//! Position-embedding resampling for tile sizes other than the trained one, as timm does it.

/// Resizes a `[h, w, channels]` grid to `[out_h, out_w, channels]` as PyTorch's
/// `interpolate(mode="bicubic", antialias=True, align_corners=False)` does (timm resamples
/// position embeddings so): separable, Keys cubic with a = −0.5, its support widened by the
/// scale when shrinking, weights normalised per output pixel.
pub fn resize_bicubic_antialiased(
    src: &[f32],
    h: usize,
    w: usize,
    channels: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    let horizontal = resize_axis(src, h, w, channels, out_w, true);
    resize_axis(&horizontal, h, out_w, channels, out_h, false)
}

/// Interpolation weights along one axis: for each output index, the first input index and
/// the weights from there.
fn axis_weights(input: usize, output: usize) -> Vec<(usize, Vec<f32>)> {
    let cubic = |x: f64| {
        let a = -0.5;
        let x = x.abs();
        if x < 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * a
        } else {
            0.0
        }
    };
    let scale = input as f64 / output as f64;
    let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
    let inv = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    (0..output)
        .map(|i| {
            let centre = scale * (i as f64 + 0.5);
            let lo = ((centre - support + 0.5) as i64).max(0) as usize;
            let hi = ((centre + support + 0.5) as i64).min(input as i64) as usize;
            let raw: Vec<f64> = (lo..hi).map(|j| cubic((j as f64 - centre + 0.5) * inv)).collect();
            let total: f64 = raw.iter().sum();
            (lo, raw.iter().map(|v| (v / total) as f32).collect())
        })
        .collect()
}

fn resize_axis(src: &[f32], h: usize, w: usize, c: usize, out: usize, horizontal: bool) -> Vec<f32> {
    let (input, weights) = if horizontal {
        (w, axis_weights(w, out))
    } else {
        (h, axis_weights(h, out))
    };
    debug_assert!(input > 0);
    let (oh, ow) = if horizontal { (h, out) } else { (out, w) };
    let mut dst = vec![0f32; oh * ow * c];
    for y in 0..oh {
        for x in 0..ow {
            let (lo, ws) = &weights[if horizontal { x } else { y }];
            let o = &mut dst[(y * ow + x) * c..(y * ow + x + 1) * c];
            for (k, &wt) in ws.iter().enumerate() {
                let (sy, sx) = if horizontal { (y, lo + k) } else { (lo + k, x) };
                let s = &src[(sy * w + sx) * c..(sy * w + sx + 1) * c];
                o.iter_mut().zip(s).for_each(|(a, b)| *a += wt * b);
            }
        }
    }
    dst
}
