//! The lossless TIFF compressions (none, LZW, Deflate, ZSTD) and the horizontal predictor.
//! Each decompresses into exactly the bytes the chunk needs and no more, whatever the
//! compressed stream claims.
//!
//! ZSTD goes through libzstd (the `zstd` crate builds its bundled C source): the pure-Rust
//! decoder copies long short-offset matches a few bytes at a time, which made ZSTD slides
//! read 4x slower than with libzstd (bench/RESULTS.md).

use crate::slide::error::{corrupt, unsupported, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lossless {
    None,
    Lzw,
    Deflate,
    Zstd,
}

impl Lossless {
    fn name(self) -> &'static str {
        match self {
            Lossless::None => "uncompressed",
            Lossless::Lzw => "LZW",
            Lossless::Deflate => "Deflate",
            Lossless::Zstd => "ZSTD",
        }
    }
}

/// Decompresses `data` into `out`, filling it. A short stream is an error; a long one is cut
/// (ZSTD's refused). Every decoder writes into the caller's buffer, sized from the TIFF tags,
/// so what a stream claims about its own size (a ZSTD frame's content size, say) is never
/// trusted and nothing is allocated from it.
pub(crate) fn decompress(codec: Lossless, data: &[u8], out: &mut [u8]) -> Result<()> {
    let expected = out.len();
    let written = match codec {
        Lossless::None => {
            let n = data.len().min(expected);
            out[..n].copy_from_slice(&data[..n]);
            n
        }
        Lossless::Lzw => {
            let mut dec = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
            let (mut read, mut written) = (0, 0);
            while written < expected {
                let res = dec.decode_bytes(&data[read..], &mut out[written..]);
                read += res.consumed_in;
                written += res.consumed_out;
                match res.status {
                    Err(e) => return Err(corrupt(format!("LZW: {e}"))),
                    Ok(weezl::LzwStatus::Done) => break,
                    Ok(_) if res.consumed_in == 0 && res.consumed_out == 0 => break,
                    Ok(_) => {}
                }
            }
            written
        }
        Lossless::Deflate => {
            use miniz_oxide::inflate::{decompress_slice_iter_to_slice, TINFLStatus};
            match decompress_slice_iter_to_slice(out, std::iter::once(data), true, false) {
                Ok(n) => n,
                // The buffer is full: the chunk is complete, the rest is cut.
                Err(TINFLStatus::HasMoreOutput) => expected,
                Err(e) => return Err(corrupt(format!("Deflate stream is corrupt ({e:?})"))),
            }
        }
        Lossless::Zstd => {
            // One-shot decoding into the caller's buffer: no window buffer is sized from the
            // frame header, and a frame larger than the buffer is an error.
            let mut dec = zstd::bulk::Decompressor::new().map_err(|e| corrupt(format!("ZSTD: {e}")))?;
            dec.decompress_to_buffer(data, out)
                .map_err(|e| corrupt(format!("ZSTD: {e}")))?
        }
    };
    if written < expected {
        return Err(corrupt(format!(
            "{} data gives {written} bytes, expected {expected}",
            codec.name()
        )));
    }
    Ok(())
}

/// Undoes TIFF predictor 2 (horizontal differencing) on 8-bit samples in place.
pub(crate) fn undo_horizontal_predictor(buf: &mut [u8], row_bytes: usize, channels: usize) {
    for row in buf.chunks_exact_mut(row_bytes) {
        for i in channels..row.len() {
            row[i] = row[i].wrapping_add(row[i - channels]);
        }
    }
}

/// Checks a TIFF Predictor value against what the lossless path supports.
pub(crate) fn check_predictor(predictor: u64) -> Result<bool> {
    match predictor {
        1 => Ok(false),
        2 => Ok(true),
        p => Err(unsupported(format!("TIFF predictor {p}"))),
    }
}
