//! Ground-truth lesions and their evaluation masks, as CAMELYON16 scores against them: a
//! detection hits a lesion when it lies inside it or within 75 µm of its outline. Truth
//! comes from `flashslide synth`'s `.lesions.json`, from QuPath GeoJSON (annotations
//! classified as tumour or metastasis) or from ASAP/CAMELYON16 XML (groups `Tumor`, `_0`,
//! `_1`; `_2`, CAMELYON16's exclusions inside tumour, is not a lesion). Lesions from the
//! last two are classed by their longest diameter, as CAMELYON and AJCC do: under 0.2 mm
//! isolated tumour cells, up to 2 mm micrometastasis, beyond that macrometastasis.

use super::geojson::{geojson_polygons, GeoJsonError};
use super::polygon::Polygon;
use super::LesionClass;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where a detection fell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    /// In the evaluation mask of the slide's lesion with this index.
    Lesion(usize),
    /// In none: a false positive.
    Background,
}

/// A truth file that cannot be read: the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a lesion file: {source}", path.display())]
    LesionFile {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: {source}", path.display())]
    GeoJson { path: PathBuf, source: GeoJsonError },
    #[error("{}: {problem}", path.display())]
    Xml { path: PathBuf, problem: XmlProblem },
}

/// What is wrong with an ASAP XML file.
#[derive(Debug, thiserror::Error)]
pub enum XmlProblem {
    #[error("not XML: {0}")]
    Syntax(#[from] quick_xml::Error),
    #[error("bad XML attribute: {0}")]
    Attribute(#[from] quick_xml::events::attributes::AttrError),
    #[error("bad XML attribute value: {0}")]
    Encoding(#[from] quick_xml::encoding::EncodingError),
    #[error("a Coordinate without X or Y")]
    MissingCoordinate,
    #[error("bad coordinate {0:?}")]
    BadCoordinate(String),
}

/// CAMELYON16's dilation of a lesion for its evaluation mask.
pub const EVALUATION_MARGIN_UM: f64 = 75.0;

#[derive(Clone, Debug)]
pub struct Lesion {
    pub class: LesionClass,
    /// Outline in level-0 pixels.
    pub outline: Polygon,
}

/// A slide's lesions and its pixel size.
#[derive(Clone, Debug)]
pub struct SlideTruth {
    pub lesions: Vec<Lesion>,
    pub mpp: f64,
}

#[derive(Deserialize)]
struct TruthFile {
    mpp: f64,
    lesions: Vec<LesionEntry>,
}

#[derive(Deserialize)]
struct LesionEntry {
    class: LesionClass,
    polygon: Vec<[f64; 2]>,
}

/// File names a slide's truth may have, by preference: `<stem>` then one of these.
const TRUTH_SUFFIXES: [&str; 3] = [".lesions.json", ".xml", ".geojson"];

impl SlideTruth {
    /// The truth file for slide `stem` in `dir`, if any.
    pub fn find(dir: &Path, stem: &str) -> Option<std::path::PathBuf> {
        TRUTH_SUFFIXES
            .iter()
            .map(|suffix| dir.join(format!("{stem}{suffix}")))
            .find(|p| p.is_file())
    }

    /// Reads a truth file of any of the three kinds; `mpp` (the slide's) classes the
    /// lesions of GeoJSON and XML files, which do not carry it.
    pub fn load(path: &Path, mpp: f64) -> Result<SlideTruth, TruthError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if name.ends_with(".lesions.json") {
            return SlideTruth::load_synth(path);
        }
        let text = read(path)?;
        let outlines = if name.ends_with(".xml") {
            asap_outlines(&text).map_err(|problem| TruthError::Xml {
                path: path.to_path_buf(),
                problem,
            })?
        } else {
            geojson_outlines(&text).map_err(|source| TruthError::GeoJson {
                path: path.to_path_buf(),
                source,
            })?
        };
        let lesions = outlines
            .into_iter()
            .filter(|o| o.len() >= 3)
            .map(|points| {
                let outline = Polygon { points };
                Lesion {
                    class: class_by_size(outline.longest_diameter() * mpp),
                    outline,
                }
            })
            .collect();
        Ok(SlideTruth { lesions, mpp })
    }

    /// Reads the `<slide>.lesions.json` that `flashslide synth` writes beside each slide.
    fn load_synth(path: &Path) -> Result<SlideTruth, TruthError> {
        let file: TruthFile =
            serde_json::from_str(&read(path)?).map_err(|source| TruthError::LesionFile {
                path: path.to_path_buf(),
                source,
            })?;
        let lesions = file
            .lesions
            .into_iter()
            .filter(|l| l.polygon.len() >= 3)
            .map(|l| Lesion {
                class: l.class,
                outline: Polygon {
                    points: l.polygon.iter().map(|p| (p[0], p[1])).collect(),
                },
            })
            .collect();
        Ok(SlideTruth {
            lesions,
            mpp: file.mpp,
        })
    }

    /// Which lesion's evaluation mask holds level-0 point (`x`, `y`): the first one whose
    /// outline holds it or passes within the margin (lesions of a slide do not overlap).
    pub fn hit(&self, x: f64, y: f64) -> Hit {
        let margin = EVALUATION_MARGIN_UM / self.mpp;
        self.lesions
            .iter()
            .position(|l| l.outline.contains(x, y) || l.outline.distance_to_outline(x, y) <= margin)
            .map_or(Hit::Background, Hit::Lesion)
    }
}

fn read(path: &Path) -> Result<String, TruthError> {
    std::fs::read_to_string(path).map_err(|source| TruthError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A lesion's class from its longest diameter in µm.
fn class_by_size(diameter_um: f64) -> LesionClass {
    if diameter_um < 200.0 {
        LesionClass::Itc
    } else if diameter_um <= 2000.0 {
        LesionClass::Micro
    } else {
        LesionClass::Macro
    }
}

/// Outer rings of the GeoJSON polygons classified as tumour or metastasis.
fn geojson_outlines(text: &str) -> Result<Vec<Vec<(f64, f64)>>, GeoJsonError> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let tumour = |properties: &serde_json::Value| {
        let class = properties["classification"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        class.contains("tumo") || class.contains("metasta")
    };
    let polygons = geojson_polygons(&value, &tumour)?;
    Ok(polygons
        .into_iter()
        .filter_map(|rings| rings.into_iter().next())
        .map(|ring| ring.into_iter().map(|p| (p[0], p[1])).collect())
        .collect())
}

/// Tumour polygons of an ASAP XML file (CAMELYON16's annotation format).
fn asap_outlines(text: &str) -> Result<Vec<Vec<(f64, f64)>>, XmlProblem> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut outlines = Vec::new();
    // The polygon being read, when its group is a tumour one.
    let mut current: Option<Vec<(f64, f64)>> = None;
    loop {
        let event = reader.read_event()?;
        match &event {
            Event::Start(e) | Event::Empty(e) => {
                let attribute = |key: &str| -> Result<Option<String>, XmlProblem> {
                    for a in e.attributes() {
                        let a = a?;
                        if a.key.as_ref() == key {
                            return Ok(Some(
                                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)?
                                    .into_owned(),
                            ));
                        }
                    }
                    Ok(None)
                };
                match e.local_name().as_ref() {
                    "Annotation" => {
                        let group = attribute("PartOfGroup")?.unwrap_or_default();
                        let tumour =
                            matches!(group.to_lowercase().as_str(), "tumor" | "tumour" | "_0" | "_1");
                        current = tumour.then(Vec::new);
                        if matches!(event, Event::Empty(_)) {
                            current = None;
                        }
                    }
                    "Coordinate" => {
                        if let Some(points) = current.as_mut() {
                            let number = |key: &str| -> Result<f64, XmlProblem> {
                                let v = attribute(key)?.ok_or(XmlProblem::MissingCoordinate)?;
                                v.trim().parse().map_err(|_| XmlProblem::BadCoordinate(v))
                            };
                            points.push((number("X")?, number("Y")?));
                        }
                    }
                    _ => {}
                }
            }
            Event::End(e) if e.local_name().as_ref() == "Annotation" => {
                outlines.extend(current.take());
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(outlines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_inside_and_within_75_um_of_the_outline() {
        // A 100 × 100 px square at 0.5 µm/px: the margin is 150 px.
        let square = Polygon {
            points: vec![
                (1000.0, 1000.0),
                (1100.0, 1000.0),
                (1100.0, 1100.0),
                (1000.0, 1100.0),
            ],
        };
        let truth = SlideTruth {
            lesions: vec![Lesion {
                class: LesionClass::Micro,
                outline: square,
            }],
            mpp: 0.5,
        };
        assert_eq!(truth.hit(1050.0, 1050.0), Hit::Lesion(0));
        assert_eq!(truth.hit(1249.0, 1050.0), Hit::Lesion(0));
        assert_eq!(truth.hit(1251.0, 1050.0), Hit::Background);
        // Diagonally off a corner: 150 px away along the diagonal is inside the margin.
        assert_eq!(truth.hit(1100.0 + 106.0, 1100.0 + 106.0), Hit::Lesion(0));
        assert_eq!(truth.hit(1100.0 + 107.0, 1100.0 + 107.0), Hit::Background);
    }

    #[test]
    fn reads_what_synth_writes() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/synth-s101-000.lesions.json");
        let truth = SlideTruth::load(&sample, 0.5).unwrap();
        assert_eq!(truth.mpp, 0.5);
        assert!(!truth.lesions.is_empty());
        let (cx, cy) = truth.lesions[0].outline.centroid();
        assert_eq!(truth.hit(cx, cy), Hit::Lesion(0));
        assert_eq!(truth.hit(-10_000.0, -10_000.0), Hit::Background);
        // The same lesions from synth's QuPath GeoJSON, classed by their size.
        let geojson = sample.with_file_name("synth-s101-000.lesions.geojson");
        let from_geojson = SlideTruth::load(&geojson, 0.5).unwrap();
        let classes = |t: &SlideTruth| t.lesions.iter().map(|l| l.class).collect::<Vec<_>>();
        assert_eq!(classes(&from_geojson), classes(&truth));
        assert_eq!(classes(&truth), vec![LesionClass::Micro, LesionClass::Itc]);
    }

    #[test]
    fn reads_camelyon16_xml() {
        let xml = r##"<?xml version="1.0"?>
<ASAP_Annotations>
  <Annotations>
    <Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="Tumor" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="0" X="1000" Y="1000" />
        <Coordinate Order="1" X="6000" Y="1000" />
        <Coordinate Order="2" X="6000" Y="2000" />
      </Coordinates>
    </Annotation>
    <Annotation Name="Annotation 1" Type="Polygon" PartOfGroup="_2" Color="#64FE2E">
      <Coordinates>
        <Coordinate Order="0" X="1" Y="1" /><Coordinate Order="1" X="9" Y="1" /><Coordinate Order="2" X="9" Y="9" />
      </Coordinates>
    </Annotation>
    <Annotation Name="Annotation 2" Type="Spline" PartOfGroup="_1" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="0" X="100.5" Y="100" /><Coordinate Order="1" X="300" Y="100" /><Coordinate Order="2" X="300" Y="300" />
      </Coordinates>
    </Annotation>
  </Annotations>
  <AnnotationGroups><Group Name="Tumor" PartOfGroup="None" Color="#ff0000"><Attributes /></Group></AnnotationGroups>
</ASAP_Annotations>"##;
        let dir = std::env::temp_dir().join(format!("flashslide-xml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tumor_001.xml");
        std::fs::write(&path, xml).unwrap();
        assert_eq!(SlideTruth::find(&dir, "tumor_001"), Some(path.clone()));
        // 0.243 µm/px: the first polygon spans 5,099 px = 1.24 mm, the third 283 px = 69 µm.
        let truth = SlideTruth::load(&path, 0.243).unwrap();
        let classes: Vec<_> = truth.lesions.iter().map(|l| l.class).collect();
        assert_eq!(classes, vec![LesionClass::Micro, LesionClass::Itc]);
        assert_eq!(truth.lesions[1].outline.points[0], (100.5, 100.0));
        std::fs::write(
            &path,
            "<ASAP_Annotations><Annotation PartOfGroup=\"Tumor\"><Coordinate X=\"a\" Y=\"1\"/>",
        )
        .unwrap();
        assert!(SlideTruth::load(&path, 0.25)
            .unwrap_err()
            .to_string()
            .contains("tumor_001.xml: bad coordinate"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
