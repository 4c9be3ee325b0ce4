//! Viridis, the perceptually uniform colour map (matplotlib's default): dark blue for 0,
//! yellow for 1, lightness rising evenly, readable by colour-blind viewers. Nine samples of
//! it, interpolated linearly in RGB.

const VIRIDIS: [[f32; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [71.0, 44.0, 122.0],
    [59.0, 81.0, 139.0],
    [44.0, 113.0, 142.0],
    [33.0, 144.0, 141.0],
    [39.0, 173.0, 129.0],
    [92.0, 200.0, 99.0],
    [170.0, 220.0, 50.0],
    [253.0, 231.0, 37.0],
];

/// The colour of `t` in 0..=1 (clamped).
pub fn viridis(t: f32) -> [u8; 3] {
    let x = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    [0, 1, 2].map(|c| (a[c] + (b[c] - a[c]) * f).round() as u8)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ends_and_lightness_rise() {
        assert_eq!(super::viridis(0.0), [68, 1, 84]);
        assert_eq!(super::viridis(1.0), [253, 231, 37]);
        let luma = |c: [u8; 3]| 0.299 * c[0] as f32 + 0.587 * c[1] as f32 + 0.114 * c[2] as f32;
        let mut last = 0.0;
        for i in 0..=100 {
            let l = luma(super::viridis(i as f32 / 100.0));
            assert!(l >= last - 0.5, "lightness falls at {i}");
            last = l;
        }
    }
}
