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

/// Decompresses `data` into `expected` bytes. A short stream is an error; a long one is cut.
pub(crate) fn decompress(codec: Lossless, data: &[u8], expected: usize) -> Result<Vec<u8>> {
    let out = match codec {
        Lossless::None => data.get(..expected).map(<[u8]>::to_vec).unwrap_or_default(),
        Lossless::Lzw => {
            let mut out = vec![0u8; expected];
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
            out.truncate(written);
            out
        }
        Lossless::Deflate => miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(data, expected)
            .or_else(|e| match e.status {
                // The limit reached means the chunk is complete: keep what it needs.
                miniz_oxide::inflate::TINFLStatus::HasMoreOutput => Ok(e.output),
                _ => Err(corrupt(format!("Deflate: {e}"))),
            })?,
        Lossless::Zstd => {
            let mut out = vec![0u8; expected];
            let mut dec = zstd::bulk::Decompressor::new().map_err(|e| corrupt(format!("ZSTD: {e}")))?;
            let n = dec
                .decompress_to_buffer(data, &mut out[..])
                .map_err(|e| corrupt(format!("ZSTD: {e}")))?;
            out.truncate(n);
            out
        }
    };
    if out.len() < expected {
        return Err(corrupt(format!(
            "{codec:?} data decompressed to {} bytes, expected {expected}",
            out.len()
        )));
    }
    Ok(out)
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
