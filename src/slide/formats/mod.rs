//! The formats flashslide reads, as OpenSlide's drivers: each a file with a [`Format`] entry
//! (a name, a `detect` on a [`Probe`] of the file, an `open` that describes the slide as
//! levels, associated images and properties), and [`FORMATS`] listing them most specific
//! first, as openslide.c's format list does: generic TIFF last. Detection is by content;
//! the probe carries the path for formats that are a file and its siblings (DICOM: a folder
//! given as the slide opens its one series).

mod aperio;
mod dicom;

pub(crate) use dicom::{folder_series, series_members};
pub(crate) use mirax::slide_members as mirax_members;
mod generic_tiff;
mod hamamatsu;
mod leica;
mod mirax;
mod ome_tiff;
mod philips;
mod ventana;

use super::dicom::is_dicom_header;
use super::error::{corrupt, unsupported, Result, SlideErrorKind};
use super::grid::TileGrid;
use super::io::SlideFile;
use super::properties::Properties;
use super::tifflike::{is_tiff_header, TiffFile};
use super::Mpp;
use std::path::Path;
use std::sync::Arc;

/// What a driver makes of a file.
pub(crate) struct Opened {
    /// The format's name (its [`Format`] entry's).
    pub vendor: &'static str,
    /// Why the file is in that format (its entry's rule, and what the format found).
    pub detected_by: String,
    /// Pyramid levels, largest first.
    pub levels: Vec<Arc<dyn TileGrid>>,
    /// Each level's downsample where the format states it (Philips: from its pixel
    /// spacing); empty for OpenSlide's default, the mean of the two size ratios to level 0.
    pub downsamples: Vec<f64>,
    /// Whether the levels' tile sizes are reported (`openslide.level[k].tile-width` …):
    /// not where a level is a mosaic of images, as OpenSlide leaves them out there.
    pub tile_hints: bool,
    pub associated: Vec<(String, Arc<dyn TileGrid>)>,
    pub properties: Properties,
    pub mpp: Option<Mpp>,
}

/// What a format's `detect` and `open` see of a file.
pub(crate) struct Probe<'a> {
    pub path: &'a Path,
    pub file: &'a Arc<SlideFile>,
    /// The file's first 132 bytes (all of a shorter one).
    pub head: &'a [u8],
    /// Its directories, when the file is a TIFF or BigTIFF.
    pub tiff: Option<&'a TiffFile>,
}

impl Probe<'_> {
    /// The TIFF structure a TIFF format's `open` reads (its `detect` has seen it).
    pub fn tiff(&self) -> Result<&TiffFile> {
        self.tiff
            .ok_or_else(|| SlideErrorKind::UnknownFormat(" (not a TIFF)".into()))
    }
}

/// One format: its name, whether a probed file is in it, and how to open one that is.
pub(crate) struct Format {
    pub name: &'static str,
    /// What `detect` looks for, in words (for `info`).
    pub why: &'static str,
    pub detect: fn(&Probe) -> bool,
    pub open: fn(&Probe) -> Result<Opened>,
}

/// Every format read, most specific first.
pub(crate) const FORMATS: &[Format] = &[
    dicom::FORMAT,
    mirax::FORMAT,
    hamamatsu::FORMAT,
    aperio::FORMAT,
    leica::FORMAT,
    philips::FORMAT,
    ventana::FORMAT,
    ome_tiff::FORMAT,
    generic_tiff::FORMAT,
];

pub(crate) fn open(path: &Path) -> Result<Opened> {
    // A folder is a slide when it holds one DICOM series (the files of a DICOM WSI).
    let chosen;
    let path = if path.is_dir() {
        chosen = dicom::file_in_folder(path)?;
        chosen.as_path()
    } else {
        path
    };
    let file = Arc::new(SlideFile::open(path)?);
    let head = file.read_up_to(0, 132)?;
    let mut probe = Probe {
        path,
        file: &file,
        head: &head,
        tiff: None,
    };
    if let Some(why) = not_read_yet(&probe) {
        return Err(why);
    }
    // A DICOM file's preamble may hold a TIFF header: when that TIFF does not parse, the
    // file is still read as DICOM.
    let tiff = match is_tiff_header(&head) {
        true => match TiffFile::parse(&file) {
            Ok(t) => Some(t),
            Err(_) if is_dicom_header(&head) => None,
            Err(e) => return Err(e),
        },
        false => None,
    };
    probe.tiff = tiff.as_ref();
    if let Some(format) = FORMATS.iter().find(|f| (f.detect)(&probe)) {
        return (format.open)(&probe);
    }
    Err(match &tiff {
        Some(tiff) => explain_untiled(tiff),
        None if mirax::is_mrxs(path) => corrupt(format!(
            "a MIRAX .mrxs file without its folder {} (Slidedat.ini and the data files)",
            path.with_extension("").display()
        )),
        None => SlideErrorKind::UnknownFormat(
            " (flashslide reads Aperio SVS, Hamamatsu NDPI, DICOM WSI, MIRAX, Leica SCN, Philips TIFF, Ventana BIF, OME-TIFF and tiled pyramidal TIFF/BigTIFF)"
                .into(),
        ),
    })
}

/// Formats recognised but not read yet, said by name.
fn not_read_yet(probe: &Probe) -> Option<SlideErrorKind> {
    let head = probe.head;
    if head.starts_with(&[0, 0, 0, 0x0C, b'j', b'P', b' ', b' '])
        || head.starts_with(&[0xFF, 0x4F, 0xFF, 0x51])
    {
        return Some(unsupported("JPEG 2000 image files"));
    }
    None
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

#[cfg(test)]
mod tests {
    use super::FORMATS;

    #[test]
    fn formats_are_named_once_and_generic_tiff_comes_last() {
        let names: Vec<&str> = FORMATS.iter().map(|f| f.name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        // Every tiled TIFF is a generic one: a more specific format after it would never be
        // tried.
        assert_eq!(names.last(), Some(&"generic-tiff"));
    }
}
