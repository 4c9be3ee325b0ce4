//! Small utilities that know nothing of slides, models or pathology: atomic file writes,
//! lenient base64, facts about this process and host, and a seeded random number generator.

pub mod atomic;
pub mod base64;
pub mod errors;
pub mod process;
pub mod rng;
