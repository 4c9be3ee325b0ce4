//! The FROC against CAMELYON16's evaluation logic (its computeFROC and numpy.interp,
//! transcribed in tests/fixtures/camelyon16_froc.py) on random cohorts. Needs python3 with
//! numpy; says SKIPPED without them unless FLASHSLIDE_REQUIRE_NUMPY is set.

use flashslide::annotation::lesions::Hit;
use flashslide::annotation::LesionClass;
use flashslide::eval::froc::{froc, SlideDetections};
use std::process::Command;

/// A small deterministic generator (no rand dependency for one test).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

fn cohort(seed: u64) -> Vec<SlideDetections> {
    let mut rng = Lcg(seed);
    (0..1 + rng.below(12))
        .map(|_| {
            let lesions: Vec<LesionClass> = (0..rng.below(5))
                .map(|_| [LesionClass::Itc, LesionClass::Micro, LesionClass::Macro][rng.below(3)])
                .collect();
            let detections = (0..rng.below(15))
                .map(|_| {
                    // Scores on a coarse grid, so that ties happen.
                    let confidence = (1 + rng.below(20)) as f32 / 20.0;
                    let hit = if !lesions.is_empty() && rng.below(2) == 0 {
                        Hit::Lesion(rng.below(lesions.len() as u64))
                    } else {
                        Hit::Background
                    };
                    (confidence, hit)
                })
                .collect();
            SlideDetections { lesions, detections }
        })
        .collect()
}

#[test]
fn froc_matches_the_camelyon16_script_on_random_cohorts() {
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for seed in 0..200 {
        let slides = cohort(seed);
        let Some(f) = froc(&slides) else { continue };
        let json_slides: Vec<serde_json::Value> = slides
            .iter()
            .map(|s| {
                serde_json::json!({
                    "itc": s.lesions.iter().map(|c| *c == LesionClass::Itc).collect::<Vec<_>>(),
                    "detections": s.detections.iter().map(|(p, hit)| {
                        let label = match hit { Hit::Lesion(i) => *i as i64 + 1, Hit::Background => 0 };
                        serde_json::json!([p, label])
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        cases.push(json_slides);
        ours.push(f.score);
    }
    assert!(cases.len() > 100, "{} cohorts with lesions", cases.len());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/camelyon16_froc.py");
    let input = std::env::temp_dir().join(format!("froc-cases-{}.json", std::process::id()));
    std::fs::write(&input, serde_json::to_vec(&cases).unwrap()).unwrap();
    let out = Command::new("python3")
        .args([script, input.to_str().unwrap()])
        .output();
    let _ = std::fs::remove_file(&input);
    let out = match out {
        Ok(o) if o.status.success() => o,
        other if std::env::var_os("FLASHSLIDE_REQUIRE_NUMPY").is_none() => {
            eprintln!("SKIPPED: python3 with numpy is needed ({other:?})");
            return;
        }
        other => panic!("the reference script failed: {other:?}"),
    };
    let theirs: Vec<f64> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs.len(), ours.len());
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert!((a - b).abs() < 1e-9, "cohort {i}: ours {a}, CAMELYON16's {b}");
    }
}
