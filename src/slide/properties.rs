//! Slide properties with OpenSlide's names and OpenSlide's way of writing numbers.

use super::tifflike::{tag, Directory};
use super::Mpp;
use std::collections::BTreeMap;

pub(crate) type Properties = BTreeMap<String, String>;

pub const VENDOR: &str = "openslide.vendor";
pub const MPP_X: &str = "openslide.mpp-x";
pub const MPP_Y: &str = "openslide.mpp-y";
pub const OBJECTIVE_POWER: &str = "openslide.objective-power";
pub const COMMENT: &str = "openslide.comment";

/// Formats a double as OpenSlide does (GLib's `g_ascii_dtostr`, which is C's `%.17g`).
pub fn format_double(d: f64) -> String {
    format_g(d, 17)
}

/// Formats a double for a person to read, as C's `%g` (six significant digits).
pub(crate) fn format_short(d: f64) -> String {
    format_g(d, 6)
}

/// C's `%.{precision}g`.
fn format_g(d: f64, precision: usize) -> String {
    if d == 0.0 || !d.is_finite() {
        return if d.is_nan() {
            "nan".into()
        } else if d.is_infinite() {
            (if d > 0.0 { "inf" } else { "-inf" }).into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{:.*e}", precision - 1, d);
    let (mantissa, exp) = sci.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    if exp < -4 || exp >= precision as i32 {
        let m = strip_zeros(mantissa);
        format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        let decimals = (precision as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{d:.decimals$}"))
    }
}

fn strip_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Parses a number as OpenSlide does: commas read as decimal points, no trailing junk.
pub fn parse_double(s: &str) -> Option<f64> {
    parse_any_double(s).filter(|v| v.is_finite())
}

/// [`parse_double`], infinities and NaN included, for a value whose nonsense must be reported.
pub(crate) fn parse_any_double(s: &str) -> Option<f64> {
    s.trim().replace(',', ".").parse().ok()
}

/// The `tiff.*` properties OpenSlide takes from a slide's first directory.
pub(crate) fn tiff_properties(dir: &Directory, props: &mut Properties) {
    let strings = [
        (tag::IMAGE_DESCRIPTION, "tiff.ImageDescription"),
        (tag::MAKE, "tiff.Make"),
        (tag::MODEL, "tiff.Model"),
        (tag::SOFTWARE, "tiff.Software"),
        (tag::DATE_TIME, "tiff.DateTime"),
        (tag::ARTIST, "tiff.Artist"),
        (tag::HOST_COMPUTER, "tiff.HostComputer"),
        (tag::COPYRIGHT, "tiff.Copyright"),
        (tag::DOCUMENT_NAME, "tiff.DocumentName"),
    ];
    for (t, name) in strings {
        if let Some(v) = dir.string(t) {
            props.insert(name.into(), v);
        }
    }
    if let Some(d) = dir.string(tag::IMAGE_DESCRIPTION) {
        props.insert(COMMENT.into(), d);
    }
    let numbers = [
        (tag::X_RESOLUTION, "tiff.XResolution"),
        (tag::Y_RESOLUTION, "tiff.YResolution"),
        (tag::X_POSITION, "tiff.XPosition"),
        (tag::Y_POSITION, "tiff.YPosition"),
    ];
    for (t, name) in numbers {
        if let Some(v) = dir.number(t) {
            props.insert(name.into(), format_double(v));
        }
    }
    let unit = match dir.uint(tag::RESOLUTION_UNIT).ok().flatten() {
        None | Some(2) => "inch",
        Some(1) => "none",
        Some(3) => "centimeter",
        Some(_) => "unknown",
    };
    props.insert("tiff.ResolutionUnit".into(), unit.into());
}

/// `openslide.icc-size`: the size of the first directory's ICC profile, when it has one.
pub(crate) fn icc_property(dir: &Directory, props: &mut Properties) {
    if let Some(icc) = dir.bytes(tag::ICC_PROFILE) {
        props.insert("openslide.icc-size".into(), icc.len().to_string());
    }
}

/// Microns per pixel from the TIFF resolution tags (inch when the unit is absent), as stated:
/// a resolution of 0 or below gives a value the slide's plausibility check refuses.
pub(crate) fn resolution_mpp(dir: &Directory) -> Option<Mpp> {
    let (dividend, unit) = match dir.uint(tag::RESOLUTION_UNIT).ok().flatten() {
        None | Some(2) => (25400.0, "inch"),
        Some(3) => (10000.0, "centimeter"),
        _ => return None,
    };
    let xr = dir.number(tag::X_RESOLUTION)?;
    let yr = dir.number(tag::Y_RESOLUTION)?;
    Some(Mpp {
        x: dividend / xr,
        y: dividend / yr,
        source: format!("tiff.XResolution/tiff.YResolution (ResolutionUnit {unit})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_are_written_as_openslide_writes_them() {
        let cases = [
            (0.499, "0.499"),
            ((300.0 / 75.0 + 250.0 / 62.0) / 2.0, "4.0161290322580641"),
            (10000.0 / (14861707.0 / 524288.0), "352.77777983377013"),
            (0.2281750559028887, "0.2281750559028887"),
            (1.0, "1"),
            (20.0, "20"),
            (1e-7, "9.9999999999999995e-08"),
            (352.858149123434, "352.85814912343398"),
            (1.0 / 3.0, "0.33333333333333331"),
            (1e20, "1e+20"),
        ];
        for (v, want) in cases {
            assert_eq!(format_double(v), want, "{v}");
        }
        for (v, want) in [(1e-300, "1e-300"), (352.777_78, "352.778"), (0.25, "0.25")] {
            assert_eq!(format_short(v), want, "{v}");
        }
    }

    #[test]
    fn numbers_parse_with_commas() {
        assert_eq!(parse_double("0,4990"), Some(0.499));
        assert_eq!(parse_double("20"), Some(20.0));
        assert_eq!(parse_double("20x"), None);
        assert_eq!(parse_double(""), None);
        assert_eq!(parse_double("NaN"), None);
        assert!(parse_any_double("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_any_double("-inf"), Some(f64::NEG_INFINITY));
    }
}
