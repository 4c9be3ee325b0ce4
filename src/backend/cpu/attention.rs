//! Exact softmax attention on the CPU, tiled as FlashAttention: queries in blocks, keys and
//! values streamed in blocks, an online softmax (running maximum and sum per query row), so
//! memory stays O(N·d) at any sequence length. Blocks of queries of every head and every
//! sequence of a batch are independent tasks for rayon.
//!
//! Layout: `q`, `k`, `v` and the output are token-major, `[tokens, heads, head_dim]`, which is
//! what splitting a fused QKV projection gives and what the output projection takes, so the
//! model never transposes. A batch of sequences of different lengths is packed along the
//! token axis and described by cumulative offsets, as in FlashAttention's varlen API.
//!
//! The optional 2D ALiBi bias, `−slope[h] · ‖pos[i] − pos[j]‖` for tokens at grid positions
//! `pos` (row, column), is computed inside each block and never stored as an N × N matrix.

use rayon::prelude::*;

/// Query rows per task, and keys per inner block.
const QUERY_BLOCK: usize = 64;
const KEY_BLOCK: usize = 128;

/// The shape of a packed batch: sequence `s` holds tokens `offsets[s]..offsets[s + 1]`.
#[derive(Clone, Debug)]
pub struct Packed<'a> {
    pub offsets: &'a [usize],
    pub heads: usize,
    pub head_dim: usize,
}

/// A 2D ALiBi bias: per-token grid positions (row, column) and per-head slopes.
#[derive(Clone, Copy, Debug)]
pub struct Alibi2d<'a> {
    pub positions: &'a [[f32; 2]],
    pub slopes: &'a [f32],
}

/// ALiBi's geometric slopes for `heads` heads: 2^(−8(h+1)/heads).
pub fn alibi_slopes(heads: usize) -> Vec<f32> {
    (0..heads)
        .map(|h| 2f32.powf(-8.0 * (h as f32 + 1.0) / heads as f32))
        .collect()
}

/// Writes softmax(q·kᵀ/√d + bias)·v into `out`, for every head of every sequence of `shape`.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], shape: &Packed, bias: Option<Alibi2d>) {
    let (h, d) = (shape.heads, shape.head_dim);
    let total = *shape.offsets.last().unwrap_or(&0);
    let len = total * h * d;
    assert!(
        q.len() == len && k.len() == len && v.len() == len && out.len() == len,
        "q, k, v, out must be [tokens, heads, head_dim]"
    );
    assert!(
        shape.offsets.windows(2).all(|w| w[0] <= w[1]),
        "offsets must be non-decreasing"
    );
    if let Some(b) = bias {
        assert!(
            b.positions.len() == total && b.slopes.len() == h,
            "one position per token, one slope per head"
        );
    }
    // Tasks: a block of queries of one sequence, all heads; each owns its slab of `out`
    // (token-major, so a block of tokens is contiguous).
    let mut tasks: Vec<(usize, usize, usize, &mut [f32])> = Vec::new();
    let mut rest = out;
    for s in shape.offsets.windows(2) {
        for q0 in (s[0]..s[1]).step_by(QUERY_BLOCK) {
            let rows = QUERY_BLOCK.min(s[1] - q0);
            let (slab, tail) = std::mem::take(&mut rest).split_at_mut(rows * h * d);
            tasks.push((s[0], s[1], q0, slab));
            rest = tail;
        }
    }
    tasks.into_par_iter().for_each(|(start, end, q0, slab)| {
        let rows = slab.len() / (h * d);
        let mut block = vec![0f32; rows * d];
        for head in 0..h {
            block.fill(0.0);
            let task = Block {
                q,
                k,
                v,
                start,
                end,
                q0,
                rows,
                head,
                heads: h,
                d,
                bias,
            };
            attend_block_fastest(&task, &mut block);
            for r in 0..rows {
                slab[(r * h + head) * d..(r * h + head + 1) * d].copy_from_slice(&block[r * d..(r + 1) * d]);
            }
        }
    });
}

/// One block of `rows` queries (from `q0`) of one head against all keys of its sequence
/// (`start..end`).
#[derive(Clone, Copy)]
struct Block<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    start: usize,
    end: usize,
    q0: usize,
    rows: usize,
    head: usize,
    heads: usize,
    d: usize,
    bias: Option<Alibi2d<'a>>,
}

/// [`attend_block`] compiled for AVX2 and FMA when the CPU has them (the portable build
/// targets baseline x86-64: 4-wide SSE2 and a library call per `floor`), else as is.
fn attend_block_fastest(b: &Block, acc: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(b: &Block, acc: &mut [f32]) {
            attend_block(b, acc)
        }
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { avx2(b, acc) };
    }
    attend_block(b, acc)
}

/// Writes the block's attention output (unnormalised rows first, then divided by their
/// sums) into `acc` (`rows × d`, zeroed by the caller).
#[inline(always)]
fn attend_block(b: &Block, acc: &mut [f32]) {
    let Block {
        q,
        k,
        v,
        start,
        end,
        q0,
        rows,
        head,
        heads,
        d,
        bias,
    } = *b;
    let row = |t: usize| (t * heads + head) * d;
    // Scores in base 2: exp(x) = 2^(x·log2 e), the scale folded into one multiply.
    let scale = std::f32::consts::LOG2_E / (d as f32).sqrt();
    let slope = bias.map(|b| b.slopes[head] * std::f32::consts::LOG2_E);
    let mut max = vec![f32::NEG_INFINITY; rows];
    let mut sum = vec![0f32; rows];
    let mut scores = vec![0f32; KEY_BLOCK];
    for k0 in (start..end).step_by(KEY_BLOCK) {
        let cols = KEY_BLOCK.min(end - k0);
        for r in 0..rows {
            let qi = q0 + r;
            let qrow = &q[row(qi)..row(qi) + d];
            let mut block_max = f32::NEG_INFINITY;
            for (c, score) in scores[..cols].iter_mut().enumerate() {
                let kj = k0 + c;
                let mut s = dot(qrow, &k[row(kj)..row(kj) + d]) * scale;
                if let (Some(b), Some(slope)) = (bias, slope) {
                    let (pi, pj) = (b.positions[qi], b.positions[kj]);
                    let (dr, dc) = (pi[0] - pj[0], pi[1] - pj[1]);
                    s -= slope * (dr * dr + dc * dc).sqrt();
                }
                *score = s;
                block_max = block_max.max(s);
            }
            // Online softmax: rescale what was accumulated to the new maximum.
            let new_max = max[r].max(block_max);
            let correction = (max[r] - new_max).exp2();
            let out_row = &mut acc[r * d..(r + 1) * d];
            if correction != 1.0 {
                out_row.iter_mut().for_each(|o| *o *= correction);
            }
            let probs = &mut scores[..cols];
            probs.iter_mut().for_each(|s| *s = exp2_nonpositive(*s - new_max));
            let block_sum: f32 = probs.iter().sum();
            for (c, &p) in probs.iter().enumerate() {
                axpy(p, &v[row(k0 + c)..row(k0 + c) + d], out_row);
            }
            sum[r] = sum[r] * correction + block_sum;
            max[r] = new_max;
        }
    }
    for r in 0..rows {
        let inv = 1.0 / sum[r];
        acc[r * d..(r + 1) * d].iter_mut().for_each(|o| *o *= inv);
    }
}

/// 2^x for x ≤ 0 (−∞ and anything below −126 give 2^−126, negligible beside the row's
/// maximum, whose term is 1), relative error below 3e-7: a polynomial on the
/// fractional part scaled by the integer part through the exponent bits, so a loop of it
/// vectorises (the library's exp2f is a call per element).
#[inline(always)]
fn exp2_nonpositive(x: f32) -> f32 {
    let x = x.max(-126.0);
    let whole = (x + 0.5).floor();
    let f = x - whole;
    // 2^f = 1 + f·P(f) on [−½, ½] (Cephes' exp2f coefficients).
    let p = 1.535_336_2e-4f32;
    let p = p * f + 1.339_887_4e-3;
    let p = p * f + 9.618_437e-3;
    let p = p * f + 5.550_332_5e-2;
    let p = p * f + 2.402_264_7e-1;
    let p = p * f + 6.931_472e-1;
    let p = p * f + 1.0;
    p * f32::from_bits(((whole as i32 + 127) as u32) << 23)
}

/// Dot product with eight independent accumulators, so the compiler vectorises it.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `y += a · x`.
#[inline]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::testing::random_inputs as random;

    /// The N × N matrix materialised, in f64: the reference.
    fn naive(q: &[f32], k: &[f32], v: &[f32], shape: &Packed, bias: Option<Alibi2d>) -> Vec<f64> {
        let (h, d) = (shape.heads, shape.head_dim);
        let mut out = vec![0f64; q.len()];
        for s in shape.offsets.windows(2) {
            for head in 0..h {
                for i in s[0]..s[1] {
                    let qi = &q[(i * h + head) * d..][..d];
                    let scores: Vec<f64> = (s[0]..s[1])
                        .map(|j| {
                            let kj = &k[(j * h + head) * d..][..d];
                            let mut x = qi.iter().zip(kj).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
                                / (d as f64).sqrt();
                            if let Some(b) = bias {
                                let (pi, pj) = (b.positions[i], b.positions[j]);
                                let dist = (((pi[0] - pj[0]) as f64).powi(2)
                                    + ((pi[1] - pj[1]) as f64).powi(2))
                                .sqrt();
                                x -= b.slopes[head] as f64 * dist;
                            }
                            x
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let w: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = w.iter().sum();
                    for (jj, j) in (s[0]..s[1]).enumerate() {
                        for c in 0..d {
                            out[(i * h + head) * d + c] += w[jj] / z * v[(j * h + head) * d + c] as f64;
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn equals_naive_attention_on_many_shapes() {
        let cases: &[(&[usize], usize, usize, bool)] = &[
            (&[0, 1], 2, 32, false),
            (&[0, 1], 2, 64, true),
            (&[0, 257], 3, 64, false),
            (&[0, 257], 3, 64, true),
            (&[0, 130], 2, 128, true),
            (&[0, 200], 1, 32, true),
            (&[0, 5, 70, 70, 200, 333], 2, 64, true), // packed batch, one empty sequence
        ];
        for (case, &(offsets, heads, d, with_bias)) in cases.iter().enumerate() {
            let n = *offsets.last().unwrap();
            let (q, k, v) = (
                random(n * heads * d, 1 + case as u64),
                random(n * heads * d, 100 + case as u64),
                random(n * heads * d, 200 + case as u64),
            );
            let positions: Vec<[f32; 2]> = (0..n).map(|i| [(i / 17) as f32, (i % 17) as f32]).collect();
            let slopes = alibi_slopes(heads);
            let bias = with_bias.then_some(Alibi2d {
                positions: &positions,
                slopes: &slopes,
            });
            let shape = Packed {
                offsets,
                heads,
                head_dim: d,
            };
            let mut out = vec![f32::NAN; n * heads * d]; // poisoned: every element must be written
            attention(&q, &k, &v, &mut out, &shape, bias);
            let want = naive(&q, &k, &v, &shape, bias);
            let err: f64 = out
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as f64 - b).powi(2))
                .sum::<f64>()
                .sqrt();
            let norm: f64 = want.iter().map(|b| b * b).sum::<f64>().sqrt().max(1e-30);
            let max_abs = out
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            eprintln!("N {n:4} (sequences {offsets:?}), heads {heads}, d {d:3}, ALiBi {with_bias}: relative error {:.2e}, max abs {max_abs:.2e}", err / norm);
            assert!(
                out.iter().all(|x| x.is_finite()),
                "case {case}: non-finite output"
            );
            assert!(
                err / norm <= 1e-5,
                "case {case}: relative error {:.2e} (max abs {max_abs:.2e})",
                err / norm
            );
        }
    }

    #[test]
    fn fast_exp2_is_accurate_to_float_precision() {
        let mut worst = 0f64;
        for i in 0..100_000 {
            let x = -(i as f32) * 1.26e-3;
            let want = (x as f64).exp2();
            worst = worst.max(((exp2_nonpositive(x) as f64) - want).abs() / want);
        }
        assert!(worst < 3e-7, "relative error {worst:.2e}");
        assert_eq!(exp2_nonpositive(f32::NEG_INFINITY), 2f32.powi(-126));
        assert_eq!(exp2_nonpositive(0.0), 1.0);
    }

    #[test]
    fn alibi_slopes_are_geometric() {
        let s = alibi_slopes(8);
        assert!((s[0] - 0.5).abs() < 1e-7 && (s[7] - 1.0 / 256.0).abs() < 1e-9);
    }
}
