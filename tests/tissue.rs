//! Tissue detection against the ground-truth tissue outlines of the bundled samples.

use flashslide::slide::Slide;
use flashslide::synth::Polygon;
use flashslide::tissue::{detect_tissue, TissueOptions};

#[test]
fn tissue_mask_matches_the_sample_outlines() {
    for name in ["synth-s101-000", "synth-s102-000"] {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/samples");
        let slide = Slide::open(format!("{dir}/{name}.svs")).unwrap();
        let truth: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}.lesions.json")).unwrap())
                .unwrap();
        let pieces: Vec<Polygon> = truth["tissue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| Polygon {
                points: p
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|q| (q[0].as_f64().unwrap(), q[1].as_f64().unwrap()))
                    .collect(),
            })
            .collect();
        let mask = detect_tissue(&slide, 0.5, &TissueOptions::default()).unwrap();
        let (mut both, mut either) = (0usize, 0usize);
        for y in 0..mask.height {
            for x in 0..mask.width {
                let (cx, cy) = (
                    (x as f64 + 0.5) * mask.downsample,
                    (y as f64 + 0.5) * mask.downsample,
                );
                let truth = pieces.iter().any(|p| p.contains(cx, cy));
                let found = mask.tissue[y * mask.width + x];
                both += (truth && found) as usize;
                either += (truth || found) as usize;
            }
        }
        let iou = both as f64 / either as f64;
        eprintln!(
            "{name}: tissue IoU {iou:.3} (mask {}x{} at {:.0} px, threshold {})",
            mask.width, mask.height, mask.downsample, mask.threshold
        );
        assert!(iou >= 0.85, "{name}: tissue IoU {iou:.3}");
    }
}
