//! The encoders on any backend checked against the CPU reference: whole tile- and
//! slide-encoder forward passes with random weights at timm's initial scale, for the
//! configurations given (the self-test passes the model's own, or several).

use super::config::ModelConfig;
use super::slide_encoder::{SlideEncoder, SlideEncoderConfig};
use super::tile_encoder::{expected_shapes, TileEncoder};
use super::weights::HostTensor;
use super::ModelError;
use crate::backend::check::{compare, Check, Scope};
use crate::backend::cpu::CpuBackend;
use crate::backend::testing::random_inputs;
use crate::backend::Backend;
use half::bf16;
use std::collections::HashMap;
use std::path::Path;

/// Each configuration's tile encoder (8 random tiles) and, when it has one, its slide
/// encoder (1 to 65,537 tokens, 1 to 257 in the quick scope, and with ALiBi); `on_check`
/// sees each result as it comes.
pub fn check_encoders<B: Backend>(
    b: &B,
    configs: &[ModelConfig],
    scope: Scope,
    on_check: &mut dyn FnMut(&Check),
) -> Result<Vec<Check>, ModelError> {
    let mut all = Vec::new();
    let mut push = |c: Check, all: &mut Vec<Check>| {
        on_check(&c);
        all.push(c);
    };
    for config in configs {
        for c in check_tile_encoder(b, config, 8)? {
            push(c, &mut all);
        }
        if let Some(s) = &config.slide_encoder {
            let lengths: &[usize] = match scope {
                Scope::Quick => &[1, 257],
                Scope::Full => &[1, 257, 4095, 65_537],
            };
            for &tokens in lengths {
                push(check_slide_encoder(b, s, tokens)?, &mut all);
            }
            let mut with_alibi = s.clone();
            with_alibi.alibi = true;
            push(
                check_slide_encoder(b, &with_alibi, *lengths.last().unwrap_or(&1))?,
                &mut all,
            );
        }
    }
    Ok(all)
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
fn check_tile_encoder<B: Backend>(
    b: &B,
    config: &ModelConfig,
    tiles: usize,
) -> Result<Vec<Check>, ModelError> {
    let host = random_host(&expected_shapes(config), 11);
    let src = Path::new("random");
    let cpu_enc = TileEncoder::new(&CpuBackend, config.clone(), &host, src)?;
    let b_enc = TileEncoder::new(b, config.clone(), &host, src)?;
    let s = config.image_size;
    let rgb: Vec<u8> = random_inputs(tiles * s * s * 3, 5)
        .iter()
        .map(|x| ((x + 2.0) * 63.9) as u8)
        .collect();
    let want = cpu_enc.forward(&rgb, tiles, s)?;
    let got = b_enc.forward(&rgb, tiles, s)?;
    let again = b_enc.forward(&rgb, tiles, s)?;
    let mut checks = Vec::new();
    for (what, g, a, w) in [
        ("tokens", &got.tokens, &again.tokens, &want.tokens),
        ("pooled", &got.pooled, &again.pooled, &want.pooled),
    ] {
        let g = b.download(g)?;
        let repeatable = g
            .iter()
            .zip(&b.download(a)?)
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
fn check_slide_encoder<B: Backend>(
    b: &B,
    config: &SlideEncoderConfig,
    tokens: usize,
) -> Result<Check, ModelError> {
    let host = random_host(&config.expected_shapes(), 23);
    let src = Path::new("random");
    let cpu_enc = SlideEncoder::new(&CpuBackend, config.clone(), &host, src)?;
    let b_enc = SlideEncoder::new(b, config.clone(), &host, src)?;
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
    let x = b.upload(&features, tokens, config.input_dim)?;
    let got = b_enc.forward(&x, &positions)?;
    let again = b_enc.forward(&x, &positions)?;
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

/// The least cosine similarity a device's pooled tile features may have with the CPU's for a
/// real model (bf16 arithmetic through every block).
pub const MODEL_COSINE: f64 = 0.9999;

/// A model directory loaded on `b` and on the CPU, its pooled features of `tiles` random
/// tiles (from `seed`) compared: the relative error, and each tile's cosine similarity, the
/// least of which must reach [`MODEL_COSINE`].
pub fn check_model_dir<B: Backend>(b: &B, dir: &Path, tiles: usize, seed: u64) -> Result<Check, ModelError> {
    let cpu = super::Model::load(dir, &CpuBackend)?;
    let dev = super::Model::load(dir, b)?;
    let s = cpu.config.image_size;
    let rgb: Vec<u8> = random_inputs(tiles * s * s * 3, seed)
        .iter()
        .map(|x| ((x + 2.0) * 63.9) as u8)
        .collect();
    let want = CpuBackend.download(&cpu.tile_encoder.forward(&rgb, tiles, s)?.pooled)?;
    let got = b.download(&dev.tile_encoder.forward(&rgb, tiles, s)?.pooled)?;
    let again = b.download(&dev.tile_encoder.forward(&rgb, tiles, s)?.pooled)?;
    let repeatable = got.iter().zip(&again).all(|(x, y)| x.to_bits() == y.to_bits());
    let dim = cpu.config.feature_dim();
    let cosine = got
        .chunks(dim)
        .zip(want.chunks(dim))
        .map(|(g, w)| {
            let dot: f64 = g.iter().zip(w).map(|(a, b)| *a as f64 * *b as f64).sum();
            let norm = |v: &[f32]| v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
            dot / (norm(g) * norm(w)).max(1e-30)
        })
        .fold(1f64, f64::min);
    let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
    let mut check = compare(
        format!(
            "model {} ({tiles} tiles of {s} px, {dim}-d features): least cosine {cosine:.6}",
            cpu.config.name
        ),
        &got,
        &want,
        repeatable,
    );
    check.passed &= cosine >= MODEL_COSINE;
    Ok(check)
}
