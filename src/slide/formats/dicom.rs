//! DICOM whole-slide images (VL Whole Slide Microscopy Image Storage): a series of Part 10
//! files, found beside the file opened (same folder, same SeriesInstanceUID) as OpenSlide
//! finds them. VOLUME images are the levels (grouped by total pixel matrix: a level may be
//! split across files), largest first; LABEL, OVERVIEW and THUMBNAIL images are the
//! associated label, macro and thumbnail. Properties are every standard element of the
//! largest level's first file, named `dicom.Keyword`, `dicom.Sequence[i].Keyword` and
//! `dicom.Keyword[i]` for several values, as OpenSlide names them.

use super::{Format, Opened, Probe};
use crate::slide::dicom::{is_dicom_header, keyword, tags, DicomFile, Element, Tag, Value};
use crate::slide::dicom_image::{icc_size, in_member, DicomImage, ImageGeometry, Part};
use crate::slide::error::{corrupt, unsupported, Result, SlideErrorKind};
use crate::slide::grid::TileGrid;
use crate::slide::io::SlideFile;
use crate::slide::properties::{self, format_double, parse_double, Properties};
use crate::slide::Mpp;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(super) const FORMAT: Format = Format {
    name: "dicom",
    why: "\"DICM\" after the 128-byte preamble and the VL Whole Slide Microscopy SOP class",
    detect,
    open,
};

const WSM_SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.77.1.6";
const MEDIA_STORAGE_SOP_CLASS: Tag = 0x0002_0002;
const SOP_INSTANCE: Tag = 0x0008_0018;
const CONCATENATION_SOURCE: Tag = 0x0020_0242;
/// Directory entries looked at beside the file opened: a hospital export's folder can hold
/// many series, but not more files than this for one slide.
const MAX_SIBLINGS: usize = 100_000;

fn detect(probe: &Probe) -> bool {
    // A file that is both DICOM and TIFF, named .tif or .tiff, is read as TIFF (OpenSlide's
    // rule too).
    let tiff_named = probe.tiff.is_some()
        && probe
            .path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff"));
    is_dicom_header(probe.head) && !tiff_named
}

/// What an instance is to the slide, by its ImageType's third value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Level,
    Associated(&'static str),
}

fn role(dcm: &DicomFile) -> Result<Option<Role>> {
    let types = dcm
        .get(tags::IMAGE_TYPE)
        .and_then(Element::strings)
        .ok_or_else(|| corrupt("no ImageType"))?;
    Ok(match types.get(2).map(String::as_str) {
        Some("VOLUME") => Some(Role::Level),
        Some("LABEL") => Some(Role::Associated("label")),
        Some("OVERVIEW") => Some(Role::Associated("macro")),
        Some("THUMBNAIL") => Some(Role::Associated("thumbnail")),
        _ => None,
    })
}

/// The series a whole-slide microscopy file belongs to; anything else is refused by name.
fn series_of(dcm: &DicomFile) -> Result<String> {
    let class = dcm
        .string(MEDIA_STORAGE_SOP_CLASS)
        .or_else(|| dcm.string(tags::SOP_CLASS))
        .unwrap_or_default();
    if class != WSM_SOP_CLASS {
        return Err(unsupported(format!(
            "DICOM of SOP class {class}, not a whole-slide microscopy image ({WSM_SOP_CLASS})"
        )));
    }
    dcm.string(tags::SERIES_UID)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| corrupt("no SeriesInstanceUID"))
}

/// The whole-slide DICOM series of a folder (regular files with a DICOM header and a
/// whole-slide SOP class; others are ignored), each with its files, in the order of their
/// first files' names, the files in name order; so a slide is the same whatever the
/// folder's listing order.
pub(crate) fn folder_series(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut names: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir)?.take(MAX_SIBLINGS) {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            names.push(entry.path());
        }
    }
    names.sort();
    let mut series: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for path in names {
        let Some(uid) = series_uid(&path) else { continue };
        match series.iter_mut().find(|(s, _)| *s == uid) {
            Some((_, files)) => files.push(path),
            None => series.push((uid, vec![path])),
        }
    }
    Ok(series)
}

/// The series of a whole-slide DICOM file, from its header alone; None for any other file.
fn series_uid(path: &Path) -> Option<String> {
    let file = Arc::new(SlideFile::open(path).ok()?);
    if !file.read_up_to(0, 132).is_ok_and(|h| is_dicom_header(&h)) {
        return None;
    }
    let head = DicomFile::parse_until(file, Some(tags::SERIES_UID + 1)).ok()?;
    series_of(&head).ok()
}

/// The folder of a slide file (`.` for a bare name).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A DICOM slide's series UID and files, for a folder holding one series or any file of
/// one; None when `path` is not a whole-slide DICOM file or folder.
pub(crate) fn series_members(path: &Path) -> Result<Option<(String, Vec<PathBuf>)>> {
    if path.is_dir() {
        let mut series = folder_series(path)?;
        return Ok((series.len() == 1).then(|| series.remove(0)));
    }
    let Some(uid) = series_uid(path) else {
        return Ok(None);
    };
    let files = folder_series(&folder_of(path))?
        .into_iter()
        .find(|(s, _)| *s == uid)
        .map_or_else(|| vec![path.to_path_buf()], |(_, files)| files);
    Ok(Some((uid, files)))
}

/// The other files of `series` beside `path`, parsed whole.
fn siblings(path: &Path, series: &str) -> Result<Vec<(PathBuf, DicomFile)>> {
    let files = folder_series(&folder_of(path))?
        .into_iter()
        .find(|(s, _)| s == series)
        .map(|(_, files)| files)
        .unwrap_or_default();
    let mut found = Vec::new();
    for candidate in files.into_iter().filter(|f| f.file_name() != path.file_name()) {
        let file = Arc::new(SlideFile::open(&candidate).map_err(|e| in_member(&candidate, e))?);
        let dcm = DicomFile::parse(file).map_err(|e| in_member(&candidate, e))?;
        found.push((candidate, dcm));
    }
    Ok(found)
}

/// The instance a level part belongs to: concatenation parts share their source's UID.
fn underlying_instance(dcm: &DicomFile) -> Option<String> {
    dcm.string(CONCATENATION_SOURCE)
        .or_else(|| dcm.string(SOP_INSTANCE))
}

/// The file to open for a folder given as a slide: its first DICOM file by name, when every
/// whole-slide DICOM file there belongs to one series.
pub(super) fn file_in_folder(dir: &Path) -> Result<PathBuf> {
    let mut series = folder_series(dir)?;
    match series.len() {
        0 => Err(SlideErrorKind::BadRequest(
            "is a directory without a DICOM whole-slide image, not a slide file".into(),
        )),
        1 => Ok(series.remove(0).1.remove(0)),
        n => Err(SlideErrorKind::BadRequest(format!(
            "is a directory holding {n} DICOM series; name a file of the one to open"
        ))),
    }
}

fn open(probe: &Probe) -> Result<Opened> {
    let first = DicomFile::parse(probe.file.clone())?;
    let series = series_of(&first)?;
    let mut members = vec![(probe.path.to_path_buf(), first)];
    members.extend(siblings(probe.path, &series)?);

    // Levels by total pixel matrix, each with its parts; associated images by name.
    let mut levels: Vec<(ImageGeometry, Vec<Part>)> = Vec::new();
    let mut associated: Vec<(&'static str, Part)> = Vec::new();
    // Errors of files other than the one opened name the file.
    let named = |path: &Path, e| if path == probe.path { e } else { in_member(path, e) };
    let part = |path: &Path, dcm| Part {
        dcm,
        member: (path != probe.path).then(|| path.to_path_buf()),
    };
    for (path, dcm) in &members {
        let Some(role) = role(dcm).map_err(|e| named(path, e))? else {
            continue;
        };
        let geometry = ImageGeometry::of(dcm).map_err(|e| named(path, e))?;
        match role {
            Role::Level => match levels
                .iter_mut()
                .find(|(g, _)| (g.width, g.height) == (geometry.width, geometry.height))
            {
                Some((g, parts)) => {
                    if (g.tile_width, g.tile_height) != (geometry.tile_width, geometry.tile_height) {
                        return Err(named(
                            path,
                            corrupt(format!(
                                "tiles of {}x{} in a level of {}x{} tiles",
                                geometry.tile_width, geometry.tile_height, g.tile_width, g.tile_height
                            )),
                        ));
                    }
                    if underlying_instance(dcm) != underlying_instance(parts[0].dcm) {
                        return Err(named(
                            path,
                            corrupt(format!(
                                "a second image of {}x{} pixels in the series (not a part of the first)",
                                g.width, g.height
                            )),
                        ));
                    }
                    parts.push(part(path, dcm));
                }
                None => levels.push((geometry, vec![part(path, dcm)])),
            },
            Role::Associated(name) => match associated.iter().find(|(n, _)| *n == name) {
                // The same image twice (a copied file) is harmless; two different ones are not.
                Some((_, seen)) if underlying_instance(seen.dcm) == underlying_instance(dcm) => {}
                Some(_) => {
                    return Err(named(
                        path,
                        corrupt(format!("a second {name} image in the series")),
                    ))
                }
                None => associated.push((name, part(path, dcm))),
            },
        }
    }
    if levels.is_empty() {
        return Err(corrupt(format!(
            "series {series} has no VOLUME image (no pyramid level)"
        )));
    }
    levels.sort_by_key(|l| std::cmp::Reverse(l.0.width));
    for (_, parts) in &mut levels {
        parts.sort_by_key(|p| p.dcm.uint(tags::CONCATENATION_FRAME_OFFSET).unwrap_or(0));
    }

    let level0 = levels[0].1[0].dcm;
    let mut props = Properties::new();
    add_properties(&level0.elements, "dicom", &mut props);
    let spacing = |i: usize| {
        props
            .get(&format!(
                "dicom.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing[{i}]"
            ))
            .map(|v| properties::parse_any_double(v).unwrap_or(f64::NAN) * 1000.0)
    };
    // Pixel spacing is in mm, row spacing (y) first.
    let mpp = match (spacing(1), spacing(0)) {
        (Some(x), Some(y)) => Some(Mpp {
            x,
            y,
            source: "dicom PixelSpacing".into(),
        }),
        _ => None,
    };
    if let Some(power) = props
        .get("dicom.OpticalPathSequence[0].ObjectiveLensPower")
        .and_then(|v| parse_double(v))
    {
        props.insert(properties::OBJECTIVE_POWER.into(), format_double(power));
    }
    if let Some(barcode) = props.get("dicom.BarcodeValue").cloned() {
        props.insert("openslide.barcode".into(), barcode);
    }
    if let Some(size) = icc_size(level0) {
        props.insert("openslide.icc-size".into(), size.to_string());
    }

    let mut level_grids: Vec<Arc<dyn TileGrid>> = Vec::with_capacity(levels.len());
    for (geometry, parts) in &levels {
        level_grids.push(Arc::new(DicomImage::new(*geometry, parts)?));
    }
    let mut associated_grids: Vec<(String, Arc<dyn TileGrid>)> = Vec::new();
    for (name, part) in associated {
        let (geometry, dcm) = (ImageGeometry::of(part.dcm)?, part.dcm);
        associated_grids.push((name.to_string(), Arc::new(DicomImage::new(geometry, &[part])?)));
        if let Some(size) = icc_size(dcm) {
            props.insert(format!("openslide.associated.{name}.icc-size"), size.to_string());
        }
    }
    let detected_by = format!(
        "{}; series {series}: {} files, {} levels, {} associated images",
        FORMAT.why,
        members.len(),
        level_grids.len(),
        associated_grids.len()
    );
    Ok(Opened {
        vendor: FORMAT.name,
        detected_by,
        levels: level_grids,
        downsamples: Vec::new(),
        tile_hints: true,
        associated: associated_grids,
        properties: props,
        mpp,
    })
}

/// Every standard element of `elements` as OpenSlide names it: `PREFIX.Keyword`, with
/// `[i]` for each of several values and `Sequence[i].` before an item's elements; binary
/// values, group lengths, per-frame groups and pixel data left out.
fn add_properties(elements: &[Element], prefix: &str, props: &mut Properties) {
    for e in elements {
        let skipped = e.tag & 0xFFFF == 0 || e.tag == tags::PER_FRAME_GROUPS || e.tag >> 16 == 0x7FE0;
        let Some(keyword) = keyword(e.tag).filter(|_| !skipped) else {
            continue;
        };
        let name = format!("{prefix}.{keyword}");
        if let Value::Items(items) = &e.value {
            for (i, item) in items.iter().enumerate() {
                add_properties(item, &format!("{name}[{i}]"), props);
            }
            continue;
        }
        let values = property_values(e);
        match values.len() {
            0 => {}
            1 => {
                props.insert(name, values.into_iter().next().expect("one value"));
            }
            _ => {
                for (i, v) in values.into_iter().enumerate() {
                    props.insert(format!("{name}[{i}]"), v);
                }
            }
        }
    }
}

/// An element's values as text, as OpenSlide (through libdicom) gives them: strings as
/// stored, split at backslashes only for the VRs libdicom reads as several strings (AE, CS,
/// DS, DT, PN, SH, TM, UI, UC; an IS or LO keeps its backslashes); integers in decimal, an
/// attribute tag as two (group, element); floats as OpenSlide writes doubles; nothing for
/// binary data.
fn property_values(e: &Element) -> Vec<String> {
    match &e.vr.0 {
        b"AE" | b"CS" | b"DS" | b"DT" | b"PN" | b"SH" | b"TM" | b"UI" | b"UC" => {
            e.strings().unwrap_or_default()
        }
        b"AS" | b"DA" | b"IS" | b"LO" | b"LT" | b"ST" | b"UT" | b"UR" => e.string().into_iter().collect(),
        b"FL" | b"FD" => e
            .numbers()
            .unwrap_or_default()
            .into_iter()
            .map(format_double)
            .collect(),
        b"US" | b"SS" | b"UL" | b"SL" | b"UV" | b"SV" => e
            .integers()
            .unwrap_or_default()
            .iter()
            .map(i128::to_string)
            .collect(),
        b"AT" => e
            .bytes()
            .unwrap_or_default()
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]).to_string())
            .collect(),
        _ => Vec::new(),
    }
}
