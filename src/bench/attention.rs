//! Attention benchmark on the CPU: the tiled FlashAttention of `backend::cpu::attention`
//! against naive attention (the N × N score matrix materialised, one head at a time), on the
//! same random inputs, with time, throughput and the peak memory each needs.

use crate::backend::cpu::attention::{attention, Packed};
use crate::backend::testing::random_inputs;
use crate::util::process::peak_rss;
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct AttentionRun {
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Median seconds of the tiled kernel.
    pub flash_seconds: f64,
    /// FLOPs counted as 4·H·N²·d.
    pub flash_gflops: f64,
    /// The process's peak resident memory after the tiled kernel ran (bytes; Linux).
    pub peak_rss_after_flash: Option<u64>,
    pub naive_seconds: Option<f64>,
    /// The N × N scores of one head (bytes).
    pub naive_work_bytes: u64,
    /// The process's peak resident memory after naive attention ran too (bytes; Linux).
    pub peak_rss_after_naive: Option<u64>,
    /// ‖flash − naive‖ / ‖naive‖ when naive ran.
    pub relative_error: Option<f64>,
}

/// Naive attention: per head, the full score matrix, a row softmax, then P·V.
pub fn naive_attention(q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], n: usize, heads: usize, d: usize) {
    let scale = 1.0 / (d as f32).sqrt();
    let row = |t: usize, h: usize| (t * heads + h) * d;
    for h in 0..heads {
        let mut scores = vec![0f32; n * n];
        scores.par_chunks_mut(n).enumerate().for_each(|(i, s)| {
            let qi = &q[row(i, h)..row(i, h) + d];
            for (j, sj) in s.iter_mut().enumerate() {
                *sj = qi
                    .iter()
                    .zip(&k[row(j, h)..row(j, h) + d])
                    .map(|(a, b)| a * b)
                    .sum::<f32>()
                    * scale;
            }
            let m = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mut z = 0.0;
            s.iter_mut().for_each(|x| {
                *x = (*x - m).exp();
                z += *x;
            });
            s.iter_mut().for_each(|x| *x /= z);
        });
        let rows: Vec<Vec<f32>> = (0..n)
            .into_par_iter()
            .map(|i| {
                let mut o = vec![0f32; d];
                for j in 0..n {
                    let p = scores[i * n + j];
                    o.iter_mut()
                        .zip(&v[row(j, h)..row(j, h) + d])
                        .for_each(|(a, b)| *a += p * b);
                }
                o
            })
            .collect();
        for (i, o) in rows.into_iter().enumerate() {
            out[row(i, h)..row(i, h) + d].copy_from_slice(&o);
        }
    }
}

/// Runs both on `tokens` × `heads` × `head_dim`; naive only when its scores fit in
/// `naive_limit_bytes`. The tiled kernel's time is the median of `runs` after a warm-up.
pub fn bench_attention(
    tokens: usize,
    heads: usize,
    head_dim: usize,
    runs: usize,
    naive_limit_bytes: u64,
) -> AttentionRun {
    let len = tokens * heads * head_dim;
    let (q, k, v) = (
        random_inputs(len, 1),
        random_inputs(len, 2),
        random_inputs(len, 3),
    );
    let offsets = [0, tokens];
    let shape = Packed {
        offsets: &offsets,
        heads,
        head_dim,
    };
    let mut out = vec![f32::NAN; len];
    let mut times = Vec::new();
    for i in 0..=runs.max(1) {
        let start = Instant::now();
        attention(&q, &k, &v, &mut out, &shape, None);
        if i > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let flash_seconds = times[times.len() / 2];
    let peak_rss_after_flash = peak_rss();
    let flops = 4.0 * heads as f64 * (tokens as f64).powi(2) * head_dim as f64;
    let naive_work_bytes = (tokens * tokens * 4) as u64;
    let (naive_seconds, relative_error) = if naive_work_bytes <= naive_limit_bytes {
        let mut reference = vec![f32::NAN; len];
        let start = Instant::now();
        naive_attention(&q, &k, &v, &mut reference, tokens, heads, head_dim);
        let secs = start.elapsed().as_secs_f64();
        let err: f64 = out
            .iter()
            .zip(&reference)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = reference.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
        (Some(secs), Some(err / norm))
    } else {
        (None, None)
    };
    AttentionRun {
        tokens,
        heads,
        head_dim,
        flash_seconds,
        flash_gflops: flops / flash_seconds / 1e9,
        peak_rss_after_flash,
        naive_seconds,
        naive_work_bytes,
        peak_rss_after_naive: naive_seconds.and(peak_rss()),
        relative_error,
    }
}
