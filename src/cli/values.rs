//! Checked option values: clap refuses a number outside what the option means (exit 2,
//! naming the option), so no NaN, negative pixel size or empty batch reaches the library.

/// `--mpp`: a finite pixel size in the plausible range.
pub fn mpp(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    flashslide::slide::mpp::check_mpp(value).map_err(|e| e.to_string())
}

/// A fraction or probability: finite, in [0, 1].
pub fn unit_interval(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{text} is not between 0 and 1"))
    }
}

/// [`unit_interval`] as f32, for probabilities.
pub fn probability(text: &str) -> Result<f32, String> {
    unit_interval(text).map(|v| v as f32)
}

/// Tiles per forward pass: 1 to 4,096 (a batch of 4,096 ViT-g tiles already needs tens of
/// gigabytes of activations).
pub fn batch(text: &str) -> Result<usize, String> {
    let value: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if (1..=4096).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not between 1 and 4096"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nonsense_is_refused() {
        for bad in ["0", "-1", "-inf", "NaN", "inf", "7.45e-9", "1e-300", "x"] {
            assert!(super::mpp(bad).is_err(), "--mpp {bad} accepted");
        }
        assert_eq!(super::mpp("0.25"), Ok(0.25));
        for bad in ["NaN", "-0.1", "1.5", "inf"] {
            assert!(super::unit_interval(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(super::probability("0.5"), Ok(0.5));
        assert!(super::batch("0").is_err() && super::batch("100000").is_err());
        assert_eq!(super::batch("64"), Ok(64));
    }
}
