//! Annotations of what a slide holds: lesion outlines in level-0 pixels, their CAMELYON /
//! AJCC size classes, and reading them from the files pathologists and the synthetic cohorts
//! write (ASAP/CAMELYON16 XML, QuPath GeoJSON, flashslide's lesions.json). Scoring
//! ([`crate::eval`]), training ([`crate::train`]) and regions of interest read them here;
//! [`crate::synth`] writes them.

pub mod geojson;
pub mod lesions;
pub mod polygon;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LesionClass {
    /// Isolated tumour cells: longest diameter < 0.2 mm.
    Itc,
    /// Micrometastasis: 0.2–2 mm.
    Micro,
    /// Macrometastasis: > 2 mm.
    Macro,
}

impl LesionClass {
    /// Longest-diameter bounds in µm (CAMELYON / AJCC).
    pub fn bounds_um(self) -> (f64, f64) {
        match self {
            LesionClass::Itc => (0.0, 200.0),
            LesionClass::Micro => (200.0, 2000.0),
            LesionClass::Macro => (2000.0, f64::INFINITY),
        }
    }
}
