//! Benchmarks that measure flashslide against what users run today.

pub mod attention;
pub mod baseline;
pub mod encoder;
pub mod metrics;
pub mod read;
