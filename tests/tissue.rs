//! Tissue detection against the ground-truth tissue outlines of the bundled samples.

use flashslide::analysis::tissue::{detect_tissue, TissueOptions};
use flashslide::annotation::polygon::Polygon;
use flashslide::slide::Slide;

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

#[test]
fn tiles_cover_the_tissue_at_the_model_resolution() {
    use flashslide::analysis::plan::{plan_tiles, read_tile};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/samples");
    let slide = Slide::open(format!("{dir}/synth-s101-000.svs")).unwrap();
    let mask = detect_tissue(&slide, 0.5, &TissueOptions::default()).unwrap();
    // At the slide's own resolution: level 0, no resizing.
    let plan = plan_tiles(&slide, 0.5, 0.5, 256, &mask, 0.25).unwrap();
    assert_eq!((plan.level, plan.read_px, plan.tile_level0), (0, 256, 256.0));
    assert!(!plan.tiles.is_empty());
    for t in &plan.tiles {
        assert!(mask.fraction(t.x as f64, t.y as f64, 256.0, 256.0) >= 0.25);
    }
    let tissue_px: usize = mask.tissue.iter().filter(|&&t| t).count();
    let tissue_tiles = tissue_px as f64 * mask.downsample.powi(2) / (256.0 * 256.0);
    assert!(
        (plan.tiles.len() as f64) > 0.8 * tissue_tiles,
        "{} tiles for {tissue_tiles:.0} tiles of tissue",
        plan.tiles.len()
    );
    // A tile holds tissue: not white glass.
    let rgb = read_tile(&slide, &plan, &plan.tiles[plan.tiles.len() / 2]).unwrap();
    let mean = rgb.iter().map(|&v| v as f64).sum::<f64>() / rgb.len() as f64;
    assert!(mean < 215.0, "tile mean {mean}");
    // At 1 µm/px: read 512 px from level 0 (level 1 is 2 µm/px, too coarse) and average down.
    let coarse = plan_tiles(&slide, 0.5, 1.0, 256, &mask, 0.25).unwrap();
    assert_eq!((coarse.level, coarse.read_px), (0, 512));
    assert_eq!(
        read_tile(&slide, &coarse, &coarse.tiles[0]).unwrap().len(),
        256 * 256 * 3
    );
    // A slide that fits one tile (a model of whole-slide images) is that tile, however much
    // glass is around its tissue.
    let (w, h) = slide.dimensions();
    let whole_mpp = w.max(h) as f64 * 0.5 / 1024.0;
    let whole = plan_tiles(&slide, 0.5, whole_mpp, 1024, &mask, 0.99).unwrap();
    assert_eq!((whole.cols, whole.rows, whole.tiles.len()), (1, 1, 1));
    // A model finer than the slide would need upsampling: refused.
    assert!(plan_tiles(&slide, 0.5, 0.25, 256, &mask, 0.25).is_err());
}
