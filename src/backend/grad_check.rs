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
    let (row, row_c) = tensor_pair(&values(cols, seed + 6, 1.0), 1, cols)?;
    let r = b.repeat_row(&row, 301, 0.25)?;
    let r_c = cpu.repeat_row(&row_c, 301, 0.25)?;
    record(
        format!("repeat row [1, {cols}] × 301"),
        b.download(&r)?,
        cpu.download(&r_c)?,
    );
    record(
        format!("sum of squares [{rows}, {cols}]"),
        vec![b.sum_squares(&dy)? as f32],
        vec![cpu.sum_squares(&dyc)? as f32],
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
