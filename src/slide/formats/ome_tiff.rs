//! OME-TIFF as QuPath, bfconvert and other Bio-Formats writers make it: the OME-XML in the
//! first directory's ImageDescription describes images; the first image is the slide, read
//! when it is brightfield RGB (8-bit, three interleaved samples, one plane: no z, no time),
//! its levels the plane's directory and that directory's SubIFDs (OME's pyramid), as tifffile
//! reads them (OpenSlide does not read OME-TIFF). Other images named label, macro or
//! thumbnail are associated images. Fluorescence, multi-channel, z-stacks and time series
//! are refused with what they are.

use super::{Format, Opened, Probe};
use crate::slide::error::{corrupt, unsupported, Result};
use crate::slide::grid::TileGrid;
use crate::slide::properties::{self, format_double, parse_double, tiff_properties, Properties};
use crate::slide::tiff_image::TiffImage;
use crate::slide::tifflike::{tag, Directory, TiffFile};
use crate::slide::xml::{self, Element};
use crate::slide::Mpp;
use std::sync::Arc;

pub(super) const FORMAT: Format = Format {
    name: "ome-tiff",
    why: "a TIFF whose first ImageDescription is OME-XML",
    detect,
    open,
};

fn detect(probe: &Probe) -> bool {
    let Some(tiff) = probe.tiff else { return false };
    tiff.directories[0]
        .string(tag::IMAGE_DESCRIPTION)
        .is_some_and(|d| looks_like_ome(&d))
}

/// OME-XML's root is an `OME` element in an openmicroscopy.org schema namespace.
fn looks_like_ome(description: &str) -> bool {
    let start = description.trim_start();
    (start.starts_with("<?xml") || start.starts_with("<OME"))
        && description.contains("<OME")
        && description.contains("openmicroscopy.org/Schemas/OME")
}

fn open(probe: &Probe) -> Result<Opened> {
    let (file, tiff) = (probe.file.clone(), probe.tiff()?);
    let d0 = &tiff.directories[0];
    let description = d0.string(tag::IMAGE_DESCRIPTION).unwrap_or_default();
    let root = xml::parse(&description)?;
    if root.name != "OME" {
        return Err(corrupt(format!("OME-XML's root is <{}>, not <OME>", root.name)));
    }
    let images: Vec<&Element> = root.children_named("Image").collect();
    let (main, others) = images
        .split_first()
        .ok_or_else(|| corrupt("OME-XML describes no image"))?;
    let pixels = brightfield_pixels(main)?;
    let page = first_plane_directory(tiff, pixels, images.len())?;

    // Bio-Formats writes YCbCr JPEG tiles under photometric RGB: their markers say which.
    let tiff_image =
        |dir: &Directory| TiffImage::new(file.clone(), dir).map(TiffImage::jpeg_colour_as_marked);
    let mut levels: Vec<Arc<dyn TileGrid>> = vec![Arc::new(tiff_image(page)?)];
    let mut width = page.width()?;
    for sub in &page.sub_directories {
        // Each SubIFD a smaller resolution of the plane; anything else is not a pyramid.
        let w = sub.width()?;
        if w >= width {
            return Err(corrupt(format!(
                "OME-TIFF SubIFD at offset {} is {w} pixels wide, not smaller than the level before ({width})",
                sub.offset
            )));
        }
        width = w;
        levels.push(Arc::new(tiff_image(sub)?));
    }

    let mut associated: Vec<(String, Arc<dyn TileGrid>)> = Vec::new();
    for image in others {
        let Some(name) = associated_name(image.attr("Name").unwrap_or("")) else {
            continue;
        };
        if associated.iter().any(|(n, _)| n == name) {
            continue;
        }
        let Some(pixels) = image.child("Pixels") else {
            continue;
        };
        // An associated image that is not a plain RGB picture is left out, not an error.
        if brightfield_pixels(image).is_err() {
            continue;
        }
        let dir = first_plane_directory(tiff, pixels, images.len())?;
        associated.push((name.into(), Arc::new(tiff_image(dir)?)));
    }

    let mut props = Properties::new();
    tiff_properties(d0, &mut props);
    properties::icc_property(page, &mut props);
    let mpp = ome_properties(&root, main, pixels, &mut props);
    Ok(Opened {
        vendor: FORMAT.name,
        detected_by: FORMAT.why.into(),
        levels,
        downsamples: Vec::new(),
        tile_hints: true,
        associated,
        properties: props,
        mpp,
    })
}

/// The image's Pixels element when it is one brightfield RGB plane; what it is otherwise.
fn brightfield_pixels(image: &Element) -> Result<&Element> {
    let pixels = image
        .child("Pixels")
        .ok_or_else(|| corrupt("OME-XML image without Pixels"))?;
    let size = |name: &str| -> Result<u64> {
        match pixels.attr(name) {
            None => Ok(1),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| corrupt(format!("OME-XML Pixels {name}=\"{v}\" is not a count"))),
        }
    };
    let (c, z, t) = (size("SizeC")?, size("SizeZ")?, size("SizeT")?);
    let kind = pixels.attr("Type").unwrap_or("");
    let samples: Vec<u64> = pixels
        .children_named("Channel")
        .map(|ch| {
            ch.attr("SamplesPerPixel")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(1)
        })
        .collect();
    if kind != "uint8" || z > 1 || t > 1 || c != 3 || samples != [3] {
        let planes = if samples.len() > 1 {
            " in separate planes"
        } else {
            ""
        };
        return Err(unsupported(format!(
            "OME-TIFF of {c} channels{planes}, {z} z-planes, {t} time points, {kind} samples: \
             only brightfield RGB (3 interleaved uint8 samples, one plane) is read"
        )));
    }
    Ok(pixels)
}

/// The directory holding the image's first plane (its first TiffData's IFD; IFD 0 when the
/// file holds a single image and says nothing).
fn first_plane_directory<'a>(tiff: &'a TiffFile, pixels: &Element, images: usize) -> Result<&'a Directory> {
    let ifd = match pixels.child("TiffData") {
        Some(td) => match td.attr("IFD") {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| corrupt(format!("OME-XML TiffData IFD=\"{v}\" is not an index")))?,
            None => 0,
        },
        None if images == 1 => 0,
        None => {
            return Err(corrupt(
                "OME-XML image without TiffData, in a file of several images",
            ))
        }
    };
    tiff.directories.get(ifd).ok_or_else(|| {
        corrupt(format!(
            "OME-XML puts an image in directory {ifd}; the file has {}",
            tiff.directories.len()
        ))
    })
}

/// An OME image's name as an associated image's, when it is one.
fn associated_name(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    ["label", "macro", "thumbnail"]
        .into_iter()
        .find(|n| name.contains(n))
        .or_else(|| name.contains("overview").then_some("macro"))
}

/// ome.* properties of the slide's image, its objective power; returns its MPP.
fn ome_properties(root: &Element, image: &Element, pixels: &Element, props: &mut Properties) -> Option<Mpp> {
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(v) = value {
            props.insert(format!("ome.{key}"), v.to_string());
        }
    };
    put("Image.Name", image.attr("Name"));
    put(
        "Image.AcquisitionDate",
        image.child("AcquisitionDate").map(|e| e.text.trim()),
    );
    for key in [
        "SizeX",
        "SizeY",
        "SizeC",
        "DimensionOrder",
        "PhysicalSizeX",
        "PhysicalSizeXUnit",
        "PhysicalSizeY",
        "PhysicalSizeYUnit",
    ] {
        put(&format!("Pixels.{key}"), pixels.attr(key));
    }
    let magnification = image
        .child("ObjectiveSettings")
        .and_then(|s| s.attr("ID"))
        .and_then(|id| {
            root.children_named("Instrument")
                .flat_map(|i| i.children_named("Objective"))
                .find(|o| o.attr("ID") == Some(id))
        })
        .and_then(|o| o.attr("NominalMagnification"));
    put("Objective.NominalMagnification", magnification);
    if let Some(power) = magnification.and_then(parse_double) {
        props.insert(properties::OBJECTIVE_POWER.into(), format_double(power));
    }
    let micrometres = |axis: &str| -> Option<f64> {
        let v = parse_double(pixels.attr(&format!("PhysicalSize{axis}"))?)?;
        let unit = pixels.attr(&format!("PhysicalSize{axis}Unit")).unwrap_or("µm");
        Some(v * micrometres_per(unit)?)
    };
    let (x, y) = (micrometres("X")?, micrometres("Y")?);
    Some(Mpp {
        x,
        y,
        source: "OME-XML PhysicalSizeX/Y".into(),
    })
}

/// Micrometres in one of OME's length units.
fn micrometres_per(unit: &str) -> Option<f64> {
    Some(match unit {
        "m" => 1e6,
        "cm" => 1e4,
        "mm" => 1e3,
        "µm" | "um" | "\u{3bc}m" => 1.0,
        "nm" => 1e-3,
        "pm" => 1e-6,
        "Å" => 1e-4,
        _ => return None,
    })
}
