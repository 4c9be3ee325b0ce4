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
    /// Stored tiles across and down that one model tile can touch.
    pub span: [u32; 2],
    /// Per model tile, `span[1]` rows of `span[0]` entries: the index in `streams` of the
    /// stored tile at (its origin's stored column + c, row + r), or −1 for glass (a tile the
    /// file leaves out, or past the level's edge).
    pub sources: Vec<i32>,
}

impl JpegBatch {
    /// Model tiles in the batch.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }
}
