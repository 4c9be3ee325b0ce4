//! Stage-2 tokens taken from features files that `run --features` or `embed` already wrote:
//! a head with one token a tile (no grouping of patch tokens) trains on exactly the pooled
//! features those files hold, so a cohort encoded once for multiple-instance learning need
//! not be encoded again. A file is used only when it is this slide's as the slide is now
//! (its recorded fingerprint), made by this tile encoder (the SHA-256 of its tensors, not of
//! the whole model file), at this resolution and tile size, and over exactly the tiles the
//! training plan has; anything else is passed over and the slide encoded.

use super::token_cache::{TokenRecipe, Tokens};
use crate::analysis::plan::TilePlan;
use crate::slide::fingerprint::Fingerprint;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A features file's header larger than this is not a features file of ours.
const MAX_HEADER_BYTES: u64 = 16 << 20;

/// Features files found under some folders, by the slide fingerprint they record.
#[derive(Default)]
pub struct FeatureFiles {
    by_slide: HashMap<Fingerprint, PathBuf>,
}

impl FeatureFiles {
    /// The features files in `dirs`: each folder's own `*.safetensors` (`embed`'s outputs)
    /// and those one level down (`run --features`: OUT/SLIDE/features.safetensors). Files
    /// that are not features files with a recorded fingerprint are passed over.
    pub fn find(dirs: &[PathBuf]) -> std::io::Result<FeatureFiles> {
        let mut found = FeatureFiles::default();
        for dir in dirs {
            let named = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
            let mut candidates = Vec::new();
            for entry in std::fs::read_dir(dir).map_err(named)? {
                let path = entry.map_err(named)?.path();
                if path.is_dir() {
                    candidates.push(path.join("features.safetensors"));
                } else if path.extension().is_some_and(|e| e == "safetensors") {
                    candidates.push(path);
                }
            }
            candidates.sort();
            for path in candidates {
                if let Some(print) = header(&path).as_ref().and_then(recorded_fingerprint) {
                    found.by_slide.entry(print).or_insert(path);
                }
            }
        }
        Ok(found)
    }

    pub fn len(&self) -> usize {
        self.by_slide.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_slide.is_empty()
    }

    /// The tokens of the slide whose fingerprint is `print`, planned as `plan`, under
    /// `recipe`, with rows of `dim` values, if a file found holds them; the file's path too.
    pub fn tokens(
        &self,
        print: &Fingerprint,
        plan: &TilePlan,
        recipe: &TokenRecipe,
        dim: usize,
    ) -> Option<(Tokens, &Path)> {
        // Pooled features are one token a tile: a head grouping patch tokens needs those.
        if recipe.group_patches.is_some() {
            return None;
        }
        let path = self.by_slide.get(print)?;
        let meta = header(path)?;
        let number = |key: &str| meta.get(key)?.parse::<f64>().ok();
        let same_mpp = number("model_mpp").is_some_and(|m| (m - recipe.mpp).abs() <= 1e-9 * recipe.mpp);
        if meta.get("tile_encoder_sha256") != Some(&recipe.encoder_sha256)
            || !same_mpp
            || number("patch_size") != Some(recipe.tile_px as f64)
        {
            return None;
        }
        let bytes = std::fs::read(path).ok()?;
        let file = SafeTensors::deserialize(&bytes).ok()?;
        let (features, coords) = (file.tensor("features").ok()?, file.tensor("coords").ok()?);
        let n = plan.tiles.len();
        if features.dtype() != Dtype::F32
            || features.shape() != [n, dim]
            || coords.dtype() != Dtype::I64
            || coords.shape() != [n, 2]
        {
            return None;
        }
        // Each row's tile in the plan, by its corner: the same tiles, or none are used.
        let cell_of: HashMap<(i64, i64), [f32; 2]> = plan
            .tiles
            .iter()
            .map(|t| ((t.x, t.y), [t.row as f32, t.col as f32]))
            .collect();
        let corners: Vec<i64> = coords
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        let cells = corners
            .chunks_exact(2)
            .map(|c| cell_of.get(&(c[0], c[1])).copied())
            .collect::<Option<Vec<_>>>()?;
        let values: Vec<f32> = features
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        Some((
            Tokens {
                features: values,
                cells,
            },
            path,
        ))
    }
}

/// A safetensors file's metadata, read from its header alone.
fn header(path: &Path) -> Option<HashMap<String, String>> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER_BYTES {
        return None;
    }
    let mut text = vec![0u8; len as usize];
    file.read_exact(&mut text).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&text).ok()?;
    serde_json::from_value(header.get("__metadata__")?.clone()).ok()
}

/// The slide fingerprint a features file records ([`Fingerprint::as_text`]).
fn recorded_fingerprint(meta: &HashMap<String, String>) -> Option<Fingerprint> {
    let (seconds, nanos) = meta.get("slide_modified")?.split_once('.')?;
    Some(Fingerprint {
        size: meta.get("slide_size")?.parse().ok()?,
        modified: (seconds.parse().ok()?, nanos.parse().ok()?),
        head_tail_sha256: meta.get("slide_head_tail_sha256")?.clone(),
    })
}
