//! Pixel decoders: JPEG (with TIFF's shared tables and forced colour spaces) and the
//! lossless TIFF compressions, each producing RGBA8.

pub(crate) mod jpeg;
pub(crate) mod lossless;

/// A decoded tile (or strip, or restart interval) as RGBA8, row-major.
pub(crate) struct Tile {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

impl Tile {
    pub fn byte_len(&self) -> usize {
        self.rgba.len()
    }
}

/// Expands 1 (grey), 3 (RGB) or 4 (RGBA) interleaved 8-bit samples to RGBA.
pub(crate) fn expand_to_rgba(samples: &[u8], channels: usize, pixels: usize) -> Vec<u8> {
    let mut out = vec![255u8; pixels * 4];
    match channels {
        1 => {
            for (o, &v) in out.chunks_exact_mut(4).zip(samples) {
                o[0] = v;
                o[1] = v;
                o[2] = v;
            }
        }
        3 => {
            for (o, s) in out.chunks_exact_mut(4).zip(samples.chunks_exact(3)) {
                o[..3].copy_from_slice(s);
            }
        }
        _ => {
            for (o, s) in out.chunks_exact_mut(4).zip(samples.chunks_exact(channels)) {
                o.copy_from_slice(&s[..4]);
            }
        }
    }
    out
}
