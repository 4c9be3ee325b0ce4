//! What scoring a cohort fails with. Every error names the file or folder at fault; a wrapped
//! cause is the error's source, not part of its message, so that `flashslide` prints it once
//! ("…: cause").

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: no slide results (no */summary.json)", dir.display())]
    NoResults { dir: PathBuf },
    #[error(
        "{}: no truth for {stem} (looked for {stem}.lesions.json, {stem}.xml and {stem}.geojson)",
        dir.display()
    )]
    NoTruth { dir: PathBuf, stem: String },
    /// The ground truth file (its reader names it).
    #[error(transparent)]
    Truth(#[from] crate::annotation::lesions::TruthError),
    /// `line` counts from 1.
    #[error("{}: line {line}: expected confidence,x,y", path.display())]
    BadDetection { path: PathBuf, line: usize },
    #[error("{}: not a FeatureCollection", path.display())]
    NotFeatureCollection { path: PathBuf },
    #[error("{}: a tile without outline or probability", path.display())]
    UnscoredTile { path: PathBuf },
    #[error("{}: a tile whose outline is not 4 corners", path.display())]
    BadTileOutline { path: PathBuf },
}

impl EvalError {
    /// For `map_err`: an I/O error reading `path`.
    pub(super) fn read(path: &Path) -> impl FnOnce(std::io::Error) -> EvalError {
        let path = path.to_path_buf();
        move |source| EvalError::Read { path, source }
    }
}
