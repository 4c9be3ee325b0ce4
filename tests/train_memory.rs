//! Training tiles are read from their slides when needed, not held: a cohort's tile set
//! keeps where each tile is, so loading it leaves a small fraction of its tiles' bytes live.

mod common;

use common::counting_alloc::{self, serial, start_case, CountingAlloc};
use flashslide::train::data::load_cohort;
use std::path::Path;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn a_loaded_cohort_holds_where_its_tiles_are_not_their_pixels() {
    let _one_at_a_time = serial();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let before = start_case();
    let cohort = load_cohort(&samples, 0.5, 256, 3, true).unwrap();
    let live = counting_alloc::live().saturating_sub(before);
    let tiles = cohort.train.len() + cohort.validation.len();
    let pixels = tiles * 256 * 256 * 3;
    assert!(tiles >= 50, "{tiles} tiles");
    assert!(
        live < pixels / 10,
        "{live} bytes live for {tiles} tiles ({pixels} bytes of pixels)"
    );
    // And each tile reads back as a whole tile.
    assert_eq!(cohort.train.tile(0).unwrap().len(), 256 * 256 * 3);
    assert_eq!(cohort.train.pixels(&[0, 1]).unwrap().len(), 2 * 256 * 256 * 3);
}
