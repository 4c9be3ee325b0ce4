//! CPU implementations: f32, parallel with rayon.

pub mod attention;
