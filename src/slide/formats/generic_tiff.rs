//! Generic tiled pyramidal TIFF and BigTIFF: the first directory plus every tiled directory
//! marked as a reduced-resolution image, sorted largest first; MPP from the resolution tags.

use super::{Format, Opened, Probe};
use crate::slide::error::Result;
use crate::slide::grid::TileGrid;
use crate::slide::properties::{icc_property, resolution_mpp, tiff_properties, Properties};
use crate::slide::tiff_image::TiffImage;
use crate::slide::tifflike::tag;
use std::sync::Arc;

pub(super) const FORMAT: Format = Format {
    name: "generic-tiff",
    why: "a TIFF whose first directory is tiled (no more specific format claims it)",
    detect,
    open,
};

fn detect(probe: &Probe) -> bool {
    let Some(tiff) = probe.tiff else { return false };
    tiff.directories[0].is_tiled()
}

fn open(probe: &Probe) -> Result<Opened> {
    let (file, tiff) = (probe.file.clone(), probe.tiff()?);
    let mut levels: Vec<(u64, Arc<TiffImage>)> = Vec::new();
    for (i, dir) in tiff.directories.iter().enumerate() {
        let reduced = dir.uint(tag::NEW_SUBFILE_TYPE)?.is_some_and(|t| t & 1 == 1);
        if dir.is_tiled() && (i == 0 || reduced) {
            levels.push((dir.width()?, Arc::new(TiffImage::new(file.clone(), dir)?)));
        }
    }
    // Stable: directories of equal width keep their file order.
    levels.sort_by_key(|l| std::cmp::Reverse(l.0));
    let d0 = &tiff.directories[0];
    let mut props = Properties::new();
    tiff_properties(d0, &mut props);
    icc_property(d0, &mut props);
    // Where the file leaves tiles out, OpenSlide reports the box of those it stores.
    if let Some((x, y, w, h)) = levels.first().and_then(|l| l.1.stored_bounds()) {
        for (name, v) in [("x", x), ("y", y), ("width", w), ("height", h)] {
            props.insert(format!("openslide.bounds-{name}"), v.to_string());
        }
    }
    Ok(Opened {
        vendor: FORMAT.name,
        detected_by: FORMAT.why.into(),
        levels: levels.into_iter().map(|(_, g)| g as Arc<dyn TileGrid>).collect(),
        downsamples: Vec::new(),
        tile_hints: true,
        associated: Vec::new(),
        properties: props,
        mpp: resolution_mpp(d0),
    })
}
