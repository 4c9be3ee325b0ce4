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
