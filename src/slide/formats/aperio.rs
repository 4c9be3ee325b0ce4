//! Aperio SVS: a tiled TIFF whose first ImageDescription starts with "Aperio". Tiled
//! directories are the levels, in file order; the untiled second directory is the
//! thumbnail; NewSubfileType 1 marks the label and 9 the macro image.

use super::{Format, Opened, Probe};
use crate::slide::error::Result;
use crate::slide::grid::TileGrid;
use crate::slide::properties::{self, parse_double, tiff_properties, Properties};
use crate::slide::tiff_image::TiffImage;
use crate::slide::tifflike::tag;
use crate::slide::Mpp;
use std::sync::Arc;

pub(super) const FORMAT: Format = Format {
    name: "aperio",
    why: "a tiled TIFF whose first ImageDescription starts with \"Aperio\"",
    detect,
    open,
};

fn detect(probe: &Probe) -> bool {
    let Some(tiff) = probe.tiff else { return false };
    let d0 = &tiff.directories[0];
    d0.is_tiled()
        && d0
            .string(tag::IMAGE_DESCRIPTION)
            .is_some_and(|d| d.starts_with("Aperio"))
}

fn open(probe: &Probe) -> Result<Opened> {
    let (file, tiff) = (probe.file.clone(), probe.tiff()?);
    let mut levels: Vec<Arc<dyn TileGrid>> = Vec::new();
    let mut associated: Vec<(String, Arc<dyn TileGrid>)> = Vec::new();
    for (i, dir) in tiff.directories.iter().enumerate() {
        if dir.is_tiled() {
            levels.push(Arc::new(TiffImage::new(file.clone(), dir)?));
            continue;
        }
        let name = match (i, dir.uint(tag::NEW_SUBFILE_TYPE)?) {
            (1, _) => "thumbnail",
            (_, Some(1)) => "label",
            (_, Some(9)) => "macro",
            _ => continue,
        };
        associated.push((name.to_string(), Arc::new(TiffImage::new(file.clone(), dir)?)));
    }

    let d0 = &tiff.directories[0];
    let mut props = Properties::new();
    tiff_properties(d0, &mut props);
    properties::icc_property(d0, &mut props);
    let description = d0.string(tag::IMAGE_DESCRIPTION).unwrap_or_default();
    for (key, value) in parse_description(&description) {
        props.insert(format!("aperio.{key}"), value);
    }
    // As stated, nonsense included (NaN for text that is no number): the slide's
    // plausibility check reports it.
    let mpp = props
        .get("aperio.MPP")
        .map(|v| properties::parse_any_double(v).unwrap_or(f64::NAN))
        .map(|m| Mpp {
            x: m,
            y: m,
            source: "aperio.MPP".into(),
        });
    if let Some(power) = props.get("aperio.AppMag").and_then(|v| parse_double(v)) {
        props.insert(
            properties::OBJECTIVE_POWER.into(),
            properties::format_double(power),
        );
    }
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

/// The `key = value` pairs of an Aperio ImageDescription: `|`-separated after a free-text
/// first segment.
fn parse_description(description: &str) -> Vec<(String, String)> {
    description
        .split('|')
        .skip(1)
        .filter_map(|seg| {
            let (k, v) = seg.split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn description_pairs() {
        let d = "Aperio Image Library v11.2.1 \r\n46000x32914 [0,0 46000x32914] JPEG/RGB Q=30|AppMag = 20|MPP = 0.4990|Left = 25.691574|junk";
        let pairs = super::parse_description(d);
        assert_eq!(pairs[0], ("AppMag".into(), "20".into()));
        assert_eq!(pairs[1], ("MPP".into(), "0.4990".into()));
        assert_eq!(pairs.len(), 3);
    }
}
