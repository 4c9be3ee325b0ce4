//! The CUDA attention kernels checked directly, beyond the backend's operations: every
//! kernel of the table (bf16 and fp16, each head dim), ALiBi, packed batches, into output
//! buffers poisoned with NaN (so an element the kernel never writes fails), and one sequence
//! of 2^20 tokens on sampled rows against f64. `flashslide selftest` runs it after the
//! generic checks.

use super::attention::{head_dims, AttentionType, FlashArgs};
use super::CudaBackend;
use crate::backend::check::{compare, Check};
use crate::backend::cpu::attention::{alibi_slopes, attention as cpu_attention, Alibi2d, Packed};
use crate::backend::testing::random_inputs;
use crate::backend::BackendError;
use cudarc::driver::CudaSlice;
use half::{bf16, f16};
use rayon::prelude::*;

trait Half: AttentionType + Copy + Send + Sync {
    fn from_f32(x: f32) -> Self;
    fn to_f32(self) -> f32;
    const NAN: Self;
}
impl Half for bf16 {
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    const NAN: Self = bf16::NAN;
}
impl Half for f16 {
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    const NAN: Self = f16::NAN;
}

/// Random q, k, v (`[tokens, heads, d]` each, rounded to `T`) and grid positions.
struct Inputs<T> {
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    positions: Vec<[f32; 2]>,
}

fn inputs<T: Half>(tokens: usize, heads: usize, d: usize, seed: u64) -> Inputs<T> {
    let round = |x: Vec<f32>| x.into_iter().map(T::from_f32).collect::<Vec<T>>();
    let n = tokens * heads * d;
    // Grid positions of a slide-like layout: rows of 300 tokens.
    let positions = (0..tokens)
        .map(|i| [(i / 300) as f32, (i % 300) as f32])
        .collect();
    Inputs {
        q: round(random_inputs(n, seed)),
        k: round(random_inputs(n, seed.wrapping_add(1))),
        v: round(random_inputs(n, seed.wrapping_add(2))),
        positions,
    }
}

impl CudaBackend {
    /// Runs the kernel on `x` into a NaN-poisoned buffer; returns the output as f32.
    fn run_flash<T: Half>(
        &self,
        x: &Inputs<T>,
        offsets: &[usize],
        heads: usize,
        d: usize,
        alibi: bool,
    ) -> Result<Vec<f32>, BackendError> {
        let (q, k, v) = (
            self.upload_raw(&x.q)?,
            self.upload_raw(&x.k)?,
            self.upload_raw(&x.v)?,
        );
        let flat: Vec<f32> = x.positions.iter().flatten().copied().collect();
        let positions = self.upload_raw(&flat)?;
        let slopes = self.upload_raw(&super::attention::alibi_slopes_log2(heads))?;
        let mut out: CudaSlice<T> = self.upload_raw(&vec![T::NAN; x.q.len()])?;
        let args = FlashArgs {
            q: q.slice(0..),
            k: k.slice(0..),
            v: v.slice(0..),
            q_stride: heads * d,
            kv_stride: heads * d,
            offsets,
            heads,
            head_dim: d,
            alibi: alibi.then_some((&positions, &slopes)),
        };
        self.flash_attention(&args, &mut out)?;
        let host = self.inner.stream.clone_dtoh(&out).map_err(super::device_err)?;
        Ok(host.into_iter().map(T::to_f32).collect())
    }

    /// Attention on a packed batch against the CPU kernel (f32 on the same rounded inputs).
    fn check_attention<T: Half>(
        &self,
        offsets: &[usize],
        heads: usize,
        d: usize,
        alibi: bool,
        seed: u64,
    ) -> Result<Check, BackendError> {
        let tokens = *offsets.last().unwrap();
        let x = inputs::<T>(tokens, heads, d, seed);
        let got = self.run_flash(&x, offsets, heads, d, alibi)?;
        let again = self.run_flash(&x, offsets, heads, d, alibi)?;
        let repeatable = got.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits());
        let f = |v: &[T]| v.iter().map(|h| h.to_f32()).collect::<Vec<f32>>();
        let (q, k, v) = (f(&x.q), f(&x.k), f(&x.v));
        let slopes = alibi_slopes(heads);
        let bias = alibi.then_some(Alibi2d {
            positions: &x.positions,
            slopes: &slopes,
        });
        let mut want = vec![f32::NAN; q.len()];
        let shape = Packed {
            offsets,
            heads,
            head_dim: d,
        };
        cpu_attention(&q, &k, &v, &mut want, &shape, bias);
        let want: Vec<f64> = want.iter().map(|&w| w as f64).collect();
        let what = format!(
            "attention {} N {tokens} ({} sequences) heads {heads} d {d}{}",
            T::NAME,
            offsets.len() - 1,
            if alibi { " ALiBi" } else { "" }
        );
        Ok(compare(what, &got, &want, repeatable))
    }

    /// One sequence of `tokens` tokens, `rows` sampled (token, head) outputs against f64.
    fn check_long_attention(
        &self,
        tokens: usize,
        heads: usize,
        d: usize,
        rows: usize,
        seed: u64,
    ) -> Result<Check, BackendError> {
        let x = inputs::<bf16>(tokens, heads, d, seed);
        let got = self.run_flash(&x, &[0, tokens], heads, d, false)?;
        let at = |v: &[bf16], t: usize, h: usize, c: usize| v[(t * heads + h) * d + c].to_f32() as f64;
        let samples: Vec<(usize, usize)> = (0..rows)
            .map(|i| ((i * 2_654_435_761) % tokens, i % heads))
            .collect();
        let want: Vec<Vec<f64>> = samples
            .par_iter()
            .map(|&(t, h)| {
                let scale = 1.0 / (d as f64).sqrt();
                let scores: Vec<f64> = (0..tokens)
                    .map(|j| (0..d).map(|c| at(&x.q, t, h, c) * at(&x.k, j, h, c)).sum::<f64>() * scale)
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = w.iter().sum();
                (0..d)
                    .map(|c| (0..tokens).map(|j| w[j] * at(&x.v, j, h, c)).sum::<f64>() / z)
                    .collect()
            })
            .collect();
        let got_rows: Vec<f32> = samples
            .iter()
            .flat_map(|&(t, h)| got[(t * heads + h) * d..(t * heads + h + 1) * d].to_vec())
            .collect();
        let finite_everywhere = got.iter().all(|v| v.is_finite());
        let mut c = compare(
            format!("attention bf16 N {tokens} heads {heads} d {d}: {rows} sampled rows vs f64"),
            &got_rows,
            &want.concat(),
            true,
        );
        c.finite &= finite_everywhere;
        c.passed &= finite_everywhere;
        Ok(c)
    }
}

/// The kernels' own checks, beyond what [`crate::backend::check`] reaches through the
/// backend's operations: both 16-bit types (bf16 and fp16) at every head dim with a kernel
/// (so a kernel added to kernels/flash_attn.cu is checked with no change here), ALiBi,
/// packed batches, into NaN-poisoned outputs; with `long`, one sequence of 2^20 tokens on
/// sampled rows against f64. Inputs are drawn from `run_seed` (fresh each run; a caller
/// checking several kernel families gives each its own).
pub fn check_kernels(
    gpu: &CudaBackend,
    long: bool,
    run_seed: u64,
    on_check: &mut dyn FnMut(&Check),
) -> Result<Vec<Check>, BackendError> {
    let mut all = Vec::new();
    let mut push = |c: Check, all: &mut Vec<Check>| {
        on_check(&c);
        all.push(c);
    };
    // The types' tables are checked to hold the same head dims (kernels.rs's tests).
    let dims = head_dims::<bf16>();
    let mut seed = run_seed.wrapping_add(1000);
    // Lengths under, over and far over a block (128 query rows, 64 keys), none a multiple.
    for n in [1usize, 257, 4095] {
        for &d in &dims {
            for alibi in [false, true] {
                seed = seed.wrapping_add(10);
                push(gpu.check_attention::<bf16>(&[0, n], 4, d, alibi, seed)?, &mut all);
                push(
                    gpu.check_attention::<f16>(&[0, n], 4, d, alibi, seed.wrapping_add(5))?,
                    &mut all,
                );
            }
        }
    }
    // A packed batch (odd lengths, an empty sequence) at every head dim in both types, one
    // of the two with ALiBi.
    let batch: Vec<usize> = [0usize, 257, 514, 515, 515, 771, 900, 1157].to_vec();
    for (i, &d) in dims.iter().enumerate() {
        let (alibi, seed) = (i % 2 == 1, run_seed.wrapping_add(3 + 2 * i as u64));
        push(gpu.check_attention::<bf16>(&batch, 6, d, alibi, seed)?, &mut all);
        push(
            gpu.check_attention::<f16>(&batch, 2, d, !alibi, seed.wrapping_add(1))?,
            &mut all,
        );
    }
    push(
        gpu.check_attention::<f16>(&[0, 65_537], 2, 128, false, run_seed.wrapping_add(7))?,
        &mut all,
    );
    if long {
        push(
            gpu.check_long_attention(1 << 20, 8, 64, 512, run_seed.wrapping_add(77))?,
            &mut all,
        );
    }
    Ok(all)
}
