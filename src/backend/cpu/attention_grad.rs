//! Exact attention's backward pass on the CPU: the reference the GPU's backward kernel is
//! checked against, and training's on a machine without one. The forward here also returns
//! each row's log-sum-exp, from which the backward recomputes the probabilities one query
//! row at a time (memory O(N·d) beyond the inputs, as on the GPU).
//!
//! With z = q·kᵀ/√d + bias, P = softmax(z) by rows, O = P·V and dO given:
//! dV = Pᵀ·dO, dP = dO·Vᵀ, dZ = P ∘ (dP − rowsum(dO ∘ O)), dQ = dZ·K/√d, dK = dZᵀ·Q/√d.

use super::attention::{Alibi2d, Packed};
use rayon::prelude::*;

/// One (sequence, head) of a packed batch: its tokens and how to read a row of it.
#[derive(Clone, Copy)]
struct Task<'a> {
    start: usize,
    end: usize,
    head: usize,
    shape: &'a Packed<'a>,
    bias: Option<Alibi2d<'a>>,
}

impl Task<'_> {
    /// Token `t`'s row of this head in a `[tokens, heads, head_dim]` array.
    fn row<'x>(&self, x: &'x [f32], t: usize) -> &'x [f32] {
        let (h, d) = (self.shape.heads, self.shape.head_dim);
        &x[(t * h + self.head) * d..][..d]
    }

    /// z for query `i` against every key of the sequence.
    fn scores(&self, q: &[f32], k: &[f32], i: usize, out: &mut Vec<f32>) {
        let scale = 1.0 / (self.shape.head_dim as f32).sqrt();
        let qi = self.row(q, i);
        out.clear();
        out.extend((self.start..self.end).map(|j| {
            let dot: f32 = qi.iter().zip(self.row(k, j)).map(|(a, b)| a * b).sum();
            let bias = self.bias.map_or(0.0, |b| {
                let (p, r) = (b.positions[i], b.positions[j]);
                -b.slopes[self.head] * ((p[0] - r[0]).powi(2) + (p[1] - r[1]).powi(2)).sqrt()
            });
            dot * scale + bias
        }));
    }
}

fn tasks<'a>(shape: &'a Packed<'a>, bias: Option<Alibi2d<'a>>) -> Vec<Task<'a>> {
    shape
        .offsets
        .windows(2)
        .flat_map(|w| {
            (0..shape.heads).map(move |head| Task {
                start: w[0],
                end: w[1],
                head,
                shape,
                bias,
            })
        })
        .collect()
}

/// softmax(q·kᵀ/√d + bias)·v, as [`super::attention::attention`] computes it, and each
/// (token, head)'s log-sum-exp of z (natural log, `[tokens, heads]`).
pub fn attention_with_lse(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: &Packed,
    bias: Option<Alibi2d>,
) -> (Vec<f32>, Vec<f32>) {
    let (h, d) = (shape.heads, shape.head_dim);
    let tokens = *shape.offsets.last().unwrap_or(&0);
    let results: Vec<(Task, Vec<f32>, Vec<f32>)> = tasks(shape, bias)
        .into_par_iter()
        .map(|task| {
            let n = task.end - task.start;
            let (mut out, mut lse) = (vec![0f32; n * d], vec![0f32; n]);
            let mut z = Vec::with_capacity(n);
            for i in 0..n {
                task.scores(q, k, task.start + i, &mut z);
                let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                let row = &mut out[i * d..(i + 1) * d];
                for (j, &zj) in z.iter().enumerate() {
                    let p = (zj - max).exp();
                    sum += p;
                    for (o, x) in row.iter_mut().zip(task.row(v, task.start + j)) {
                        *o += p * x;
                    }
                }
                row.iter_mut().for_each(|o| *o /= sum);
                lse[i] = max + sum.ln();
            }
            (task, out, lse)
        })
        .collect();
    let (mut out, mut lse) = (vec![0f32; tokens * h * d], vec![0f32; tokens * h]);
    for (task, o, l) in results {
        for (i, t) in (task.start..task.end).enumerate() {
            out[(t * h + task.head) * d..][..d].copy_from_slice(&o[i * d..(i + 1) * d]);
            lse[t * h + task.head] = l[i];
        }
    }
    (out, lse)
}

/// The gradients `(dq, dk, dv)` of attention's inputs given its output `out`, the
/// log-sum-exp `lse` [`attention_with_lse`] gave with it, and the output's gradient `dout`
/// (every array `[tokens, heads, head_dim]` but `lse`, `[tokens, heads]`).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    shape: &Packed,
    bias: Option<Alibi2d>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (h, d) = (shape.heads, shape.head_dim);
    let tokens = *shape.offsets.last().unwrap_or(&0);
    let scale = 1.0 / (d as f32).sqrt();
    type Grads = (Vec<f32>, Vec<f32>, Vec<f32>);
    let results: Vec<(Task, Grads)> = tasks(shape, bias)
        .into_par_iter()
        .map(|task| {
            let n = task.end - task.start;
            let (mut dq, mut dk, mut dv) = (vec![0f32; n * d], vec![0f32; n * d], vec![0f32; n * d]);
            let mut z = Vec::with_capacity(n);
            for i in 0..n {
                let t = task.start + i;
                task.scores(q, k, t, &mut z);
                let (qi, doi) = (task.row(q, t), task.row(dout, t));
                let delta: f32 = doi.iter().zip(task.row(out, t)).map(|(a, b)| a * b).sum();
                let row_lse = lse[t * h + task.head];
                for (j, &zj) in z.iter().enumerate() {
                    let key = task.start + j;
                    let p = (zj - row_lse).exp();
                    let (kj, vj) = (task.row(k, key), task.row(v, key));
                    let dp: f32 = doi.iter().zip(vj).map(|(a, b)| a * b).sum();
                    let dz = p * (dp - delta);
                    for c in 0..d {
                        dq[i * d + c] += dz * kj[c] * scale;
                        dk[j * d + c] += dz * qi[c] * scale;
                        dv[j * d + c] += p * doi[c];
                    }
                }
            }
            (task, (dq, dk, dv))
        })
        .collect();
    let len = tokens * h * d;
    let (mut dq, mut dk, mut dv) = (vec![0f32; len], vec![0f32; len], vec![0f32; len]);
    for (task, (q_part, k_part, v_part)) in results {
        for (i, t) in (task.start..task.end).enumerate() {
            let at = (t * h + task.head) * d;
            dq[at..at + d].copy_from_slice(&q_part[i * d..(i + 1) * d]);
            dk[at..at + d].copy_from_slice(&k_part[i * d..(i + 1) * d]);
            dv[at..at + d].copy_from_slice(&v_part[i * d..(i + 1) * d]);
        }
    }
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::super::attention::{alibi_slopes, attention};
    use super::*;
    use crate::util::rng::Rng;

    fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n).map(|_| rng.range(-1.0, 1.0) as f32).collect()
    }

    /// Σ dout ∘ attention(q, k, v): its gradient in q, k, v is what the backward gives.
    fn objective(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        dout: &[f32],
        shape: &Packed,
        bias: Option<Alibi2d>,
    ) -> f64 {
        let mut out = vec![0f32; q.len()];
        attention(q, k, v, &mut out, shape, bias);
        out.iter().zip(dout).map(|(a, b)| *a as f64 * *b as f64).sum()
    }

    #[test]
    fn forward_matches_the_tiled_kernel_and_gradients_match_finite_differences() {
        let mut rng = Rng::new(11);
        let (h, d) = (2, 8);
        let offsets = [0, 5, 5, 17];
        let shape = Packed {
            offsets: &offsets,
            heads: h,
            head_dim: d,
        };
        let n = 17 * h * d;
        let (q, k, v, dout) = (
            random(n, &mut rng),
            random(n, &mut rng),
            random(n, &mut rng),
            random(n, &mut rng),
        );
        let positions: Vec<[f32; 2]> = (0..17).map(|i| [(i / 4) as f32, (i % 4) as f32]).collect();
        let slopes = alibi_slopes(h);
        for bias in [
            None,
            Some(Alibi2d {
                positions: &positions,
                slopes: &slopes,
            }),
        ] {
            let (out, lse) = attention_with_lse(&q, &k, &v, &shape, bias);
            let mut tiled = vec![0f32; n];
            attention(&q, &k, &v, &mut tiled, &shape, bias);
            let worst = out
                .iter()
                .zip(&tiled)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "forward differs by {worst}");
            let (dq, dk, dv) = attention_backward(&q, &k, &v, &out, &lse, &dout, &shape, bias);
            for (which, grad) in [(0, &dq), (1, &dk), (2, &dv)] {
                for i in (0..n).step_by(7) {
                    let eps = 1e-2f32;
                    let nudged = |delta: f32| {
                        let mut x = [q.clone(), k.clone(), v.clone()];
                        x[which][i] += delta;
                        objective(&x[0], &x[1], &x[2], &dout, &shape, bias)
                    };
                    let numeric = (nudged(eps) - nudged(-eps)) / (2.0 * eps as f64);
                    let err = (numeric - grad[i] as f64).abs();
                    assert!(
                        err < 2e-3 * (1.0 + numeric.abs()),
                        "input {which}, element {i}: {} against {numeric}",
                        grad[i]
                    );
                }
            }
        }
    }
}
