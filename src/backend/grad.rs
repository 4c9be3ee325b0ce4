//! The backward operations training needs beyond [`Backend`]'s forward ones: each layer's
//! gradients given its output's, written once per backend (the CPU's in f32 in
//! `cpu/grad.rs`, the GPU's on the device in `cuda/grad.rs`), so that one hand-written
//! backward pass (`train::backprop`) trains the slide encoder on either. Weight gradients and
//! the optimiser's state are f32; activations' gradients are f32 where a backend keeps f32.

use super::{Backend, BackendError};

/// One AdamW step's settings.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay for this tensor (0 for biases and norms).
    pub weight_decay: f64,
    /// The step's number, from 1 (bias correction).
    pub t: i32,
    /// What the gradient is multiplied by first (the clipping factor).
    pub grad_scale: f64,
}

/// The gradients of a linear layer's input, weight and bias (when it has one).
pub struct LinearGrads<T> {
    pub dx: T,
    pub dw: T,
    pub db: Option<T>,
}

/// The gradients of a layer norm's input, weight and bias.
pub struct NormGrads<T> {
    pub dx: T,
    pub dw: T,
    pub db: T,
}

/// A tensor's AdamW state: the weights and the two moments.
pub struct AdamWState<T> {
    pub w: T,
    pub m: T,
    pub v: T,
}

/// A backend training can run on. Attention's forward also saves each (token, head)'s
/// log-sum-exp of its scores (natural log, `[tokens, heads]`), from which the backward
/// recomputes the probabilities.
pub trait Gradients: Backend {
    /// A trainable tensor's f32 master copy, which the optimiser updates.
    fn master(&self, data: &[f32], rows: usize, cols: usize) -> Result<Self::Tensor, BackendError>;
    /// f32 zeros.
    fn zeros(&self, rows: usize, cols: usize) -> Result<Self::Tensor, BackendError>;
    /// The tensor the forward pass computes with, made from a master copy (bf16 on a GPU).
    fn for_compute(&self, master: &Self::Tensor) -> Result<Self::Tensor, BackendError>;

    /// `(dx, dw, db)` of `y = x · wᵀ (+ b)` given `dy`; `db` when `bias`.
    fn linear_backward(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        dy: &Self::Tensor,
        bias: bool,
    ) -> Result<LinearGrads<Self::Tensor>, BackendError>;
    /// `(dx, dw, db)` of the layer norm of `x`'s rows (weight `w`, bias, `eps`) given `dy`.
    fn layer_norm_backward(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        dy: &Self::Tensor,
        eps: f64,
    ) -> Result<NormGrads<Self::Tensor>, BackendError>;
    /// `dx` of the exact GELU of `x` given `dy`.
    fn gelu_backward(&self, x: &Self::Tensor, dy: &Self::Tensor) -> Result<Self::Tensor, BackendError>;
    /// [`Backend::attention`]'s output and its log-sum-exp (`[tokens, heads]`).
    fn attention_saving(
        &self,
        qkv: &Self::Tensor,
        offsets: &[usize],
        heads: usize,
        head_dim: usize,
        positions: Option<&Self::Positions>,
    ) -> Result<(Self::Tensor, Self::Tensor), BackendError>;
    /// The gradient of attention's input `qkv` (`[tokens, 3·heads·head_dim]`, before any
    /// rotation) given its output `out`, the log-sum-exp saved with it and `dout`.
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        qkv: &Self::Tensor,
        out: &Self::Tensor,
        lse: &Self::Tensor,
        dout: &Self::Tensor,
        offsets: &[usize],
        heads: usize,
        head_dim: usize,
        positions: Option<&Self::Positions>,
    ) -> Result<Self::Tensor, BackendError>;
    /// `[rows, cols]`: `row` (`[1, cols]`) in every row, times `scale` (a mean's backward).
    fn repeat_row(&self, row: &Self::Tensor, rows: usize, scale: f32) -> Result<Self::Tensor, BackendError>;
    /// Rows `rows` of `x`, in that order: a training crop's tokens, taken from a slide's
    /// features kept where the backend computes rather than uploaded crop by crop.
    fn gather_rows(&self, x: &Self::Tensor, rows: &[usize]) -> Result<Self::Tensor, BackendError>;
    /// Bytes the backend can hold a training run's features in for the whole run (half a
    /// GPU's free memory), or `None` where crops are uploaded one by one (the CPU, whose
    /// "upload" is the copy a gather would make).
    fn feature_budget(&self) -> Option<usize> {
        None
    }
    /// Σ x² over every element of every tensor of `xs` (gradients' squared global norm),
    /// read back once.
    fn sum_squares(&self, xs: &[&Self::Tensor]) -> Result<f64, BackendError>;
    /// One AdamW step: `state` updated by gradient `g`.
    fn adamw(
        &self,
        state: &AdamWState<Self::Tensor>,
        g: &Self::Tensor,
        step: AdamWStep,
    ) -> Result<AdamWState<Self::Tensor>, BackendError>;
}
