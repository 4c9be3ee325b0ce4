//! Tile features as safetensors, in the layout multiple-instance-learning code reads:
//! `features` [N, D] (f32) and `coords` [N, 2] (i64, each tile's top-left (x, y) in level-0
//! pixels), with string metadata (tile size in level-0 pixels, MPP, model name and hash).
//! Written under a temporary name and renamed, so a file that exists is complete.

use crate::slide::fingerprint::Fingerprint;
use std::collections::BTreeMap;
use std::path::Path;

/// Writes the features file. `features` holds `coords.len()` rows of `dim` values;
/// `metadata` as [`metadata`] makes it (safetensors metadata holds only strings).
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
    crate::util::atomic::write_bytes(path, &out)
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

impl TileGeometry {
    /// The grid's attributes under Trident's names and with its types (integers for sizes
    /// and the overlap, floats for magnifications, 10 µm/px being 1×), which HDF5 files carry
    /// typed and safetensors files as text that parses as that type.
    pub fn trident_attributes(&self) -> [(&'static str, Attribute); 5] {
        let level0_magnification = 10.0 / self.slide_mpp;
        [
            ("patch_size", Attribute::Int(self.tile_px as i64)),
            (
                "patch_size_level0",
                Attribute::Int(self.tile_level0.round() as i64),
            ),
            ("level0_magnification", Attribute::Float(level0_magnification)),
            (
                "target_magnification",
                Attribute::Float(level0_magnification * self.tile_px as f64 / self.tile_level0),
            ),
            ("overlap", Attribute::Int(0)),
        ]
    }
}

/// A typed attribute value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Attribute {
    Int(i64),
    Float(f64),
}

impl std::fmt::Display for Attribute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attribute::Int(v) => write!(f, "{v}"),
            Attribute::Float(v) => write!(f, "{v}"),
        }
    }
}

/// Where features came from, recorded in every features file `run --features` and `embed`
/// write alike.
pub struct Provenance<'a> {
    pub model: &'a str,
    pub model_sha256: &'a str,
    /// Of the tile encoder's tensors alone: equal for every model sharing the encoder.
    pub tile_encoder_sha256: &'a str,
    /// The model's input resolution, µm per pixel.
    pub model_mpp: f64,
    pub device: &'a str,
    pub slide: &'a str,
    /// The slide file's identity, so the features can be known to be its own later
    /// (`train --reuse-features`).
    pub fingerprint: &'a Fingerprint,
    /// Where the slide's MPP came from (a property's name, `--mpp`, `--mpp-csv`).
    pub mpp_source: &'a str,
}

/// The metadata of a features file, as text: the provenance (the slide's fingerprint under
/// `slide_size`, `slide_modified`, `slide_head_tail_sha256`), the slide's MPP, the exact
/// tile size in level-0 pixels (`tile_size_level0`) and the grid's Trident attributes.
pub fn metadata(provenance: &Provenance, geometry: TileGeometry) -> BTreeMap<String, String> {
    let mut m = BTreeMap::from([
        (
            "software".to_string(),
            format!("flashslide {}", env!("CARGO_PKG_VERSION")),
        ),
        ("model".to_string(), provenance.model.to_string()),
        ("model_sha256".to_string(), provenance.model_sha256.to_string()),
        (
            "tile_encoder_sha256".to_string(),
            provenance.tile_encoder_sha256.to_string(),
        ),
        ("model_mpp".to_string(), provenance.model_mpp.to_string()),
        ("device".to_string(), provenance.device.to_string()),
        ("slide".to_string(), provenance.slide.to_string()),
        ("mpp".to_string(), geometry.slide_mpp.to_string()),
        ("mpp_source".to_string(), provenance.mpp_source.to_string()),
        ("tile_size_level0".to_string(), geometry.tile_level0.to_string()),
    ]);
    for (name, value) in provenance.fingerprint.as_text() {
        m.insert(name.to_string(), value);
    }
    for (name, value) in geometry.trident_attributes() {
        m.insert(name.to_string(), value.to_string());
    }
    m
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
