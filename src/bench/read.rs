//! Reader throughput: every level-0 tile of a slide read as an RGBA region, with the tile
//! cache off so every read decodes, on a chosen number of threads.

use crate::slide::{Slide, SlideError};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct ReadThroughput {
    pub slide: String,
    pub threads: usize,
    pub tiles: usize,
    pub megapixels: f64,
    /// Seconds of each timed pass over all tiles.
    pub seconds: Vec<f64>,
    /// Megapixels per second of the median pass.
    pub megapixels_per_second: f64,
}

/// Reads every level-0 tile of `path` `passes` times (after one warm-up pass) on a pool of
/// `threads` threads, one tile per task, and reports the median pass.
pub fn read_throughput(path: &Path, threads: usize, passes: usize) -> Result<ReadThroughput, SlideError> {
    use rayon::prelude::*;
    let slide = Slide::open(path)?;
    slide.set_tile_cache_bytes(0);
    let l = &slide.levels()[0];
    let (tw, th) = (l.tile_width as u64, l.tile_height as u64);
    let tiles: Vec<(u64, u64)> = (0..l.height.div_ceil(th))
        .flat_map(|r| (0..l.width.div_ceil(tw)).map(move |c| (c, r)))
        .collect();
    let pixels: u64 = tiles
        .iter()
        .map(|&(c, r)| tw.min(l.width - c * tw) * th.min(l.height - r * th))
        .sum();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool can be built");
    let pass = || -> Result<f64, SlideError> {
        let start = Instant::now();
        pool.install(|| {
            tiles.par_iter().try_for_each(|&(c, r)| {
                let w = tw.min(l.width - c * tw) as u32;
                let h = th.min(l.height - r * th) as u32;
                slide
                    .read_region(0, (c * tw) as i64, (r * th) as i64, w, h)
                    .map(|img| {
                        std::hint::black_box(img);
                    })
            })
        })?;
        Ok(start.elapsed().as_secs_f64())
    };
    pass()?;
    let mut seconds = (0..passes.max(1))
        .map(|_| pass())
        .collect::<Result<Vec<_>, _>>()?;
    let timed = seconds.clone();
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    let megapixels = pixels as f64 / 1e6;
    Ok(ReadThroughput {
        slide: path.display().to_string(),
        threads,
        tiles: tiles.len(),
        megapixels,
        seconds: timed,
        megapixels_per_second: megapixels / median,
    })
}
