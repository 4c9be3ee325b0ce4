//! Pixel sizes a slide or a model can plausibly have, in microns per pixel. Scanners write
//! 0.1–0.5 µm/px at level 0 and a model's input is at most a few µm/px; outside 0.05–100 a
//! value is a broken tag or a typo, and analysing with it yields no tissue tiles (or
//! billions), which a reader of the results would take for "no tumour".

/// The accepted range, inclusive.
pub const PLAUSIBLE_MPP: std::ops::RangeInclusive<f64> = 0.05..=100.0;

/// A pixel size outside [`PLAUSIBLE_MPP`] (or not a number).
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[error("{0} µm/px is not a plausible pixel size (expected {lo} to {hi} µm/px)", lo = PLAUSIBLE_MPP.start(), hi = PLAUSIBLE_MPP.end())]
pub struct ImplausibleMpp(pub f64);

/// `Ok(mpp)` when `mpp` is finite and within [`PLAUSIBLE_MPP`].
pub fn check_mpp(mpp: f64) -> Result<f64, ImplausibleMpp> {
    if PLAUSIBLE_MPP.contains(&mpp) {
        Ok(mpp)
    } else {
        Err(ImplausibleMpp(mpp))
    }
}

#[cfg(test)]
mod tests {
    use super::check_mpp;

    #[test]
    fn only_finite_values_in_range_pass() {
        for ok in [0.05, 0.2527, 0.5, 8.0, 100.0] {
            assert_eq!(check_mpp(ok), Ok(ok));
        }
        for bad in [
            0.0,
            -0.5,
            1e-300,
            5e-324,
            7.45e-9,
            0.049,
            100.1,
            33554432.0,
            f64::NAN,
            f64::INFINITY,
            -f64::INFINITY,
        ] {
            assert!(check_mpp(bad).is_err(), "{bad} accepted");
        }
    }
}
