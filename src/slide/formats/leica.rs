//! Leica SCN: a (Big)TIFF whose first ImageDescription is an `scn` document in one of
//! Leica's two namespaces. The document's collection is the glass; its images are scans of
//! parts of it: the brightfield one covering the whole collection is the macro, the other
//! brightfield ones are the main images. Every main image is placed on the glass at its
//! offset (all of them, in document order, as OpenSlide composites them): level k is the
//! collection at the finest k-th resolution of the main images, transparent where no image
//! lies, with the images' rectangles as `openslide.region[i].*` and their union as the
//! bounds. Only the first focal plane (z = 0) is read; fluorescence slides are refused.

use super::{Format, Opened, Probe};
use crate::slide::error::{corrupt, unsupported, Result};
use crate::slide::grid::TileGrid;
use crate::slide::mosaic::Mosaic;
use crate::slide::properties::{self, resolution_mpp, tiff_properties, Properties};
use crate::slide::tiff_image::TiffImage;
use crate::slide::tifflike::{tag, Directory, TiffFile};
use crate::slide::xml::{self, Element};
use crate::util::base64::decode_lenient;
use std::sync::Arc;

pub(super) const FORMAT: Format = Format {
    name: "leica",
    why: "a tiled TIFF whose ImageDescription is a Leica SCN document",
    detect,
    open,
};

const NAMESPACES: [&str; 2] = [
    "http://www.leica-microsystems.com/scn/2010/03/10",
    "http://www.leica-microsystems.com/scn/2010/10/01",
];

/// Main images' resolutions must agree this closely (OpenSlide's rule).
const RESOLUTION_TOLERANCE: f64 = 0.02;
/// Main images of one slide, beyond which it is refused (scanners write a handful).
const MAX_MAIN_IMAGES: usize = 256;
/// Largest level side accepted, as for any TIFF image.
const MAX_LEVEL_SIDE: f64 = (1u64 << 31) as f64;

fn detect(probe: &Probe) -> bool {
    let Some(tiff) = probe.tiff else { return false };
    let d0 = &tiff.directories[0];
    d0.is_tiled() && document(d0).is_some()
}

/// The SCN document of the first directory, when it is one.
fn document(d0: &Directory) -> Option<Element> {
    let description = d0.string(tag::IMAGE_DESCRIPTION)?;
    if !NAMESPACES.iter().any(|ns| description.contains(ns)) {
        return None;
    }
    let root = xml::parse(&description).ok()?;
    let in_namespace = root
        .attributes
        .iter()
        .any(|(k, v)| (k == "xmlns" || k.starts_with("xmlns:")) && NAMESPACES.contains(&v.as_str()));
    (root.name == "scn" && in_namespace).then_some(root)
}

/// One scanned image of the collection.
struct Scan<'a> {
    element: &'a Element,
    /// Its rectangle on the glass, in nanometres.
    offset_nm: (i64, i64),
    size_nm: (i64, i64),
    illumination: Option<&'a str>,
    objective: Option<&'a str>,
    /// Its stored resolutions of focal plane 0, largest first: (directory, nm per pixel).
    resolutions: Vec<(usize, f64)>,
}

fn open(probe: &Probe) -> Result<Opened> {
    let (file, tiff) = (probe.file.clone(), probe.tiff()?);
    let root = document(&tiff.directories[0]).ok_or_else(|| corrupt("Leica XML vanished between reads"))?;
    let collection = root
        .child("collection")
        .ok_or_else(|| corrupt("Leica XML has no collection"))?;
    let glass_nm = (integer(collection, "sizeX")?, integer(collection, "sizeY")?);
    let scans: Vec<Scan> = collection
        .children_named("image")
        .map(|image| scan(image, glass_nm))
        .collect::<Result<_>>()?;
    if scans.is_empty() {
        return Err(corrupt("Leica XML lists no images"));
    }
    let brightfield = |s: &&Scan| s.illumination == Some("brightfield");
    let is_macro = |s: &Scan| s.offset_nm == (0, 0) && s.size_nm == glass_nm;
    let mains: Vec<&Scan> = scans
        .iter()
        .filter(|s| !is_macro(s))
        .filter(brightfield)
        .collect();
    let macros: Vec<&Scan> = scans.iter().filter(|s| is_macro(s)).filter(brightfield).collect();
    let Some(first) = mains.first() else {
        return Err(unsupported(
            "Leica SCN without a brightfield image (fluorescence slides are not read)",
        ));
    };
    if mains.len() > MAX_MAIN_IMAGES {
        return Err(unsupported(format!(
            "Leica SCN with {} main images (at most {MAX_MAIN_IMAGES} are read)",
            mains.len()
        )));
    }
    if macros.len() > 1 {
        return Err(corrupt(format!("Leica XML has {} macro images", macros.len())));
    }
    for m in &mains[1..] {
        if m.objective != first.objective || m.resolutions.len() != first.resolutions.len() {
            return Err(unsupported(
                "Leica SCN whose main images differ in objective or resolutions",
            ));
        }
    }

    let mut levels: Vec<Arc<dyn TileGrid>> = Vec::new();
    let mut regions = Vec::new();
    for k in 0..first.resolutions.len() {
        let first_nm = first.resolutions[k].1;
        let mut nm_per_pixel = first_nm;
        for m in &mains[1..] {
            let nm = m.resolutions[k].1;
            if 1.0 - (nm - first_nm).abs() / first_nm < 1.0 - RESOLUTION_TOLERANCE {
                return Err(unsupported(format!(
                    "Leica SCN whose main images' resolutions differ ({nm} against {first_nm} nm a pixel)"
                )));
            }
            nm_per_pixel = nm_per_pixel.min(nm);
        }
        let pixels = |nm: i64| nm as f64 / nm_per_pixel;
        let (width, height) = (pixels(glass_nm.0).ceil(), pixels(glass_nm.1).ceil());
        if !(width >= 1.0 && height >= 1.0 && width <= MAX_LEVEL_SIDE && height <= MAX_LEVEL_SIDE) {
            return Err(corrupt(format!(
                "Leica level {k} would be {width}x{height} pixels ({nm_per_pixel} nm a pixel over a {}x{} nm collection)",
                glass_nm.0, glass_nm.1
            )));
        }
        let (width, height) = (width as u64, height as u64);
        let mut parts: Vec<(Arc<dyn TileGrid>, i64, i64)> = Vec::new();
        for m in &mains {
            let dir = directory(tiff, m.resolutions[k].0)?;
            let image = TiffImage::new(file.clone(), dir)?;
            // Each image's stored pixels land unscaled at its offset, truncated.
            let (x, y) = (pixels(m.offset_nm.0) as i64, pixels(m.offset_nm.1) as i64);
            if k == 0 {
                regions.push((x, y, dir.width()?, dir.height()?));
            }
            parts.push((Arc::new(image), x, y));
        }
        levels.push(Arc::new(Mosaic::new(width, height, parts)?));
    }

    let mut associated: Vec<(String, Arc<dyn TileGrid>)> = Vec::new();
    if let Some(m) = macros.first() {
        let dir = directory(tiff, m.resolutions[0].0)?;
        associated.push(("macro".into(), Arc::new(TiffImage::new(file.clone(), dir)?)));
    }

    let property_dir = directory(tiff, first.resolutions[0].0)?;
    let mut props = Properties::new();
    tiff_properties(property_dir, &mut props);
    props.remove("tiff.ImageDescription");
    props.remove(properties::COMMENT);
    leica_properties(collection, first, &mut props);
    for (i, &(x, y, w, h)) in regions.iter().enumerate() {
        for (name, v) in [("x", x), ("y", y), ("width", w as i64), ("height", h as i64)] {
            props.insert(format!("openslide.region[{i}].{name}"), v.to_string());
        }
    }
    let (x0, y0) = (
        regions.iter().map(|r| r.0).min(),
        regions.iter().map(|r| r.1).min(),
    );
    let x1 = regions.iter().map(|r| r.0 + r.2 as i64).max();
    let y1 = regions.iter().map(|r| r.1 + r.3 as i64).max();
    if let (Some(x0), Some(y0), Some(x1), Some(y1)) = (x0, y0, x1, y1) {
        for (name, v) in [("x", x0), ("y", y0), ("width", x1 - x0), ("height", y1 - y0)] {
            props.insert(format!("openslide.bounds-{name}"), v.to_string());
        }
    }
    Ok(Opened {
        vendor: FORMAT.name,
        detected_by: FORMAT.why.into(),
        levels,
        downsamples: Vec::new(),
        tile_hints: false,
        associated,
        properties: props,
        // The main image's TIFF resolution, as OpenSlide takes it (not the XML's nanometres).
        mpp: resolution_mpp(property_dir),
    })
}

fn scan(image: &Element, glass_nm: (i64, i64)) -> Result<Scan<'_>> {
    let mut views = image.children_named("view");
    let view = match (views.next(), views.next()) {
        (Some(v), None) => v,
        _ => return Err(corrupt("a Leica image without exactly one view")),
    };
    let size_nm = (integer(view, "sizeX")?, integer(view, "sizeY")?);
    let offset_nm = (integer(view, "offsetX")?, integer(view, "offsetY")?);
    if size_nm.0 <= 0
        || size_nm.1 <= 0
        || offset_nm.0 < 0
        || offset_nm.1 < 0
        || offset_nm.0 > glass_nm.0
        || offset_nm.1 > glass_nm.1
    {
        return Err(corrupt(format!(
            "a Leica image of {}x{} nm at {},{} on a {}x{} nm collection",
            size_nm.0, size_nm.1, offset_nm.0, offset_nm.1, glass_nm.0, glass_nm.1
        )));
    }
    let mut resolutions = Vec::new();
    for d in image
        .children_named("pixels")
        .flat_map(|p| p.children_named("dimension"))
    {
        // Focal planes other than the first are not read.
        if d.attr("z").is_some_and(|z| z != "0") {
            continue;
        }
        let width = integer(d, "sizeX")?;
        integer(d, "sizeY")?;
        let ifd = integer(d, "ifd")?;
        if width <= 0 || ifd < 0 {
            return Err(corrupt(format!(
                "a Leica dimension of width {width} in directory {ifd}"
            )));
        }
        resolutions.push((ifd as usize, size_nm.0 as f64 / width as f64));
    }
    if resolutions.is_empty() {
        return Err(corrupt("a Leica image without dimensions"));
    }
    // Finest first (the widest, the fewest nanometres a pixel).
    resolutions.sort_by(|a, b| a.1.total_cmp(&b.1));
    Ok(Scan {
        element: image,
        offset_nm,
        size_nm,
        illumination: setting(image, &["illuminationSettings", "illuminationSource"]),
        objective: setting(image, &["objectiveSettings", "objective"]),
        resolutions,
    })
}

/// The text of an element under the image's scanSettings.
fn setting<'a>(image: &'a Element, path: &[&str]) -> Option<&'a str> {
    let mut e = image.child("scanSettings")?;
    for name in path {
        e = e.child(name)?;
    }
    Some(e.text.as_str())
}

/// A whole decimal integer attribute.
fn integer(element: &Element, name: &str) -> Result<i64> {
    let v = element
        .attr(name)
        .ok_or_else(|| corrupt(format!("Leica XML <{}> lacks {name}", element.name)))?;
    v.trim_start().parse().map_err(|_| {
        corrupt(format!(
            "Leica XML <{}> {name}=\"{v}\" is not an integer",
            element.name
        ))
    })
}

fn directory(tiff: &TiffFile, index: usize) -> Result<&Directory> {
    tiff.directories.get(index).ok_or_else(|| {
        corrupt(format!(
            "Leica XML names directory {index}; the file has {}",
            tiff.directories.len()
        ))
    })
}

/// leica.* from the first main image, the barcode and the objective power.
fn leica_properties(collection: &Element, main: &Scan, props: &mut Properties) {
    let barcode = match collection.child("barcode") {
        Some(b) => {
            let bytes = decode_lenient(&b.text);
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
        }
        None => collection.attr("barcode").map(str::to_string),
    };
    if let Some(b) = barcode {
        props.insert("leica.barcode".into(), b.clone());
        props.insert("openslide.barcode".into(), b);
    }
    let image = main.element;
    let device = image.child("device");
    let values = [
        (
            "leica.aperture",
            setting(image, &["illuminationSettings", "numericalAperture"]).map(str::to_string),
        ),
        (
            "leica.creation-date",
            image.child("creationDate").map(|e| e.text.clone()),
        ),
        (
            "leica.device-model",
            device.and_then(|d| d.attr("model")).map(str::to_string),
        ),
        (
            "leica.device-version",
            device.and_then(|d| d.attr("version")).map(str::to_string),
        ),
        ("leica.illumination-source", main.illumination.map(str::to_string)),
        ("leica.objective", main.objective.map(str::to_string)),
    ];
    for (name, value) in values {
        if let Some(v) = value {
            props.insert(name.into(), v);
        }
    }
    // A whole number only ("20"; not "20.0"), as OpenSlide reads it.
    if let Some(power) = main.objective.and_then(|o| o.trim_start().parse::<i64>().ok()) {
        props.insert(properties::OBJECTIVE_POWER.into(), power.to_string());
    }
}
