//! flashslide: finds suspected tumour in whole-slide pathology images at full resolution.
//!
//! This crate is the library behind the `flashslide` command. [`slide`] reads whole-slide
//! images (Aperio SVS, Hamamatsu NDPI, tiled pyramidal TIFF/BigTIFF) in pure Rust.

pub mod atomic;
pub mod backend;
pub mod batch;
pub mod bench;
pub mod embed;
pub mod eval;
pub mod export;
pub mod features;
pub mod grid;
pub mod jpeg_batch;
pub mod model;
pub mod mpp;
pub mod pipeline;
pub mod process;
pub mod roi;
pub mod slide;
pub mod synth;
pub mod tissue;
pub mod train;
