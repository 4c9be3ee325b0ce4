//! Benchmarks that measure flashslide against what users run today.

pub mod read;
