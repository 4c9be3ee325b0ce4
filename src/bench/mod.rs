//! Benchmarks that measure flashslide against what users run today.

pub mod metrics;
pub mod read;
