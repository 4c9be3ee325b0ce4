//! One driver per vendor, each a `detect` on the parsed container and an `open` that
//! describes the slide as levels, associated images and properties. Order matters, as in
//! OpenSlide: the most specific format is tried first and generic TIFF last.

mod aperio;
mod generic_tiff;
mod hamamatsu;

use super::error::{unsupported, Result, SlideErrorKind};
use super::grid::TileGrid;
use super::io::SlideFile;
use super::properties::Properties;
use super::tifflike::{is_tiff_header, Flavor, TiffFile};
use super::Mpp;
use std::path::Path;
use std::sync::Arc;

/// What a driver makes of a file.
pub(crate) struct Opened {
    pub vendor: &'static str,
    /// Pyramid levels, largest first.
    pub levels: Vec<Arc<dyn TileGrid>>,
    pub associated: Vec<(String, Arc<dyn TileGrid>)>,
    pub properties: Properties,
    pub mpp: Option<Mpp>,
}

pub(crate) fn open(path: &Path) -> Result<Opened> {
    let file = Arc::new(SlideFile::open(path)?);
    let head = file.read_up_to(0, 132)?;
    if head.len() >= 132 && &head[128..132] == b"DICM" {
        return Err(unsupported("DICOM whole-slide images (not read yet)"));
    }
    if head.starts_with(&[0, 0, 0, 0x0C, b'j', b'P', b' ', b' '])
        || head.starts_with(&[0xFF, 0x4F, 0xFF, 0x51])
    {
        return Err(unsupported("JPEG 2000 image files"));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext == "mrxs" {
        return Err(unsupported("MIRAX (.mrxs) slides"));
    }
    if !is_tiff_header(&head) {
        return Err(SlideErrorKind::UnknownFormat(
            " (flashslide reads Aperio SVS, Hamamatsu NDPI and tiled pyramidal TIFF/BigTIFF)".into(),
        ));
    }
    let tiff = TiffFile::parse(&file)?;
    if tiff.flavor == Flavor::Ndpi {
        return hamamatsu::open(file, &tiff);
    }
    if aperio::detect(&tiff) {
        return aperio::open(file, &tiff);
    }
    if generic_tiff::detect(&tiff) {
        return generic_tiff::open(file, &tiff);
    }
    Err(explain_untiled(&tiff))
}

/// Why a TIFF no driver claims is not a slide: it is not tiled, so not a pyramid.
fn explain_untiled(tiff: &TiffFile) -> SlideErrorKind {
    let d0 = &tiff.directories[0];
    let size = (d0.width().unwrap_or(0), d0.height().unwrap_or(0));
    let same_size = tiff
        .directories
        .iter()
        .filter(|d| (d.width().unwrap_or(0), d.height().unwrap_or(0)) == size)
        .count();
    if same_size > 1 {
        unsupported(format!(
            "multi-channel or multi-plane TIFF ({same_size} untiled images of {}x{}), not a pyramidal slide",
            size.0, size.1
        ))
    } else {
        unsupported("non-pyramidal TIFF (its first image is not tiled)")
    }
}
