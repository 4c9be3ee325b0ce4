//! Small utilities that know nothing of slides, models or pathology: atomic file writes,
//! facts about this process and host, and a seeded random number generator.

pub mod atomic;
pub mod errors;
pub mod process;
pub mod rng;
