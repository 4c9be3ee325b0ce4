//! A backend's [`Gradients`] checked against the CPU's, operation by operation, on fresh
//! random inputs (rounded to bf16, so that both start from the same numbers), with the
//! relative L2 error of [`super::check`]. Attention's forward and backward over packed
//! batches (an empty sequence among them), with the rotary embedding, ALiBi or both, at
//! head dims 64 and 128. The attention backward adds dQ with atomics, so its sums may differ
//! by float reassociation from run to run: its repeatability is not asked.

use super::check::{compare, Check};
use super::cpu::CpuBackend;
use super::grad::{AdamWState, AdamWStep, Gradients, LinearGrads, NormGrads};
use super::testing::random_inputs;
use super::{Backend, BackendError, PositionSpec};
use half::bf16;

fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    random_inputs(n, seed)
        .into_iter()
        .map(|x| bf16::from_f32(x * scale).to_f32())
        .collect()
}

/// Every gradient operation of `b` against the CPU's, inputs from `seed`.
pub fn check_gradients<B: Gradients>(
    b: &B,
    seed: u64,
    print: &mut dyn FnMut(&Check),
) -> Result<Vec<Check>, BackendError> {
    let cpu = CpuBackend;
    let mut checks = Vec::new();
    let mut record = |what: String, got: Vec<f32>, want: Vec<f32>| {
        let want: Vec<f64> = want.into_iter().map(f64::from).collect();
        let c = compare(what, &got, &want, true);
        print(&c);
        checks.push(c);
    };
    let tensor_pair = |data: &[f32], rows: usize, cols: usize| -> Result<_, BackendError> {
        Ok((b.upload(data, rows, cols)?, cpu.upload(data, rows, cols)?))
    };

    let (rows, inner, out) = (77, 48, 40);
    let (x, xc) = tensor_pair(&values(rows * inner, seed, 1.0), rows, inner)?;
    let (w, wc) = tensor_pair(&values(out * inner, seed + 1, 0.5), out, inner)?;
    let (dy, dyc) = tensor_pair(&values(rows * out, seed + 2, 1.0), rows, out)?;
    let LinearGrads { dx, dw, db } = b.linear_backward(&x, &w, &dy, true)?;
    let LinearGrads {
        dx: dx_c,
        dw: dw_c,
        db: db_c,
    } = cpu.linear_backward(&xc, &wc, &dyc, true)?;
    let shape = format!("[{rows}, {inner}] → {out}");
    record(
        format!("linear backward {shape}: dx"),
        b.download(&dx)?,
        cpu.download(&dx_c)?,
    );
    record(
        format!("linear backward {shape}: dw"),
        b.download(&dw)?,
        cpu.download(&dw_c)?,
    );
    let (db, db_c) = (db.expect("asked for"), db_c.expect("asked for"));
    record(
        format!("linear backward {shape}: db"),
        b.download(&db)?,
        cpu.download(&db_c)?,
    );

    let cols = 96;
    let (x, xc) = tensor_pair(&values(rows * cols, seed + 3, 2.0), rows, cols)?;
    let (w, wc) = tensor_pair(&values(cols, seed + 4, 1.0), 1, cols)?;
    let (dy, dyc) = tensor_pair(&values(rows * cols, seed + 5, 1.0), rows, cols)?;
    let NormGrads { dx, dw, db } = b.layer_norm_backward(&x, &w, &dy, 1e-6)?;
    let NormGrads {
        dx: dx_c,
        dw: dw_c,
        db: db_c,
    } = cpu.layer_norm_backward(&xc, &wc, &dyc, 1e-6)?;
    for (part, got, want) in [("dx", dx, dx_c), ("dw", dw, dw_c), ("db", db, db_c)] {
        record(
            format!("layer norm backward [{rows}, {cols}]: {part}"),
            b.download(&got)?,
            cpu.download(&want)?,
        );
    }
    let g = b.gelu_backward(&x, &dy)?;
    let g_c = cpu.gelu_backward(&xc, &dyc)?;
    record(
        format!("GELU backward [{rows}, {cols}]"),
        b.download(&g)?,
        cpu.download(&g_c)?,
    );
    // A crop's tokens taken from a slide's features: rows out of order, one twice.
    let picked: Vec<usize> = (0..rows).rev().step_by(3).chain([5, 5]).collect();
    let (g, g_c) = (b.gather_rows(&x, &picked)?, cpu.gather_rows(&xc, &picked)?);
    record(
        format!("gather {} rows of [{rows}, {cols}]", picked.len()),
        b.download(&g)?,
        cpu.download(&g_c)?,
    );
    let (row, row_c) = tensor_pair(&values(cols, seed + 6, 1.0), 1, cols)?;
    let r = b.repeat_row(&row, 301, 0.25)?;
    let r_c = cpu.repeat_row(&row_c, 301, 0.25)?;
    record(
        format!("repeat row [1, {cols}] × 301"),
        b.download(&r)?,
        cpu.download(&r_c)?,
    );
    record(
        format!("sum of squares, two [{rows}, {cols}]"),
        vec![b.sum_squares(&[&dy, &x])? as f32],
        vec![cpu.sum_squares(&[&dyc, &xc])? as f32],
    );
    let n = 1000;
    let master = values(n, seed + 7, 1.0);
    let (g, g_c) = tensor_pair(&values(n, seed + 8, 0.1), 1, n)?;
    let moments = values(n, seed + 9, 0.01);
    let squares: Vec<f32> = moments.iter().map(|x| x * x).collect();
    let state = AdamWState {
        w: b.master(&master, 1, n)?,
        m: b.master(&moments, 1, n)?,
        v: b.master(&squares, 1, n)?,
    };
    let state_c = AdamWState {
        w: cpu.master(&master, 1, n)?,
        m: cpu.master(&moments, 1, n)?,
        v: cpu.master(&squares, 1, n)?,
    };
    let step = AdamWStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.05,
        t: 3,
        grad_scale: 0.5,
    };
    let AdamWState { w: w2, m: m2, v: v2 } = b.adamw(&state, &g, step)?;
    let AdamWState {
        w: w2c,
        m: m2c,
        v: v2c,
    } = cpu.adamw(&state_c, &g_c, step)?;
    // The update itself is about lr: compared apart from the weights it moves.
    let moved = |new: Vec<f32>| -> Vec<f32> { new.iter().zip(&master).map(|(a, b)| a - b).collect() };
    record(
        "AdamW step: weights' change".into(),
        moved(b.download(&w2)?),
        moved(cpu.download(&w2c)?),
    );
    record(
        "AdamW step: first moment".into(),
        b.download(&m2)?,
        cpu.download(&m2c)?,
    );
    record(
        "AdamW step: second moment".into(),
        b.download(&v2)?,
        cpu.download(&v2c)?,
    );

    for (d, offsets, rope, alibi) in [
        (64, vec![0, 200, 200, 333], true, false),
        (64, vec![0, 129, 1000], false, true),
        (128, vec![0, 77, 700], true, true),
        (64, vec![0, 4095], true, false),
    ] {
        let heads = 2;
        let tokens = *offsets.last().unwrap_or(&0);
        let width = heads * d;
        let positions: Vec<[f32; 2]> = (0..tokens).map(|i| [(i / 37) as f32, (i % 37) as f32]).collect();
        let spec = PositionSpec {
            positions: &positions,
            rope_base: rope.then_some(100.0),
            alibi,
        };
        let (pos, pos_c) = (
            b.prepare_positions(spec, heads, d)?,
            cpu.prepare_positions(spec, heads, d)?,
        );
        let (qkv, qkv_c) = tensor_pair(
            &values(tokens * 3 * width, seed + d as u64, 1.0),
            tokens,
            3 * width,
        )?;
        let (dout, dout_c) = tensor_pair(&values(tokens * width, seed + 11, 1.0), tokens, width)?;
        let (o, lse) = b.attention_saving(&qkv, &offsets, heads, d, Some(&pos))?;
        let (o_c, lse_c) = cpu.attention_saving(&qkv_c, &offsets, heads, d, Some(&pos_c))?;
        let what = format!(
            "attention {offsets:?} × {heads} heads of {d}{}{}",
            if rope { ", RoPE" } else { "" },
            if alibi { ", ALiBi" } else { "" }
        );
        record(format!("{what}: output"), b.download(&o)?, cpu.download(&o_c)?);
        record(
            format!("{what}: log-sum-exp"),
            b.download(&lse)?,
            cpu.download(&lse_c)?,
        );
        let dqkv = b.attention_backward(&qkv, &o, &lse, &dout, &offsets, heads, d, Some(&pos))?;
        let dqkv_c =
            cpu.attention_backward(&qkv_c, &o_c, &lse_c, &dout_c, &offsets, heads, d, Some(&pos_c))?;
        let (got, want) = (b.download(&dqkv)?, cpu.download(&dqkv_c)?);
        for (i, part) in ["dq", "dk", "dv"].iter().enumerate() {
            let cut = |x: &[f32]| -> Vec<f32> {
                x.chunks(3 * width)
                    .flat_map(|r| r[i * width..(i + 1) * width].to_vec())
                    .collect()
            };
            record(format!("{what}: backward {part}"), cut(&got), cut(&want));
        }
    }
    Ok(checks)
}

/// Attention's backward over one sequence of `tokens` tokens (2^20 in `selftest --training
/// --long`; 2 heads of 64, RoPE on a square grid) against f64 on sampled rows: dQ of 32 query
/// rows (each a sum over every key), and dK and dV of 32 key rows (each a sum over every
/// query, with the device's log-sum-exps and outputs, themselves checked on the sampled query
/// rows). Also the device memory the backward left in use beyond what was in use before it,
/// its output included: O(N), where the N × N scores would be terabytes.
pub fn check_long_attention_backward<B: Gradients>(
    b: &B,
    tokens: usize,
    seed: u64,
    print: &mut dyn FnMut(&Check),
) -> Result<Vec<Check>, BackendError> {
    use super::cpu::rope::Rope;
    use rayon::prelude::*;
    let (heads, d) = (2, 64);
    let width = heads * d;
    let side = (tokens as f64).sqrt().ceil() as usize;
    let positions: Vec<[f32; 2]> = (0..tokens)
        .map(|i| [(i / side) as f32, (i % side) as f32])
        .collect();
    let spec = PositionSpec {
        positions: &positions,
        rope_base: Some(100.0),
        alibi: false,
    };
    let qkv_host = values(tokens * 3 * width, seed + 21, 1.0);
    let dout_host = values(tokens * width, seed + 22, 1.0);
    let offsets = [0, tokens];
    let pos = b.prepare_positions(spec, heads, d)?;
    let qkv = b.upload(&qkv_host, tokens, 3 * width)?;
    let dout = b.upload(&dout_host, tokens, width)?;
    let (out, lse) = b.attention_saving(&qkv, &offsets, heads, d, Some(&pos))?;
    let before = b.memory_in_use();
    let dqkv = b.attention_backward(&qkv, &out, &lse, &dout, &offsets, heads, d, Some(&pos))?;
    let after = b.memory_in_use();
    let (got, out, lse) = (b.download(&dqkv)?, b.download(&out)?, b.download(&lse)?);

    // The reference: q and k rotated on the host, every sum in f64.
    let part = |i: usize| -> Vec<f32> {
        qkv_host
            .chunks(3 * width)
            .flat_map(|r| r[i * width..(i + 1) * width].to_vec())
            .collect()
    };
    let rope = Rope::new(&positions, d, 100.0);
    let (mut q, mut k, v) = (part(0), part(1), part(2));
    rope.apply(&mut q, heads);
    rope.apply(&mut k, heads);
    let row = |x: &[f32], t: usize, h: usize| -> Vec<f64> {
        x[(t * heads + h) * d..][..d].iter().map(|&v| v as f64).collect()
    };
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let scale = 1.0 / (d as f64).sqrt();
    let mut rng = crate::util::rng::Rng::new(seed ^ 0x10b6);
    let sampled: Vec<(usize, usize)> = (0..32)
        .map(|i| (rng.int(0, tokens as i64 - 1) as usize, i % heads))
        .collect();
    // Per sampled query row: its output, log-sum-exp and dQ (rotated back).
    type QueryRow = (Vec<f64>, f64, Vec<f64>);
    let queries: Vec<QueryRow> = sampled
        .par_iter()
        .map(|&(t, h)| {
            let qi = row(&q, t, h);
            let z: Vec<f64> = (0..tokens).map(|j| dot(&qi, &row(&k, j, h)) * scale).collect();
            let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = z.iter().map(|zj| (zj - max).exp()).collect();
            let sum: f64 = p.iter().sum();
            let mut o = vec![0f64; d];
            for (j, pj) in p.iter().enumerate() {
                for (oc, vc) in o.iter_mut().zip(row(&v, j, h)) {
                    *oc += pj / sum * vc;
                }
            }
            let doi = row(&dout_host, t, h);
            let delta = dot(&doi, &o);
            let mut dq = vec![0f64; d];
            for (j, pj) in p.iter().enumerate() {
                let vj = row(&v, j, h);
                let dz = pj / sum * (dot(&doi, &vj) - delta);
                for (c, kc) in row(&k, j, h).iter().enumerate() {
                    dq[c] += dz * kc * scale;
                }
            }
            (o, max + sum.ln(), turn_back(&rope, &dq, t))
        })
        .collect();
    // Per sampled key row: dK (rotated back) and dV, from the device's log-sum-exps and
    // outputs (δ = dO · O) of every query.
    let keys: Vec<(Vec<f64>, Vec<f64>)> = sampled
        .par_iter()
        .map(|&(t, h)| {
            let (kj, vj) = (row(&k, t, h), row(&v, t, h));
            let (mut dk, mut dv) = (vec![0f64; d], vec![0f64; d]);
            for i in 0..tokens {
                let (qi, doi) = (row(&q, i, h), row(&dout_host, i, h));
                let p = (dot(&qi, &kj) * scale - lse[i * heads + h] as f64).exp();
                let delta = dot(&doi, &row(&out, i, h));
                let dz = p * (dot(&doi, &vj) - delta);
                for c in 0..d {
                    dk[c] += dz * qi[c] * scale;
                    dv[c] += p * doi[c];
                }
            }
            (turn_back(&rope, &dk, t), dv)
        })
        .collect();

    let column = |x: &[f32], t: usize, part: usize, h: usize| -> Vec<f32> {
        x[t * 3 * width + part * width + h * d..][..d].to_vec()
    };
    let mut checks = Vec::new();
    let mut record = |what: &str, got: Vec<f32>, want: Vec<f64>| {
        let c = compare(
            format!("attention {tokens} tokens × {heads} heads of {d}, RoPE: {what}"),
            &got,
            &want,
            true,
        );
        print(&c);
        checks.push(c);
    };
    let flat = |rows: &mut dyn Iterator<Item = Vec<f64>>| rows.flatten().collect::<Vec<f64>>();
    record(
        "output, 32 sampled rows against f64",
        sampled
            .iter()
            .flat_map(|&(t, h)| out[(t * heads + h) * d..][..d].to_vec())
            .collect(),
        flat(&mut queries.iter().map(|r| r.0.clone())),
    );
    record(
        "log-sum-exp, 32 sampled rows",
        sampled.iter().map(|&(t, h)| lse[t * heads + h]).collect(),
        queries.iter().map(|r| r.1).collect(),
    );
    for (what, part, want) in [
        (
            "backward dq, 32 sampled rows",
            0,
            flat(&mut queries.iter().map(|r| r.2.clone())),
        ),
        (
            "backward dk, 32 sampled rows",
            1,
            flat(&mut keys.iter().map(|r| r.0.clone())),
        ),
        (
            "backward dv, 32 sampled rows",
            2,
            flat(&mut keys.iter().map(|r| r.1.clone())),
        ),
    ] {
        record(
            what,
            sampled
                .iter()
                .flat_map(|&(t, h)| column(&got, t, part, h))
                .collect(),
            want,
        );
    }
    if let (Some(before), Some(after)) = (before, after) {
        let extra = after.saturating_sub(before) as f64;
        let per_token = extra / tokens as f64;
        // Its own output is 3·width bf16 values a token; a quadratic buffer would be GB a token.
        let c = Check {
            what: format!(
                "attention backward, {tokens} tokens: {:.0} bytes a token left in use (its output: {})",
                per_token,
                3 * width * 2
            ),
            relative_error: 0.0,
            max_abs_diff: per_token,
            compared: 1,
            finite: true,
            repeatable: true,
            passed: per_token <= (16 * width * 4) as f64,
        };
        print(&c);
        checks.push(c);
    }
    Ok(checks)
}

/// A gradient of rotated values (one head's, of token `t`) turned back by the rotation.
fn turn_back(rope: &super::cpu::rope::Rope, g: &[f64], t: usize) -> Vec<f64> {
    let mut one: Vec<f32> = g.iter().map(|&x| x as f32).collect();
    rope.apply_inverse_row(&mut one, t);
    one.into_iter().map(f64::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_checks_f64_reference_agrees_with_the_cpus_backward() {
        // The CPU's candle backward against the sampled-row f64 sums the GPU is held to.
        let checks = check_long_attention_backward(&CpuBackend, 700, 5, &mut |_| {}).unwrap();
        assert_eq!(checks.len(), 5);
        for c in &checks {
            assert!(
                c.passed && c.relative_error < 1e-5,
                "{}: {}",
                c.what,
                c.relative_error
            );
        }
    }
}
