//! Errors of the slide reader: every one names the file and what is wrong with it.

use std::path::PathBuf;

/// What went wrong, without the file name (see [`SlideError`]).
#[derive(Debug, thiserror::Error)]
pub enum SlideErrorKind {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a recognised slide format{0}")]
    UnknownFormat(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("corrupt or truncated file: {0}")]
    Corrupt(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "region of {width}x{height} pixels exceeds the cap of {cap} pixels (raise it with --max-pixels)"
    )]
    RegionTooLarge { width: u64, height: u64, cap: u64 },
    /// An error reading one tile, and which: `image` is "level N" or an associated image.
    #[error("{image}, tile at column {col}, row {row}: {kind}")]
    Tile {
        image: String,
        col: u64,
        row: u64,
        kind: Box<SlideErrorKind>,
    },
}

impl SlideErrorKind {
    /// The error itself, without the tile it happened in.
    pub fn root(&self) -> &SlideErrorKind {
        match self {
            SlideErrorKind::Tile { kind, .. } => kind.root(),
            other => other,
        }
    }
}

/// An error of the slide reader for one file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct SlideError {
    pub path: PathBuf,
    pub kind: SlideErrorKind,
}

impl SlideError {
    pub fn new(path: impl Into<PathBuf>, kind: SlideErrorKind) -> Self {
        SlideError {
            path: path.into(),
            kind,
        }
    }

    /// True when the file is of a kind flashslide does not read (yet), as opposed to broken.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self.kind.root(),
            SlideErrorKind::Unsupported(_) | SlideErrorKind::UnknownFormat(_)
        )
    }
}

/// Internal result: errors without the path, which the [`crate::slide::Slide`] adds at its API.
pub(crate) type Result<T, E = SlideErrorKind> = std::result::Result<T, E>;

pub(crate) fn corrupt(msg: impl Into<String>) -> SlideErrorKind {
    SlideErrorKind::Corrupt(msg.into())
}

pub(crate) fn unsupported(msg: impl Into<String>) -> SlideErrorKind {
    SlideErrorKind::Unsupported(msg.into())
}
