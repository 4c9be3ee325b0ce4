//! Any backend checked against the CPU reference, operation by operation, on fresh random
//! inputs: every operation of [`Backend`] over the shapes the encoders use (odd sizes, packed
//! batches with an empty sequence, rotary positions and ALiBi), each run twice (a second run
//! must be bit-identical) and compared with the reference in relative L2 error.
//! `flashslide selftest` runs it for the device it opens; the tests run it against a backend
//! with one operation broken on purpose, to show that the check catches it.

use super::cpu::CpuBackend;
use super::testing::random_inputs;
use super::{Backend, BackendError, PositionSpec};
use half::bf16;
use serde::Serialize;

/// One comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    /// ‖got − reference‖ / ‖reference‖ over every output compared.
    pub relative_error: f64,
    pub max_abs_diff: f64,
    /// Elements compared.
    pub compared: usize,
    /// Every output finite.
    pub finite: bool,
    /// A second run gave bit-identical output.
    pub repeatable: bool,
    pub passed: bool,
}

/// The bound for bf16/fp16 arithmetic against the f32 reference.
pub const TOLERANCE: f64 = 1e-2;

/// Compares `got` with `want`: passed when every value is finite, the run repeatable, the
/// lengths equal and the relative error within [`TOLERANCE`].
pub fn compare(what: String, got: &[f32], want: &[f64], repeatable: bool) -> Check {
    let (mut err, mut norm, mut max) = (0f64, 0f64, 0f64);
    let mut finite = true;
    for (g, w) in got.iter().zip(want) {
        finite &= g.is_finite();
        let d = (*g as f64 - w).abs();
        err += d * d;
        norm += w * w;
        max = max.max(d);
    }
    let relative_error = err.sqrt() / norm.sqrt().max(1e-30);
    Check {
        what,
        relative_error,
        max_abs_diff: max,
        compared: got.len(),
        finite,
        repeatable,
        passed: finite && repeatable && got.len() == want.len() && relative_error <= TOLERANCE,
    }
}

/// How much to check: `Quick` keeps every shape small (seconds on a CPU, for tests);
/// `Full` adds sequences of 4,095 and 65,537 tokens, as the self-test on a GPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Quick,
    Full,
}

/// Random values in [−2, 2) rounded to bf16, so that a bf16 backend and the f32 reference
/// start from the same numbers.
/// Inputs for one check: `n` values of `seed` (offset by the run's seed) times `scale`,
/// rounded to bf16 so that both backends see the same numbers.
fn seeded_values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    random_inputs(n, seed)
        .into_iter()
        .map(|x| bf16::from_f32(x * scale).to_f32())
        .collect()
}

/// One operation run on both backends from the same host inputs.
struct Pair<'a, B: Backend> {
    b: &'a B,
    reference: &'a CpuBackend,
}

impl<B: Backend> Pair<'_, B> {
    /// Runs `op` twice on the backend under test and once on the reference, from matrices
    /// made of `inputs` (data, rows, cols), and compares the outputs.
    fn check<F, G>(
        &self,
        what: String,
        inputs: &[(Vec<f32>, usize, usize)],
        op: F,
        reference_op: G,
    ) -> Result<Check, BackendError>
    where
        F: Fn(&B, &[B::Tensor]) -> Result<B::Tensor, BackendError>,
        G: Fn(&CpuBackend, &[candle_core::Tensor]) -> Result<candle_core::Tensor, BackendError>,
    {
        let on_b = inputs
            .iter()
            .map(|(d, r, c)| self.b.upload(d, *r, *c))
            .collect::<Result<Vec<_>, _>>()?;
        let on_ref = inputs
            .iter()
            .map(|(d, r, c)| self.reference.upload(d, *r, *c))
            .collect::<Result<Vec<_>, _>>()?;
        let got = self.b.download(&op(self.b, &on_b)?)?;
        let again = self.b.download(&op(self.b, &on_b)?)?;
        let want: Vec<f64> = self
            .reference
            .download(&reference_op(self.reference, &on_ref)?)?
            .into_iter()
            .map(f64::from)
            .collect();
        let repeatable =
            got.len() == again.len() && got.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits());
        Ok(compare(what, &got, &want, repeatable))
    }
}

/// Calls `op` with the same arguments on either backend: each operation is written once.
macro_rules! both {
    (|$be:ident, $x:ident| $body:expr) => {
        (
            |$be: &B, $x: &[B::Tensor]| $body,
            |$be: &CpuBackend, $x: &[candle_core::Tensor]| $body,
        )
    };
}

/// Every operation of `b` against `reference` on inputs drawn from `run_seed` (a fresh one
/// each run finds what fixed inputs could hide); `on_check` sees each result as it comes.
pub fn check_operations<B: Backend>(
    b: &B,
    reference: &CpuBackend,
    scope: Scope,
    run_seed: u64,
    on_check: &mut dyn FnMut(&Check),
) -> Result<Vec<Check>, BackendError> {
    let values = |n: usize, seed: u64, scale: f32| seeded_values(n, run_seed.wrapping_add(seed), scale);
    let pair = Pair { b, reference };
    let mut all = Vec::new();
    let mut push = |c: Check, all: &mut Vec<Check>| {
        on_check(&c);
        all.push(c);
    };
    let (rows, inner, out) = (37, 96, 80);
    let x = (values(rows * inner, 1, 1.0), rows, inner);
    let w = (values(out * inner, 2, 0.1), out, inner);
    let bias = (values(out, 3, 1.0), 1, out);
    let (f, g) = both!(|be, t| be.linear(&t[0], &t[1], Some(&t[2])));
    push(
        pair.check(
            format!("linear [{rows}, {inner}] → {out}, bias"),
            &[x.clone(), w.clone(), bias.clone()],
            f,
            g,
        )?,
        &mut all,
    );
    let (f, g) = both!(|be, t| be.linear(&t[0], &t[1], None));
    push(
        pair.check(
            format!("linear [{rows}, {inner}] → {out}"),
            &[x.clone(), w.clone()],
            f,
            g,
        )?,
        &mut all,
    );
    let (f, g) = both!(|be, t| be.linear_gelu(&t[0], &t[1], &t[2]));
    push(
        pair.check(
            "linear + GELU".into(),
            &[x.clone(), w.clone(), bias.clone()],
            f,
            g,
        )?,
        &mut all,
    );
    // A residual branch's last layer added to the residual stream: the stream in the
    // backend's wider type (a sum; on a GPU, added in the GEMM's epilogue) and as given.
    let residual = (values(rows * out, 7, 1.0), rows, out);
    for wide in [true, false] {
        let (f, g) = both!(|be, t| {
            let residual = if wide { be.add(&t[3], &t[3])? } else { t[3].clone() };
            be.linear_residual(&t[0], &t[1], Some(&t[2]), &residual)
        });
        let what = format!(
            "linear + residual [{rows}, {inner}] → {out}{}",
            if wide { ", wide residual" } else { "" }
        );
        let inputs = [x.clone(), w.clone(), bias.clone(), residual.clone()];
        push(pair.check(what, &inputs, f, g)?, &mut all);
    }
    let norm_w = (values(inner, 4, 0.05).iter().map(|v| 1.0 + v).collect(), 1, inner);
    let norm_b = (values(inner, 5, 0.1), 1, inner);
    let (f, g) = both!(|be, t| be.layer_norm(&t[0], &t[1], &t[2], 1e-6));
    push(
        pair.check(
            "layer norm".into(),
            &[x.clone(), norm_w.clone(), norm_b.clone()],
            f,
            g,
        )?,
        &mut all,
    );
    // Layer norm of the residual stream (a backend may keep it in a wider type).
    let (f, g) = both!(|be, t| be.layer_norm(&be.add(&t[0], &t[0])?, &t[1], &t[2], 1e-5));
    push(
        pair.check("layer norm of a sum".into(), &[x.clone(), norm_w, norm_b], f, g)?,
        &mut all,
    );
    // Layer norm at the widths of the ViTs (384 to 1,536: a GPU may hold such rows in
    // registers), of the residual stream (in the backend's wider type) and of bf16 values.
    for (rows, cols) in [(33, 384), (9, 1280), (5, 1536)] {
        let x = (values(rows * cols, 30 + cols as u64, 1.0), rows, cols);
        let norm_w = (values(cols, 31, 0.05).iter().map(|v| 1.0 + v).collect(), 1, cols);
        let norm_b = (values(cols, 32, 0.1), 1, cols);
        for wide in [true, false] {
            let (f, g) = both!(|be, t| {
                let x = if wide { be.add(&t[0], &t[0])? } else { t[0].clone() };
                be.layer_norm(&x, &t[1], &t[2], 1e-6)
            });
            let what = format!(
                "layer norm [{rows}, {cols}]{}",
                if wide { " of a wide sum" } else { "" }
            );
            let inputs = [x.clone(), norm_w.clone(), norm_b.clone()];
            push(pair.check(what, &inputs, f, g)?, &mut all);
        }
    }
    // The residual add with the norm after it: a residual stream in the backend's wider type
    // (a sum) and as given, with and without layer scale, at widths a fused kernel may treat
    // differently (not a multiple of 128; over 2,048).
    for (rows, cols, wide, layer_scale) in [
        (37, 96, true, true),
        (37, 96, false, false),
        (19, 1284, true, true),
        (5, 2052, true, false),
    ] {
        let residual = (values(rows * cols, 20 + cols as u64, 1.0), rows, cols);
        let y = (values(rows * cols, 21, 1.0), rows, cols);
        let gamma = (values(cols, 22, 0.5), 1, cols);
        let norm_w = (values(cols, 23, 0.05).iter().map(|v| 1.0 + v).collect(), 1, cols);
        let norm_b = (values(cols, 24, 0.1), 1, cols);
        let inputs = [residual, y, gamma, norm_w, norm_b];
        for (part, which) in [("sum", 0), ("norm", 1)] {
            let (f, g) = both!(|be, t| {
                let residual = if wide { be.add(&t[0], &t[0])? } else { t[0].clone() };
                let gamma = if layer_scale { Some(&t[2]) } else { None };
                let out = be.add_layer_norm(&residual, &t[1], gamma, &t[3], &t[4], 1e-6)?;
                Ok(if which == 0 { out.0 } else { out.1 })
            });
            let what = format!(
                "residual add + layer norm [{rows}, {cols}]{}{}: {part}",
                if wide { ", wide residual" } else { "" },
                if layer_scale { ", layer scale" } else { "" }
            );
            push(pair.check(what, &inputs, f, g)?, &mut all);
        }
    }
    if scope == Scope::Full {
        // A foundation encoder's MLP at full width (ViT-L/16: 1,024 → 4,096), bias and GELU
        // in the GEMM's epilogue on a GPU.
        let (rows, inner, out) = (394, 1024, 4096);
        let x = (values(rows * inner, 25, 1.0), rows, inner);
        let w = (values(out * inner, 26, 0.03), out, inner);
        let bias = (values(out, 27, 1.0), 1, out);
        let (f, g) = both!(|be, t| be.linear_gelu(&t[0], &t[1], &t[2]));
        push(
            pair.check(
                format!("linear + GELU [{rows}, {inner}] → {out}"),
                &[x, w, bias],
                f,
                g,
            )?,
            &mut all,
        );
    }
    if scope == Scope::Full {
        // A foundation encoder's second MLP layer at full width (ViT-L/16: 4,096 → 1,024)
        // added to the residual stream.
        let (rows, inner, out) = (394, 4096, 1024);
        let x = (values(rows * inner, 28, 1.0), rows, inner);
        let w = (values(out * inner, 29, 0.03), out, inner);
        let bias = (values(out, 30, 1.0), 1, out);
        let residual = (values(rows * out, 31, 1.0), rows, out);
        let (f, g) = both!(|be, t| be.linear_residual(&t[0], &t[1], Some(&t[2]), &be.add(&t[3], &t[3])?));
        push(
            pair.check(
                format!("linear + residual [{rows}, {inner}] → {out}, wide residual"),
                &[x, w, bias, residual],
                f,
                g,
            )?,
            &mut all,
        );
    }
    let (f, g) = both!(|be, t| be.gelu(&t[0]));
    push(
        pair.check("GELU".into(), std::slice::from_ref(&x), f, g)?,
        &mut all,
    );
    let (f, g) = both!(|be, t| be.swiglu(&t[0]));
    push(
        pair.check("SwiGLU".into(), std::slice::from_ref(&x), f, g)?,
        &mut all,
    );
    // A packed SwiGLU whose halves are not a multiple of 4 wide (no vector loads).
    let odd = (values(rows * 76, 15, 1.0), rows, 76);
    let (f, g) = both!(|be, t| be.swiglu(&t[0]));
    push(pair.check("SwiGLU, halves of 38".into(), &[odd], f, g)?, &mut all);
    let y = (values(rows * inner, 6, 1.0), rows, inner);
    let (f, g) = both!(|be, t| be.add(&t[0], &t[1]));
    push(pair.check("add".into(), &[x.clone(), y.clone()], f, g)?, &mut all);
    let (f, g) = both!(|be, t| be.add(&be.add(&t[0], &t[1])?, &t[0]));
    push(
        pair.check("add to a sum".into(), &[x.clone(), y.clone()], f, g)?,
        &mut all,
    );
    let gamma = (values(inner, 7, 0.5), 1, inner);
    let (f, g) = both!(|be, t| be.scale_columns(&t[0], &t[1]));
    push(
        pair.check("scale columns".into(), &[x.clone(), gamma], f, g)?,
        &mut all,
    );
    let z = (values(5 * inner, 8, 1.0), 5, inner);
    let (f, g) = both!(|be, t| be.concat_rows(&[t[0].clone(), t[1].clone(), t[2].clone()]));
    push(
        pair.check("concat rows".into(), &[x.clone(), z, y.clone()], f, g)?,
        &mut all,
    );
    let narrow = (values(rows * 24, 14, 1.0), rows, 24);
    let (f, g) = both!(|be, t| be.concat_cols(&t[0], &t[1]));
    push(
        pair.check("concat columns".into(), &[x.clone(), narrow], f, g)?,
        &mut all,
    );
    push(check_patchify(&pair)?, &mut all);
    // Three sequences of 16 patch tokens (a 4 × 4 grid) after 5 prefix tokens.
    let (seqs, prefix, side, d) = (3, 5, 4, 24);
    let len = prefix + side * side;
    let patches = (values(seqs * side * side * d, 9, 1.0), seqs * side * side, d);
    let prefix_rows = (values(prefix * d, 10, 1.0), prefix, d);
    let position = (values(len * d, 11, 1.0), len, d);
    let (f, g) = both!(|be, t| be.prepend_and_position(&t[0], seqs, Some(&t[1]), &t[2]));
    push(
        pair.check(
            "prepend and position".into(),
            &[patches.clone(), prefix_rows, position],
            f,
            g,
        )?,
        &mut all,
    );
    let position = (values(side * side * d, 12, 1.0), side * side, d);
    let (f, g) = both!(|be, t| be.prepend_and_position(&t[0], seqs, None, &t[1]));
    push(
        pair.check("position, no prefix".into(), &[patches, position], f, g)?,
        &mut all,
    );
    let tokens = (values(seqs * len * d, 13, 1.0), seqs * len, d);
    let (f, g) = both!(|be, t| be.mean_rows(&t[0], seqs, prefix, side * side));
    push(
        pair.check("mean of rows".into(), std::slice::from_ref(&tokens), f, g)?,
        &mut all,
    );
    let (f, g) = both!(|be, t| be.group_tokens(&t[0], seqs, prefix, side, 2));
    push(
        pair.check("group tokens 2 × 2".into(), &[tokens], f, g)?,
        &mut all,
    );

    all.extend(check_attention_kernels(b, reference, scope, run_seed, on_check)?);
    Ok(all)
}

/// Attention of `b` against `reference`: head dims 64 and 128 at several lengths, with and
/// without positions (RoPE, ALiBi); 80 and 96 at a length no kernel's blocks divide; packed
/// batches like stage 1's. `on_check` sees each result as it comes.
pub fn check_attention_kernels<B: Backend>(
    b: &B,
    reference: &CpuBackend,
    scope: Scope,
    run_seed: u64,
    on_check: &mut dyn FnMut(&Check),
) -> Result<Vec<Check>, BackendError> {
    let pair = Pair { b, reference };
    let mut all = Vec::new();
    let mut push = |c: Check, all: &mut Vec<Check>| {
        on_check(&c);
        all.push(c);
    };
    // Head dims 64 and 128 at every length; the dims between (ViT-H/14's 80: Virchow,
    // Virchow2; and 96) at one length that is no multiple of a GPU kernel's blocks (128 query
    // rows, 64 keys), kept short in Quick.
    let (lengths, between): (&[usize], usize) = match scope {
        Scope::Quick => (&[1, 67, 257], 67),
        Scope::Full => (&[1, 257, 4095, 65_537], 4095),
    };
    let single = lengths
        .iter()
        .flat_map(|&n| [(n, 64), (n, 128)])
        .chain([(between, 80), (between, 96)]);
    let mut seed = 100;
    for (n, head_dim) in single {
        for positions in [Positions::None, Positions::Rope, Positions::Alibi] {
            seed += 3;
            let check = check_attention(
                &pair,
                &[0, n],
                2,
                head_dim,
                positions,
                run_seed.wrapping_add(seed),
            )?;
            push(check, &mut all);
        }
    }
    // A packed batch like stage 1's (many short sequences) with odd lengths and an empty one.
    let packed = [0usize, 257, 514, 515, 515, 771, 900, 1157];
    let cases = [
        (3, 64, Positions::None),
        (2, 128, Positions::Alibi),
        (2, 80, Positions::Alibi),
        (3, 96, Positions::Rope),
    ];
    for (i, (heads, head_dim, positions)) in cases.into_iter().enumerate() {
        push(
            check_attention(
                &pair,
                &packed,
                heads,
                head_dim,
                positions,
                run_seed.wrapping_add(1 + i as u64),
            )?,
            &mut all,
        );
    }
    Ok(all)
}

/// What attention does with positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Positions {
    None,
    Rope,
    Alibi,
}

fn check_attention<B: Backend>(
    pair: &Pair<B>,
    offsets: &[usize],
    heads: usize,
    head_dim: usize,
    positions: Positions,
    seed: u64,
) -> Result<Check, BackendError> {
    let tokens = *offsets.last().unwrap_or(&0);
    // Grid positions of a slide-like layout: rows of 300 tokens.
    let grid: Vec<[f32; 2]> = (0..tokens)
        .map(|i| [(i / 300) as f32, (i % 300) as f32])
        .collect();
    let spec = PositionSpec {
        positions: &grid,
        rope_base: (positions == Positions::Rope).then_some(100.0),
        alibi: positions == Positions::Alibi,
    };
    let qkv = (
        seeded_values(tokens * 3 * heads * head_dim, seed, 1.0),
        tokens,
        3 * heads * head_dim,
    );
    let (f, g) = both!(|be, t| {
        let prepared = match positions {
            Positions::None => None,
            _ => Some(be.prepare_positions(spec, heads, head_dim)?),
        };
        be.attention(&t[0], offsets, heads, head_dim, prepared.as_ref())
    });
    let what = format!(
        "attention N {tokens} ({} sequences) heads {heads} d {head_dim}{}",
        offsets.len() - 1,
        match positions {
            Positions::None => "",
            Positions::Rope => " RoPE",
            Positions::Alibi => " ALiBi",
        }
    );
    pair.check(what, &[qkv], f, g)
}

/// Patches of random RGB tiles (pixels are bytes, uploaded as such on either backend).
fn check_patchify<B: Backend>(pair: &Pair<B>) -> Result<Check, BackendError> {
    let (batch, side, patch) = (3, 48, 16);
    let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    let rgb: Vec<u8> = random_inputs(batch * side * side * 3, 21)
        .iter()
        .map(|x| ((x + 2.0) * 63.9) as u8)
        .collect();
    let run = |be: &B| -> Result<Vec<f32>, BackendError> {
        let pixels = be.upload_pixels(&rgb)?;
        be.download(&be.patchify(&pixels, batch, side, patch, mean, std)?)
    };
    let (got, again) = (run(pair.b)?, run(pair.b)?);
    let reference = pair.reference;
    let pixels = reference.upload_pixels(&rgb)?;
    let want: Vec<f64> = reference
        .download(&reference.patchify(&pixels, batch, side, patch, mean, std)?)?
        .into_iter()
        .map(f64::from)
        .collect();
    let repeatable = got.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits());
    Ok(compare(
        format!("patchify {batch} tiles of {side} px, {patch}-px patches"),
        &got,
        &want,
        repeatable,
    ))
}
