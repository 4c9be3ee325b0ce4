//! flashslide: finds suspected tumour in whole-slide pathology images at full resolution.
//!
//! This crate is the library behind the `flashslide` command; ARCHITECTURE.md is its map.
//! [`slide`] reads whole-slide images (Aperio SVS, Hamamatsu NDPI, tiled pyramidal
//! TIFF/BigTIFF) in pure Rust; [`backend`] computes (CPU, CUDA); [`model`] is the two-stage
//! ViT; [`analysis`] is one slide's trip through it; [`export`] writes what a slide's
//! analysis found; [`batch`] runs many slides. [`synth`], [`train`], [`eval`] and [`bench`](mod@bench)
//! sit on top; [`util`] holds what is not about pathology at all.

pub mod analysis;
pub mod annotation;
pub mod backend;
pub mod batch;
pub mod bench;
pub mod eval;
pub mod export;
pub mod model;
pub mod serve;
pub mod slide;
pub mod synth;
pub mod train;
pub mod util;
