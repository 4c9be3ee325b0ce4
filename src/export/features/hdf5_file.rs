//! Tile features as HDF5 in the layout CLAM, Trident and TITAN read: datasets `features`
//! [N, D] (f32) and `coords` [N, 2] (i64, each tile's top-left (x, y) in level-0 pixels);
//! on `coords`, the attributes `patch_size_level0` (what TITAN needs to place tiles),
//! `patch_size`, `level0_magnification` and `target_magnification` (Trident's), and the
//! metadata as strings. Written under a temporary name and renamed.

use super::{Attribute, TileGeometry};
use hdf5::types::VarLenUnicode;
use std::collections::BTreeMap;
use std::path::Path;

/// Writes features.h5. `features` holds `coords.len()` rows of `dim` values.
pub fn write_features_h5(
    path: &Path,
    features: &[f32],
    dim: usize,
    coords: &[[i64; 2]],
    geometry: TileGeometry,
    metadata: &BTreeMap<String, String>,
) -> std::io::Result<()> {
    assert_eq!(features.len(), coords.len() * dim, "features must be [N, D]");
    let partial = crate::util::atomic::partial_path(path);
    let written = write(&partial, features, dim, coords, geometry, metadata)
        .map_err(|e| std::io::Error::other(format!("HDF5: {e}")))
        .and_then(|()| std::fs::File::open(&partial)?.sync_all())
        .and_then(|()| std::fs::rename(&partial, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

fn write(
    path: &Path,
    features: &[f32],
    dim: usize,
    coords: &[[i64; 2]],
    geometry: TileGeometry,
    metadata: &BTreeMap<String, String>,
) -> hdf5::Result<()> {
    let n = coords.len();
    let file = hdf5::File::create(path)?;
    let dataset = file.new_dataset::<f32>().shape([n, dim]).create("features")?;
    if n > 0 {
        dataset.write_raw(features)?;
    }
    let positions = file.new_dataset::<i64>().shape([n, 2]).create("coords")?;
    if n > 0 {
        positions.write_raw(coords.as_flattened())?;
    }
    // The grid's attributes typed, as Trident writes them; the rest of the metadata (the
    // same names as text, and the provenance) as strings.
    let typed = geometry.trident_attributes();
    for (name, value) in typed {
        let attr = match value {
            Attribute::Int(_) => positions.new_attr::<i64>(),
            Attribute::Float(_) => positions.new_attr::<f64>(),
        }
        .shape(())
        .create(name)?;
        match value {
            Attribute::Int(v) => attr.write_scalar(&v)?,
            Attribute::Float(v) => attr.write_scalar(&v)?,
        }
    }
    for (name, value) in metadata
        .iter()
        .filter(|(n, _)| !typed.iter().any(|(t, _)| t == n))
    {
        let text: VarLenUnicode = value
            .parse()
            .map_err(|e| hdf5::Error::from(format!("{name}: {e}")))?;
        positions
            .new_attr::<VarLenUnicode>()
            .shape(())
            .create(name.as_str())?
            .write_scalar(&text)?;
    }
    file.close()
}
