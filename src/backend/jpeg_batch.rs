//! Model tiles described by the stored JPEG tiles they are cut from: what a device's tile
//! decoder takes (plain data; the analysis gathers it from a slide).

/// What a device decoder needs for one batch. Assembling it must give exactly what
/// reading each model tile from the slide gives (`analysis::plan::read_tile`), up to the JPEG decoders' own rounding.
#[derive(Debug)]
pub struct JpegBatch {
    /// The stored tiles the batch needs, each once: complete JPEG streams, each decoding to
    /// `stored_size` RGB pixels (their frame headers say so).
    pub streams: Vec<Vec<u8>>,
    pub stored_size: [u32; 2],
    /// The level's width and height: pixels past them are glass (white).
    pub level_size: [i64; 2],
    /// Model tiles are `tile_px` pixels square, each the mean of `factor` × `factor` level
    /// pixels.
    pub tile_px: u32,
    pub factor: u32,
    /// Per model tile, the level pixel at its top-left corner.
    pub origins: Vec<[i64; 2]>,
    /// Per model tile `t`, the stored tiles it touches are `placements[starts[t]..starts[t + 1]]`:
    /// a level pixel comes from the first of them that holds it, else it is glass (a tile the
    /// file leaves out, or past the level's edge).
    pub starts: Vec<u32>,
    pub placements: Vec<Placement>,
}

/// A decoded stored tile placed in the level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Its index in `streams`.
    pub source: u32,
    /// The level pixel its top-left corner lands on.
    pub corner: [i64; 2],
}

impl JpegBatch {
    /// Model tiles in the batch.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// The model tiles, `tile_px`² RGB each, from the stored tiles decoded to RGB (`decoded[i]`
    /// from `streams[i]`): what a device decoder's assembling computes, on the CPU, as the
    /// reference it is checked against.
    pub fn assemble(&self, decoded: &[Vec<u8>]) -> Vec<u8> {
        let [tw, th] = self.stored_size.map(|v| v as i64);
        let (k, side) = (self.factor as i64, self.tile_px as i64);
        let area = (k * k) as u32;
        let mut out = Vec::with_capacity(self.len() * (side * side * 3) as usize);
        for (t, &[x0, y0]) in self.origins.iter().enumerate() {
            let placed = &self.placements[self.starts[t] as usize..self.starts[t + 1] as usize];
            let pixel = |x: i64, y: i64| -> [u32; 3] {
                let inside = (0..self.level_size[0]).contains(&x) && (0..self.level_size[1]).contains(&y);
                let holds = |p: &&Placement| {
                    let [px, py] = p.corner;
                    (px..px + tw).contains(&x) && (py..py + th).contains(&y)
                };
                match placed.iter().find(holds).filter(|_| inside) {
                    None => [255; 3],
                    Some(p) => {
                        let [px, py] = p.corner;
                        let at = (((y - py) * tw + x - px) * 3) as usize;
                        let rgb = &decoded[p.source as usize][at..at + 3];
                        [rgb[0] as u32, rgb[1] as u32, rgb[2] as u32]
                    }
                }
            };
            for oy in 0..side {
                for ox in 0..side {
                    let mut sum = [0u32; 3];
                    for j in 0..k {
                        for i in 0..k {
                            let p = pixel(x0 + ox * k + i, y0 + oy * k + j);
                            (0..3).for_each(|c| sum[c] += p[c]);
                        }
                    }
                    out.extend(sum.map(|v| ((v + area / 2) / area) as u8));
                }
            }
        }
        out
    }
}
