//! Which model a command computes with: `--model DIR`, or the bundled flashslide-synth-v1,
//! built into the binary (2.4 MB) so that a copied or installed `flashslide` works from any
//! folder.

use flashslide::backend::Backend;
use flashslide::model::{Model, ModelError};
use std::path::Path;

const BUNDLED_CONFIG: &str = include_str!("../../models/flashslide-synth-v1/config.json");
const BUNDLED_WEIGHTS: &[u8] = include_bytes!("../../models/flashslide-synth-v1/model.safetensors");

/// The model in `dir`, or the bundled one without a `dir`.
pub fn load<B: Backend>(dir: Option<&Path>, backend: &B) -> Result<Model<B>, ModelError> {
    match dir {
        Some(dir) => Model::load(dir, backend),
        None => Model::from_bytes(
            BUNDLED_CONFIG,
            BUNDLED_WEIGHTS,
            Path::new("models/flashslide-synth-v1 (built in)"),
            backend,
        ),
    }
}

/// The line every command that computes with a model prints about it, when its
/// configuration carries a notice (the bundled models: trained on synthetic slides only).
pub fn say_notice<B: Backend>(model: &Model<B>) {
    if let Some(notice) = &model.config.notice {
        eprintln!("flashslide: note: model {} is {notice}", model.config.name);
    }
}
