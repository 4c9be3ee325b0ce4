//! What training fails with. Errors about a file name it; a wrapped cause is the error's
//! source, not part of its message, so that `flashslide` prints it once ("…: cause").

use crate::analysis::pipeline::{MppError, PipelineError};
use crate::backend::BackendError;
use crate::model::ModelError;
use crate::slide::SlideError;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Searching the cohort folder (the error names the path at fault).
    #[error(transparent)]
    Discover(std::io::Error),
    #[error("{}: no slides with ground truth (<stem>.lesions.json, .xml or .geojson)", dir.display())]
    NoAnnotatedSlides { dir: PathBuf },
    #[error("{}: no ground truth beside it", path.display())]
    NoTruth { path: PathBuf },
    /// The ground truth file (its reader names it).
    #[error(transparent)]
    Truth(#[from] crate::annotation::lesions::TruthError),
    #[error("the pixel size of {}", path.display())]
    Mpp {
        path: PathBuf,
        #[source]
        source: MppError,
    },
    #[error("cannot tile {}", path.display())]
    Plan {
        path: PathBuf,
        #[source]
        source: PipelineError,
    },
    #[error("cannot encode the tiles of {}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: PipelineError,
    },
    #[error("{}: larger than one {side}-pixel image at {mpp} µm/px", path.display())]
    TooLarge { path: PathBuf, side: usize, mpp: f64 },
    #[error("model config: {0}")]
    Config(#[from] crate::model::config::ConfigError),
    #[error("the configuration has no slide encoder")]
    NoSlideEncoder,
    #[error("no training tiles")]
    NoTrainingTiles,
    #[error("no training slides")]
    NoTrainingSlides,
    #[error("no training slide has tissue tokens")]
    NoTrainingTokens,
    #[error(
        "step {step}: the loss is {loss}, not a number; no checkpoint was written from this \
         step (a smaller learning rate, or --clip-grad-norm, may keep training stable)"
    )]
    LossNotFinite { step: usize, loss: f64 },
    #[error("a batch of nothing")]
    EmptyBatch,
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Safetensors {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    #[error(transparent)]
    Slide(#[from] SlideError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The differentiable forward and backward passes.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl TrainError {
    /// For `map_err`: an I/O error writing `path`.
    pub(super) fn write(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.to_path_buf();
        move |source| TrainError::Write { path, source }
    }
}
