//! A slide's stage-2 tokens under a frozen tile encoder, kept on disk: encoding every tissue
//! tile of a cohort with a foundation encoder is most of the time a head's training takes,
//! and a head is trained many times (other seeds, steps, architectures) on the same tokens.
//! A slide's tokens are valid while its file (fingerprint: size, modification time, first and
//! last MiB), the encoder's weights (SHA-256), the pixel size, the tile size and the grouping
//! of patch tokens are those they were made with; the labels are not kept (annotations
//! change more often than slides) but drawn from the annotations at each training.
//!
//! One safetensors file a slide, `features` `[n, dim]` (f32) and `cells` `[n, 2]` (the token
//! grid's row and column, f32), with what they were made from as its metadata.

use crate::slide::fingerprint::fingerprint;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What a slide's tokens depend on, besides the slide.
#[derive(Clone, Debug)]
pub struct TokenRecipe {
    /// SHA-256 of the tile encoder's model.safetensors.
    pub encoder_sha256: String,
    pub mpp: f64,
    pub tile_px: u32,
    /// Patch tokens averaged per side of a stage-2 token (none: one token a tile).
    pub group_patches: Option<usize>,
}

/// A folder of kept tokens, all made under one recipe.
pub struct TokenCache {
    pub dir: PathBuf,
    pub recipe: TokenRecipe,
}

/// Tokens as stage 2 trains on them.
pub struct Tokens {
    pub features: Vec<f32>,
    pub cells: Vec<[f32; 2]>,
}

/// Where `slide`'s tokens are kept in `dir`: its file stem and a hash of its full path (two
/// slides of one name in different folders are two files).
pub fn cache_file(dir: &Path, slide: &Path) -> PathBuf {
    let stem = slide
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let digest = Sha256::digest(slide.as_os_str().as_encoded_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{stem}-{short}.safetensors"))
}

/// The key a cache file records: the slide's fingerprint and the recipe, as strings.
fn key(slide: &Path, recipe: &TokenRecipe) -> std::io::Result<HashMap<String, String>> {
    let mut key: HashMap<String, String> = fingerprint(slide)?
        .as_text()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    key.extend([
        ("encoder_sha256".into(), recipe.encoder_sha256.clone()),
        ("mpp".into(), recipe.mpp.to_string()),
        ("tile_px".into(), recipe.tile_px.to_string()),
        (
            "group_patches".into(),
            recipe.group_patches.map_or("none".into(), |k| k.to_string()),
        ),
    ]);
    Ok(key)
}

impl TokenCache {
    /// The tokens kept for `slide`, if a file holds them for this slide as it is now and
    /// this recipe; anything else (no file, another recipe, a changed slide, a damaged file)
    /// reads as none, to be made again.
    pub fn read(&self, slide: &Path) -> Option<Tokens> {
        read(&self.dir, slide, &self.recipe)
    }

    /// Keeps `tokens` (of width `dim`) for `slide`, written atomically.
    pub fn write(&self, slide: &Path, tokens: &Tokens, dim: usize) -> std::io::Result<()> {
        write(&self.dir, slide, &self.recipe, tokens, dim)
    }
}

fn read(dir: &Path, slide: &Path, recipe: &TokenRecipe) -> Option<Tokens> {
    let bytes = std::fs::read(cache_file(dir, slide)).ok()?;
    let (_, metadata) = SafeTensors::read_metadata(&bytes).ok()?;
    if metadata.metadata().as_ref()? != &key(slide, recipe).ok()? {
        return None;
    }
    let file = SafeTensors::deserialize(&bytes).ok()?;
    let floats = |name: &str, cols: Option<usize>| -> Option<(Vec<f32>, usize)> {
        let t = file.tensor(name).ok()?;
        let &[rows, width] = t.shape() else { return None };
        if t.dtype() != Dtype::F32 || cols.is_some_and(|c| c != width) {
            return None;
        }
        let values = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Some((values, rows))
    };
    let (features, n) = floats("features", None)?;
    let (cells, m) = floats("cells", Some(2))?;
    if n != m || features.iter().any(|v| !v.is_finite()) {
        return None;
    }
    Some(Tokens {
        features,
        cells: cells.chunks_exact(2).map(|c| [c[0], c[1]]).collect(),
    })
}

/// Keeps `tokens` (of width `dim`) for `slide` in `dir`, written atomically.
fn write(dir: &Path, slide: &Path, recipe: &TokenRecipe, tokens: &Tokens, dim: usize) -> std::io::Result<()> {
    let invalid =
        |e: safetensors::SafeTensorError| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string());
    let n = tokens.cells.len();
    let features: Vec<u8> = tokens.features.iter().flat_map(|v| v.to_le_bytes()).collect();
    let cells: Vec<u8> = tokens
        .cells
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let views = [
        (
            "features",
            TensorView::new(Dtype::F32, vec![n, dim], &features).map_err(invalid)?,
        ),
        (
            "cells",
            TensorView::new(Dtype::F32, vec![n, 2], &cells).map_err(invalid)?,
        ),
    ];
    let bytes = safetensors::serialize(views, Some(key(slide, recipe)?)).map_err(invalid)?;
    std::fs::create_dir_all(dir)?;
    crate::util::atomic::write_bytes(&cache_file(dir, slide), &bytes)
}
