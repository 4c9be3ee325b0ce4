//! Pixel decoders: JPEG (with TIFF's shared tables and forced colour spaces) and the
//! lossless TIFF compressions, each producing RGBA8.

pub(crate) mod jpeg;
pub(crate) mod jpeg2000;
pub(crate) mod lossless;
pub(crate) mod picture;

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

/// Expands 1 (grey), 3 (RGB) or 4 (RGBA) interleaved 8-bit samples of `pixels` pixels to
/// RGBA in place: the buffer grows to four bytes a pixel (within its capacity, where the
/// caller reserved it) and pixels move from the last to the first, each landing at or after
/// its samples, so a tile never needs a second buffer.
pub(crate) fn expand_to_rgba(mut buf: Vec<u8>, channels: usize, pixels: usize) -> Vec<u8> {
    buf.resize(pixels * 4, 255);
    if channels != 4 {
        for i in (0..pixels).rev() {
            let s = i * channels;
            let rgb = if channels == 1 {
                [buf[s]; 3]
            } else {
                [buf[s], buf[s + 1], buf[s + 2]]
            };
            buf[4 * i..4 * i + 4].copy_from_slice(&[rgb[0], rgb[1], rgb[2], 255]);
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    #[test]
    fn expands_grey_and_rgb_in_place() {
        assert_eq!(
            super::expand_to_rgba(vec![1, 2], 1, 2),
            vec![1, 1, 1, 255, 2, 2, 2, 255]
        );
        assert_eq!(
            super::expand_to_rgba(vec![1, 2, 3, 4, 5, 6], 3, 2),
            vec![1, 2, 3, 255, 4, 5, 6, 255]
        );
        assert_eq!(super::expand_to_rgba(vec![1, 2, 3, 4], 4, 1), vec![1, 2, 3, 4]);
    }
}
