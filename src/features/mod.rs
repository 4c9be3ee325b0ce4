//! Tile features as safetensors, in the layout multiple-instance-learning code reads:
//! `features` [N, D] (f32) and `coords` [N, 2] (i64, each tile's top-left (x, y) in level-0
//! pixels), with string metadata (tile size in level-0 pixels, MPP, model name and hash).
//! Written under a temporary name and renamed, so a file that exists is complete.

use std::collections::BTreeMap;
use std::path::Path;

/// Writes the features file. `features` holds `coords.len()` rows of `dim` values.
pub fn write_features(
    path: &Path,
    features: &[f32],
    dim: usize,
    coords: &[[i64; 2]],
    metadata: &BTreeMap<String, String>,
) -> std::io::Result<()> {
    let n = coords.len();
    assert_eq!(features.len(), n * dim, "features must be [N, D]");
    let feature_bytes = features.len() * 4;
    let coord_bytes = n * 2 * 8;
    let header = serde_json::json!({
        "__metadata__": metadata,
        "features": {"dtype": "F32", "shape": [n, dim], "data_offsets": [0, feature_bytes]},
        "coords": {"dtype": "I64", "shape": [n, 2], "data_offsets": [feature_bytes, feature_bytes + coord_bytes]},
    });
    let mut header = serde_json::to_vec(&header).expect("header serialises");
    // The data must start 8-byte aligned.
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + feature_bytes + coord_bytes);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    features
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    coords
        .iter()
        .flatten()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    crate::atomic::write_bytes(path, &out)
}

/// Where the tiles lie and at what scale, which HDF5 readers (CLAM, Trident, TITAN) take
/// from the file's attributes.
#[derive(Clone, Copy, Debug)]
pub struct TileGeometry {
    /// The model's input side, in its pixels.
    pub tile_px: u32,
    /// A tile's side in level-0 pixels.
    pub tile_level0: f64,
    /// Microns per level-0 pixel.
    pub slide_mpp: f64,
}

/// Whether this build writes HDF5 (cargo feature `hdf5`, which needs the system's libhdf5).
pub const HDF5: bool = cfg!(feature = "hdf5");

#[cfg(feature = "hdf5")]
mod hdf5_file;
#[cfg(feature = "hdf5")]
pub use hdf5_file::write_features_h5;

/// Without the `hdf5` feature: an error saying how to get it.
#[cfg(not(feature = "hdf5"))]
pub fn write_features_h5(
    path: &Path,
    _features: &[f32],
    _dim: usize,
    _coords: &[[i64; 2]],
    _geometry: TileGeometry,
    _metadata: &BTreeMap<String, String>,
) -> std::io::Result<()> {
    Err(std::io::Error::other(format!(
        "{}: this flashslide was built without HDF5; build it with `cargo build --release --features hdf5` \
         (needs libhdf5-dev)",
        path.display()
    )))
}
