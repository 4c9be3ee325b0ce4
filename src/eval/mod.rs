//! Scoring detections and probabilities against ground truth: CAMELYON16's lesion-level
//! FROC (with sensitivity by lesion size class) and the area under the ROC curve, for the
//! full-resolution-versus-downscaled benchmark.

pub mod auroc;
mod error;
pub mod froc;
pub mod results;

pub use error::EvalError;
