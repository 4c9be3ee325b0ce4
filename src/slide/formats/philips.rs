//! Philips TIFF (exported from iSyntax by Philips' tools): a TIFF whose Software starts with
//! "Philips" and whose first ImageDescription is a `DataObject` XML document of type
//! DPUfsImport. Tiled directories are the levels; their stored sizes are padded to whole
//! tiles, so each reduced level's size comes from its pixel spacing in the XML (the mean of
//! the two axes' ratios to level 0, rounded: the level's downsample), as OpenSlide computes
//! it, and pixels past it are transparent. Tiles the scanner left out (byte count 0) are
//! transparent. Label and macro are untiled directories described "Label…" / "Macro…", or
//! base64 JPEG inside the XML. The XML's attributes become `philips.*` properties.

use super::{Format, Opened, Probe};
use crate::slide::encoded_image::EncodedJpeg;
use crate::slide::error::{corrupt, unsupported, Result};
use crate::slide::grid::TileGrid;
use crate::slide::io::SlideFile;
use crate::slide::properties::{self, parse_double, tiff_properties, Properties};
use crate::slide::tiff_image::TiffImage;
use crate::slide::tifflike::{tag, Directory};
use crate::slide::xml::{self, Element};
use crate::slide::Mpp;
use crate::util::base64::decode_lenient;
use std::sync::Arc;

pub(super) const FORMAT: Format = Format {
    name: "philips",
    why:
        "a TIFF whose Software starts with \"Philips\" and whose ImageDescription is a DPUfsImport DataObject",
    detect,
    open,
};

const SCANNED_IMAGES: &str = "PIM_DP_SCANNED_IMAGES";
const PIXEL_DATA_SEQUENCE: &str = "PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE";

fn detect(probe: &Probe) -> bool {
    let Some(tiff) = probe.tiff else { return false };
    let d0 = &tiff.directories[0];
    d0.string(tag::SOFTWARE).is_some_and(|s| s.starts_with("Philips")) && document(d0).is_some()
}

/// The DPUfsImport document of the first directory; `None` (not Philips) when absent or
/// unparseable, as OpenSlide then reads the file as a generic TIFF.
fn document(d0: &Directory) -> Option<Element> {
    let root = xml::parse(&d0.string(tag::IMAGE_DESCRIPTION)?).ok()?;
    (root.name == "DataObject" && root.attr("ObjectType") == Some("DPUfsImport")).then_some(root)
}

fn open(probe: &Probe) -> Result<Opened> {
    let (file, tiff) = (probe.file.clone(), probe.tiff()?);
    let d0 = &tiff.directories[0];
    let root = document(d0).ok_or_else(|| corrupt("Philips XML vanished between reads"))?;
    let wsi: Vec<&Element> = scanned_images(&root, "WSI").collect();
    if wsi.len() != 1 {
        return Err(unsupported(format!(
            "Philips TIFF with {} whole-slide images in its XML (one is read)",
            wsi.len()
        )));
    }

    let mut tiled: Vec<&Directory> = Vec::new();
    let (mut label, mut macro_image) = (None, None);
    for (i, dir) in tiff.directories.iter().enumerate() {
        if dir.is_tiled() {
            if let Some(previous) = tiled.last() {
                if dir.uint(tag::NEW_SUBFILE_TYPE)?.is_none_or(|t| t & 1 != 1) {
                    return Err(corrupt(format!(
                        "directory {i} is tiled but not marked as a reduced-resolution image"
                    )));
                }
                if dir.width()? > previous.width()? || dir.height()? > previous.height()? {
                    return Err(corrupt(format!(
                        "directory {i} is larger than the level before it"
                    )));
                }
            }
            tiled.push(dir);
            continue;
        }
        let description = dir.string(tag::IMAGE_DESCRIPTION).unwrap_or_default();
        // The last of each wins, as in OpenSlide.
        if description.starts_with("Label") {
            label = Some(dir);
        } else if description.starts_with("Macro") {
            macro_image = Some(dir);
        }
    }
    let (levels, downsamples) = levels(&file, &tiled, wsi[0])?;

    let mut associated: Vec<(String, Arc<dyn TileGrid>)> = Vec::new();
    for (name, dir, kind) in [
        ("label", label, "LABELIMAGE"),
        ("macro", macro_image, "MACROIMAGE"),
    ] {
        let grid: Option<Arc<dyn TileGrid>> = match dir {
            Some(dir) => Some(Arc::new(TiffImage::new(file.clone(), dir)?)),
            // An image in the XML that does not decode is left out, as OpenSlide leaves it.
            None => xml_image(&root, kind).map(|g| Arc::new(g) as Arc<dyn TileGrid>),
        };
        if let Some(grid) = grid {
            associated.push((name.into(), grid));
        }
    }

    let mut props = Properties::new();
    tiff_properties(d0, &mut props);
    // The XML is not a property: its attributes are.
    props.remove("tiff.ImageDescription");
    props.remove(properties::COMMENT);
    flatten("philips", &root, &mut props);
    let mpp = props
        .get("philips.DICOM_PIXEL_SPACING")
        .and_then(|s| spacing(s))
        .map(|(columns, rows)| Mpp {
            x: 1000.0 * columns,
            y: 1000.0 * rows,
            source: "philips.DICOM_PIXEL_SPACING".into(),
        });
    if let Some(power) = props
        .get("philips.DICOM_DERIVATION_DESCRIPTION")
        .and_then(|d| objective_power(d))
    {
        props.insert(properties::OBJECTIVE_POWER.into(), power.to_string());
    }
    if let Some(code) = props.get("philips.PIM_DP_UFS_BARCODE") {
        let bytes = decode_lenient(code);
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        props.insert(
            "openslide.barcode".into(),
            String::from_utf8_lossy(&bytes[..end]).into_owned(),
        );
    }
    Ok(Opened {
        vendor: FORMAT.name,
        detected_by: FORMAT.why.into(),
        levels,
        downsamples,
        tile_hints: true,
        associated,
        properties: props,
        mpp,
    })
}

/// The scanned images of a type (WSI, LABELIMAGE, MACROIMAGE) the document lists.
fn scanned_images<'a>(root: &'a Element, kind: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
    named_attributes(root, SCANNED_IMAGES)
        .flat_map(|a| a.children_named("Array"))
        .flat_map(|a| a.children_named("DataObject"))
        .filter(move |d| is_of_type(d, kind))
}

/// A scanned image has a PIM_DP_IMAGE_TYPE attribute, and an attribute whose text is `kind`.
fn is_of_type(object: &Element, kind: &str) -> bool {
    object
        .children_named("Attribute")
        .any(|a| a.attr("Name") == Some("PIM_DP_IMAGE_TYPE"))
        && object.children_named("Attribute").any(|a| a.text == kind)
}

fn named_attributes<'a>(object: &'a Element, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
    object
        .children_named("Attribute")
        .filter(move |a| a.attr("Name") == Some(name))
}

type LevelsAndDownsamples = (Vec<Arc<dyn TileGrid>>, Vec<f64>);

/// Each tiled directory as a level of the size its pixel spacing gives, and the levels'
/// downsamples.
fn levels(file: &Arc<SlideFile>, tiled: &[&Directory], wsi: &Element) -> Result<LevelsAndDownsamples> {
    let spacings: Vec<&str> = named_attributes(wsi, PIXEL_DATA_SEQUENCE)
        .flat_map(|a| a.children_named("Array"))
        .flat_map(|a| a.children_named("DataObject"))
        .filter(|d| d.attr("ObjectType") == Some("PixelDataRepresentation"))
        .flat_map(|d| named_attributes(d, "DICOM_PIXEL_SPACING"))
        .map(|a| a.text.as_str())
        .collect();
    if tiled.is_empty() || spacings.len() != tiled.len() {
        return Err(corrupt(format!(
            "Philips XML gives {} pixel spacings for {} tiled levels",
            spacings.len(),
            tiled.len()
        )));
    }
    let spacings: Vec<(f64, f64)> = spacings
        .iter()
        .enumerate()
        .map(|(k, s)| {
            spacing(s).filter(|&(c, r)| c > 0.0 && r > 0.0).ok_or_else(|| {
                corrupt(format!(
                    "Philips level {k}: pixel spacing \"{s}\" is not two positive numbers"
                ))
            })
        })
        .collect::<Result<_>>()?;
    let (width0, height0) = (tiled[0].width()?, tiled[0].height()?);
    let (columns0, rows0) = spacings[0];
    let mut levels: Vec<Arc<dyn TileGrid>> = Vec::new();
    let mut downsamples = Vec::new();
    let mut previous = 1.0;
    for (k, (dir, &(columns, rows))) in tiled.iter().zip(&spacings).enumerate() {
        // The mean of the two axes' ratios, rounded half away from zero (C's round).
        let downsample = ((columns / columns0 + rows / rows0) / 2.0).round();
        let (width, height) = (
            (width0 as f64 / downsample) as u64,
            (height0 as f64 / downsample) as u64,
        );
        if !downsample.is_finite() || downsample < previous || width == 0 || height == 0 {
            return Err(corrupt(format!(
                "Philips level {k}: pixel spacing gives a downsample of {downsample} after {previous}"
            )));
        }
        previous = downsample;
        downsamples.push(downsample);
        if width > dir.width()? || height > dir.height()? {
            return Err(corrupt(format!(
                "Philips level {k}: its pixel spacing makes it {width}x{height}, larger than the {}x{} stored",
                dir.width()?,
                dir.height()?
            )));
        }
        let image = TiffImage::new(file.clone(), dir)?.shown_as(width, height)?;
        levels.push(Arc::new(image));
    }
    Ok((levels, downsamples))
}

/// A DICOM pixel spacing `"rows" "columns"` (in mm) as (columns, rows): two fields split on
/// single spaces, quotes dropped, as OpenSlide parses it.
fn spacing(text: &str) -> Option<(f64, f64)> {
    let fields: Vec<&str> = text.split(' ').collect();
    let [rows, columns] = fields[..] else { return None };
    let number = |f: &str| parse_double(&f.replace('"', " "));
    Some((number(columns)?, number(rows)?))
}

/// The objective power a derivation description states as its first `levels=` value
/// (`…-levels=20,10,5-…`), when that is 1 to 200.
fn objective_power(description: &str) -> Option<u32> {
    for item in description.split('-') {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        match key {
            "sourceFilename" => return None,
            "levels" if !value.is_empty() => {
                let first = value.split(',').next()?.trim_start();
                let power: u32 = first.strip_prefix('+').unwrap_or(first).parse().ok()?;
                return (1..=200).contains(&power).then_some(power);
            }
            _ => {}
        }
    }
    None
}

/// A label or macro kept in the XML as base64 JPEG (the first image of that type).
fn xml_image(root: &Element, kind: &str) -> Option<EncodedJpeg> {
    let object = scanned_images(root, kind).next()?;
    let data = named_attributes(object, "PIM_DP_IMAGE_DATA").next()?;
    EncodedJpeg::new(decode_lenient(&data.text)).ok()
}

/// `prefix.Name` for each leaf attribute of an object; the whole-slide image's attributes
/// join its parent's, and the pixel data sequence's objects are numbered.
fn flatten(prefix: &str, object: &Element, props: &mut Properties) {
    for a in object.children_named("Attribute") {
        let Some(name) = a.attr("Name") else { continue };
        match name {
            SCANNED_IMAGES => {
                let wsi = a
                    .children_named("Array")
                    .flat_map(|a| a.children_named("DataObject"))
                    .find(|d| is_of_type(d, "WSI"));
                if let Some(wsi) = wsi {
                    flatten(prefix, wsi, props);
                }
            }
            PIXEL_DATA_SEQUENCE => {
                let objects = a
                    .children_named("Array")
                    .flat_map(|a| a.children_named("DataObject"));
                for (i, o) in objects.enumerate() {
                    flatten(&format!("{prefix}.{name}[{i}]"), o, props);
                }
            }
            _ if a.children.is_empty() => {
                props.insert(format!("{prefix}.{name}"), a.text.clone());
            }
            // Other nested arrays are left out, as OpenSlide leaves them.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spacing_and_objective_power_parse_as_openslide_does() {
        assert_eq!(
            super::spacing("\"0.000250119\" \"0.000240211\""),
            Some((0.000240211, 0.000250119))
        );
        assert_eq!(super::spacing("\"0.00025\"  \"0.00024\""), None);
        assert_eq!(super::spacing("0.1"), None);
        let d = "tiff-useBigTIFF=1-levels=10003,10002,10000,10001-q80-sourceFilename=\"a-b.isyntax\"";
        assert_eq!(super::objective_power(d), None);
        assert_eq!(super::objective_power("x-levels=20,10,5-q80"), Some(20));
        assert_eq!(super::objective_power("sourceFilename=x-levels=20"), None);
    }
}
