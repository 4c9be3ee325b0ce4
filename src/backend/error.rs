//! What a backend's operations fail with. Errors here never name files or models: the layers
//! above add that context.

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Operands that do not fit the operation (shapes, lengths, unsupported sizes).
    #[error("input: {0}")]
    Input(String),
    /// The CPU's tensor library.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// The device: a CUDA call, a kernel launch, a decoder.
    #[error("{0}")]
    Device(String),
    /// An operation this backend does not offer in this use.
    #[error("{0}")]
    Unsupported(String),
}
