//! The CUDA backend checked against the CPU reference on fresh random inputs, output
//! buffers poisoned (NaN) before each run: attention over many shapes (bf16 and fp16, head
//! dims 64 and 128, packed batches, ALiBi), a 2^20-token sequence on sampled rows against
//! f64, whole tile- and slide-encoder forward passes, and tiles decoded on the GPU against
//! the CPU's reading of the same generated slide. `flashslide selftest` runs it.

use super::attention::{AttentionType, FlashArgs};
use super::CudaBackend;
use crate::analysis::jpeg_tiles::JpegBatch;
use crate::analysis::plan::{read_tile, Tile, TilePlan};
use crate::backend::cpu::attention::{alibi_slopes, attention as cpu_attention, Alibi2d, Packed};
use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::bench::attention::random_inputs;
use crate::model::config::ModelConfig;
use crate::model::slide_encoder::{SlideEncoder, SlideEncoderConfig};
use crate::model::tile_encoder::{expected_shapes, TileEncoder};
use crate::model::weights::HostTensor;
use crate::model::ModelError;
use crate::slide::Slide;
use cudarc::driver::CudaSlice;
use half::{bf16, f16};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// One comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    /// ‖gpu − ref‖ / ‖ref‖ over every output compared.
    pub relative_error: f64,
    pub max_abs_diff: f64,
    /// Elements compared.
    pub compared: usize,
    /// Every output finite (so every poisoned element was written).
    pub finite: bool,
    /// A second run gave bit-identical output.
    pub repeatable: bool,
    pub passed: bool,
}

/// The bound the issue sets for bf16/fp16 arithmetic.
pub const TOLERANCE: f64 = 1e-2;

fn compare(what: String, got: &[f32], want: &[f64], repeatable: bool) -> Check {
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
        k: round(random_inputs(n, seed + 1)),
        v: round(random_inputs(n, seed + 2)),
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
    ) -> Result<Vec<f32>, ModelError> {
        let (q, k, v) = (
            self.upload_raw(&x.q)?,
            self.upload_raw(&x.k)?,
            self.upload_raw(&x.v)?,
        );
        let flat: Vec<f32> = x.positions.iter().flatten().copied().collect();
        let positions = self.upload_raw(&flat)?;
        let slopes: Vec<f32> = alibi_slopes(heads)
            .iter()
            .map(|s| s * std::f32::consts::LOG2_E)
            .collect();
        let slopes = self.upload_raw(&slopes)?;
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
    ) -> Result<Check, ModelError> {
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
            T::SUFFIX,
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
    ) -> Result<Check, ModelError> {
        let x = inputs::<bf16>(tokens, heads, d, 77);
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

/// Random host weights for `shapes` at timm's initial scale (standard deviation 0.02,
/// uniform); norm weights near 1.
fn random_host(shapes: &[(String, Vec<usize>)], seed: u64) -> HashMap<String, HostTensor> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n: usize = shape.iter().product();
            let r = random_inputs(n, seed + i as u64 * 7);
            let data = if name.contains("norm") && name.ends_with(".weight") {
                r.iter().map(|x| 1.0 + 0.05 * x).collect()
            } else {
                // Uniform on [−2, 2) has standard deviation 2/√3.
                r.iter().map(|x| 0.02 * 3f32.sqrt() / 2.0 * x).collect()
            };
            (
                name.clone(),
                HostTensor {
                    data,
                    shape: shape.clone(),
                },
            )
        })
        .collect()
}

/// Both backends' outputs of the tile encoder on random tiles.
fn check_tile_encoder(
    gpu: &CudaBackend,
    config: &ModelConfig,
    tiles: usize,
) -> Result<Vec<Check>, ModelError> {
    let host = random_host(&expected_shapes(config), 11);
    let src = Path::new("random");
    let cpu_enc = TileEncoder::new(&CpuBackend, config.clone(), &host, src)?;
    let gpu_enc = TileEncoder::new(gpu, config.clone(), &host, src)?;
    let s = config.image_size;
    let rgb: Vec<u8> = random_inputs(tiles * s * s * 3, 5)
        .iter()
        .map(|x| ((x + 2.0) * 63.9) as u8)
        .collect();
    let want = cpu_enc.forward(&rgb, tiles, s)?;
    let got = gpu_enc.forward(&rgb, tiles, s)?;
    let again = gpu_enc.forward(&rgb, tiles, s)?;
    let mut checks = Vec::new();
    for (what, g, a, w) in [
        ("tokens", &got.tokens, &again.tokens, &want.tokens),
        ("pooled", &got.pooled, &again.pooled, &want.pooled),
    ] {
        let g = gpu.download(g)?;
        let repeatable = g
            .iter()
            .zip(&gpu.download(a)?)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        let w: Vec<f64> = CpuBackend.download(w)?.iter().map(|&v| v as f64).collect();
        checks.push(compare(
            format!("tile encoder {} ({tiles} tiles of {s} px): {what}", config.name),
            &g,
            &w,
            repeatable,
        ));
    }
    Ok(checks)
}

/// Both backends' slide-encoder logits on `tokens` random features.
fn check_slide_encoder(
    gpu: &CudaBackend,
    config: &SlideEncoderConfig,
    tokens: usize,
) -> Result<Check, ModelError> {
    let host = random_host(&config.expected_shapes(), 23);
    let src = Path::new("random");
    let cpu_enc = SlideEncoder::new(&CpuBackend, config.clone(), &host, src)?;
    let gpu_enc = SlideEncoder::new(gpu, config.clone(), &host, src)?;
    let features: Vec<f32> = random_inputs(tokens * config.input_dim, 9)
        .iter()
        .map(|x| bf16::from_f32(*x).to_f32())
        .collect();
    let side = (tokens as f64).sqrt().ceil() as usize;
    let positions: Vec<[f32; 2]> = (0..tokens)
        .map(|i| [(i / side) as f32, (i % side) as f32])
        .collect();
    let want = cpu_enc.forward(
        &CpuBackend.upload(&features, tokens, config.input_dim)?,
        &positions,
    )?;
    let x = gpu.upload(&features, tokens, config.input_dim)?;
    let got = gpu_enc.forward(&x, &positions)?;
    let again = gpu_enc.forward(&x, &positions)?;
    let mut g = got.token_logits.clone();
    g.push(got.slide_logit);
    let mut a = again.token_logits.clone();
    a.push(again.slide_logit);
    let mut w: Vec<f64> = want.token_logits.iter().map(|&v| v as f64).collect();
    w.push(want.slide_logit as f64);
    let repeatable = g.iter().zip(&a).all(|(x, y)| x.to_bits() == y.to_bits());
    Ok(compare(
        format!(
            "slide encoder N {tokens} (width {}, depth {}, {} heads{}): logits",
            config.width,
            config.depth,
            config.heads,
            if config.alibi { ", ALiBi" } else { "" }
        ),
        &g,
        &w,
        repeatable,
    ))
}

/// Model tiles decoded and assembled on the GPU against the CPU's `read_tile`, on a slide
/// generated in a temporary directory: read at the level's own resolution and 2 × 2
/// averaged, aligned with the stored tiles and straddling them, at the slide's edges.
/// The two JPEG decoders round differently (IDCT, chroma upsampling), so pixel values differ
/// by a few levels; a misplaced tile would differ by far more. `None` without nvJPEG.
fn check_tile_decoding(gpu: &CudaBackend) -> Result<Option<Vec<Check>>, ModelError> {
    // Waits for the decoder to start.
    if gpu.tile_decoding_unavailable().is_some() {
        return Ok(None);
    }
    let Some(mut decoder) = gpu.tile_decoders().into_iter().next() else {
        return Ok(None);
    };
    let fail = |e: &dyn std::fmt::Display| ModelError::Device(format!("tile decoding check: {e}"));
    let dir = std::env::temp_dir().join(format!("flashslide-selftest-{}", std::process::id()));
    let options = crate::synth::SynthOptions {
        width: 2100,
        height: 1700,
        mpp: 0.25,
        jpeg_quality: Some(85),
    };
    let made = crate::synth::generate_slide(&dir, "decode", 17, &options, None);
    let slide = made
        .map_err(|e| fail(&e))
        .and_then(|_| Slide::open(dir.join("decode.svs")).map_err(|e| fail(&e)));
    let _ = std::fs::remove_dir_all(&dir);
    let slide = slide?;
    let mut checks = Vec::new();
    for (tile_px, read_px) in [(256u32, 256u32), (256, 512)] {
        let plan = TilePlan::for_reading(0.25, tile_px, read_px);
        let corners = [
            (0, 0),
            (512, 256),
            (300, 700),
            (1000, 130),
            (1900, 1500),
            (1600, 60),
            (5, 1400),
        ];
        let tiles: Vec<Tile> = corners
            .iter()
            .map(|&(x, y)| Tile { col: 0, row: 0, x, y })
            .collect();
        let batch = JpegBatch::read(&slide, &plan, &tiles)
            .map_err(|e| fail(&e))?
            .ok_or_else(|| fail(&"the generated slide's tiles are not stand-alone JPEG"))?;
        let mut decode = || -> Result<Vec<u8>, ModelError> {
            let pixels = decoder.decode(&batch)?;
            gpu.inner
                .stream
                .clone_dtoh(pixels.data())
                .map_err(super::device_err)
        };
        let got = decode()?;
        let repeatable = decode()? == got;
        let want: Vec<f64> = tiles
            .iter()
            .map(|t| read_tile(&slide, &plan, t).map_err(|e| fail(&e)))
            .collect::<Result<Vec<_>, _>>()?
            .concat()
            .into_iter()
            .map(f64::from)
            .collect();
        let got: Vec<f32> = got[..want.len().min(got.len())]
            .iter()
            .map(|&v| v as f32)
            .collect();
        checks.push(compare(
            format!(
                "tiles by {}, {} px from {read_px}, {} tiles",
                decoder.describe(),
                tile_px,
                tiles.len()
            ),
            &got,
            &want,
            repeatable,
        ));
    }
    Ok(Some(checks))
}

/// Everything, in order; `on_check` sees each result as it comes. `configs` are tile-encoder
/// configurations to check (each may carry a slide encoder).
pub fn run_all(
    gpu: &CudaBackend,
    configs: &[ModelConfig],
    long: bool,
    on_check: &mut dyn FnMut(&Check),
) -> Result<Vec<Check>, ModelError> {
    let mut all = Vec::new();
    let mut push = |c: Check, all: &mut Vec<Check>| {
        on_check(&c);
        all.push(c);
    };
    let mut seed = 1000;
    for n in [1usize, 257, 4095] {
        for d in [64, 128] {
            for alibi in [false, true] {
                seed += 10;
                push(gpu.check_attention::<bf16>(&[0, n], 4, d, alibi, seed)?, &mut all);
                push(
                    gpu.check_attention::<f16>(&[0, n], 4, d, alibi, seed + 5)?,
                    &mut all,
                );
            }
        }
    }
    // A packed batch like stage 1's (many short sequences) with odd lengths and an empty one.
    let batch: Vec<usize> = [0usize, 257, 514, 515, 515, 771, 900, 1157].to_vec();
    push(gpu.check_attention::<bf16>(&batch, 6, 64, false, 3)?, &mut all);
    push(gpu.check_attention::<bf16>(&batch, 2, 128, true, 4)?, &mut all);
    push(
        gpu.check_attention::<bf16>(&[0, 65_537], 2, 64, false, 5)?,
        &mut all,
    );
    push(
        gpu.check_attention::<bf16>(&[0, 65_537], 2, 64, true, 6)?,
        &mut all,
    );
    push(
        gpu.check_attention::<f16>(&[0, 65_537], 2, 128, false, 7)?,
        &mut all,
    );
    if long {
        push(gpu.check_long_attention(1 << 20, 8, 64, 512)?, &mut all);
    }
    for c in check_tile_decoding(gpu)?.unwrap_or_default() {
        push(c, &mut all);
    }
    for config in configs {
        for c in check_tile_encoder(gpu, config, 8)? {
            push(c, &mut all);
        }
        if let Some(s) = &config.slide_encoder {
            for tokens in [1usize, 257, 4095, 65_537] {
                push(check_slide_encoder(gpu, s, tokens)?, &mut all);
            }
            let mut with_alibi = s.clone();
            with_alibi.alibi = true;
            push(check_slide_encoder(gpu, &with_alibi, 4095)?, &mut all);
        }
    }
    Ok(all)
}
