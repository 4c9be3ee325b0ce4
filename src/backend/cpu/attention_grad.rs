//! Exact attention's backward pass on the CPU: the reference the GPU's backward kernel is
//! checked against, and training's on a machine without one. The forward here also returns
//! each row's log-sum-exp, from which the backward recomputes the probabilities, as the GPU's
//! kernel does. Each sequence's scores are held whole, one head at a time, as candle
//! matrices: the short sequences of training's crops and of the checks, not a slide's.
//!
//! With z = q·kᵀ/√d + bias, P = softmax(z) by rows, O = P·V and dO given:
//! dV = Pᵀ·dO, dP = dO·Vᵀ, dZ = P ∘ (dP − rowsum(dO ∘ O)), dQ = dZ·K/√d, dK = dZᵀ·Q/√d.

use super::attention::{Alibi2d, Packed};
use candle_core::{Device, Tensor, D};

/// One (sequence, head) of a packed batch.
#[derive(Clone, Copy)]
struct Task<'a> {
    start: usize,
    end: usize,
    head: usize,
    shape: &'a Packed<'a>,
    bias: Option<Alibi2d<'a>>,
}

impl Task<'_> {
    /// This head's rows of the task's tokens in a `[tokens, heads, head_dim]` array, `[n, d]`.
    fn rows(&self, x: &[f32]) -> candle_core::Result<Tensor> {
        let (h, d) = (self.shape.heads, self.shape.head_dim);
        let data: Vec<f32> = (self.start..self.end)
            .flat_map(|t| x[(t * h + self.head) * d..][..d].iter().copied())
            .collect();
        Tensor::from_vec(data, (self.end - self.start, d), &Device::Cpu)
    }

    /// Writes `rows` (`[n, d]`) back into this head's rows of `x`.
    fn scatter(&self, rows: &Tensor, x: &mut [f32]) -> candle_core::Result<()> {
        let (h, d) = (self.shape.heads, self.shape.head_dim);
        let data = rows.flatten_all()?.to_vec1::<f32>()?;
        for (i, t) in (self.start..self.end).enumerate() {
            x[(t * h + self.head) * d..][..d].copy_from_slice(&data[i * d..(i + 1) * d]);
        }
        Ok(())
    }

    /// z = q·kᵀ/√d + bias, `[n, n]`.
    fn scores(&self, q: &Tensor, k: &Tensor) -> candle_core::Result<Tensor> {
        let z = (q.matmul(&k.t()?)? / (self.shape.head_dim as f64).sqrt())?;
        let Some(b) = self.bias else {
            return Ok(z);
        };
        let n = self.end - self.start;
        let pos = &b.positions[self.start..self.end];
        let slope = b.slopes[self.head];
        let bias: Vec<f32> = (0..n * n)
            .map(|ij| {
                let (p, r) = (pos[ij / n], pos[ij % n]);
                -slope * ((p[0] - r[0]).powi(2) + (p[1] - r[1]).powi(2)).sqrt()
            })
            .collect();
        z + Tensor::from_vec(bias, (n, n), &Device::Cpu)?
    }

    /// P = softmax(z) and its rows' log-sum-exp (`[n, 1]`).
    fn probabilities(&self, z: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let max = z.max_keepdim(D::Minus1)?;
        let e = z.broadcast_sub(&max)?.exp()?;
        let sum = e.sum_keepdim(D::Minus1)?;
        Ok((e.broadcast_div(&sum)?, (max + sum.log()?)?))
    }
}

/// Every non-empty (sequence, head) of `shape`.
fn tasks<'a>(shape: &'a Packed<'a>, bias: Option<Alibi2d<'a>>) -> Vec<Task<'a>> {
    shape
        .offsets
        .windows(2)
        .filter(|w| w[1] > w[0])
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
/// (token, head)'s log-sum-exp of z (natural log, `[tokens, heads]`). Each sequence's
/// scores are held whole (`N²` values a head): for training's crops and the checks.
pub fn attention_with_lse(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: &Packed,
    bias: Option<Alibi2d>,
) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
    let (h, d) = (shape.heads, shape.head_dim);
    let tokens = *shape.offsets.last().unwrap_or(&0);
    let (mut out, mut lse) = (vec![0f32; tokens * h * d], vec![0f32; tokens * h]);
    for task in tasks(shape, bias) {
        let z = task.scores(&task.rows(q)?, &task.rows(k)?)?;
        let (p, row_lse) = task.probabilities(&z)?;
        task.scatter(&p.matmul(&task.rows(v)?)?, &mut out)?;
        for (i, l) in row_lse.flatten_all()?.to_vec1::<f32>()?.into_iter().enumerate() {
            lse[(task.start + i) * h + task.head] = l;
        }
    }
    Ok((out, lse))
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
) -> candle_core::Result<[Vec<f32>; 3]> {
    let (h, d) = (shape.heads, shape.head_dim);
    let tokens = *shape.offsets.last().unwrap_or(&0);
    let scale = 1.0 / (d as f64).sqrt();
    let mut grads = [
        vec![0f32; tokens * h * d],
        vec![0f32; tokens * h * d],
        vec![0f32; tokens * h * d],
    ];
    for task in tasks(shape, bias) {
        let (qt, kt, vt) = (task.rows(q)?, task.rows(k)?, task.rows(v)?);
        let (o, dout) = (task.rows(out)?, task.rows(dout)?);
        let row_lse: Vec<f32> = (task.start..task.end).map(|t| lse[t * h + task.head]).collect();
        let row_lse = Tensor::from_vec(row_lse, (task.end - task.start, 1), &Device::Cpu)?;
        // P recomputed from the saved log-sum-exp, as the GPU's kernel does.
        let p = task.scores(&qt, &kt)?.broadcast_sub(&row_lse)?.exp()?;
        let delta = (&dout * &o)?.sum_keepdim(D::Minus1)?;
        let dz = (&p * dout.matmul(&vt.t()?)?.broadcast_sub(&delta)?)?;
        task.scatter(&(dz.matmul(&kt)? * scale)?, &mut grads[0])?;
        task.scatter(&(dz.t()?.matmul(&qt)? * scale)?, &mut grads[1])?;
        task.scatter(&p.t()?.matmul(&dout)?, &mut grads[2])?;
    }
    Ok(grads)
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
            let (out, lse) = attention_with_lse(&q, &k, &v, &shape, bias).unwrap();
            let mut tiled = vec![0f32; n];
            attention(&q, &k, &v, &mut tiled, &shape, bias);
            let worst = out
                .iter()
                .zip(&tiled)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "forward differs by {worst}");
            let [dq, dk, dv] = attention_backward(&q, &k, &v, &out, &lse, &dout, &shape, bias).unwrap();
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
