//! The differentiable backend training runs on: the same forward pass as the CPU reference
//! (tile encoder, and slide encoder with 2D RoPE, packed and uneven sequences), and
//! gradients that agree with finite differences.

mod common;

use candle_core::{Tensor, Var};
use common::bundled_config;
use flashslide::backend::autodiff::AutodiffBackend;
use flashslide::backend::cpu::CpuBackend;
use flashslide::backend::Backend;
use flashslide::model::slide_encoder::SlideEncoder;
use flashslide::model::tile_encoder::TileEncoder;

fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (diff / norm).sqrt()
}

fn random_tiles(n: usize, side: usize) -> Vec<u8> {
    let mut state = 0x9e3779b97f4a7c15u64;
    (0..n * side * side * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect()
}

#[test]
fn forward_passes_match_the_cpu_reference() {
    let config = bundled_config();
    let side = config.image_size;
    let tiles = random_tiles(3, side);
    let cpu = TileEncoder::random(&CpuBackend, config.clone()).unwrap();
    let diff = TileEncoder::random(&AutodiffBackend::default(), config.clone()).unwrap();
    let (a, b) = (
        cpu.forward(&tiles, 3, side).unwrap(),
        diff.forward(&tiles, 3, side).unwrap(),
    );
    let tokens_err = relative_error(
        &diff.backend().download(&b.tokens).unwrap(),
        &CpuBackend.download(&a.tokens).unwrap(),
    );
    let pooled_err = relative_error(
        &diff.backend().download(&b.pooled).unwrap(),
        &CpuBackend.download(&a.pooled).unwrap(),
    );
    assert!(
        tokens_err < 1e-5 && pooled_err < 1e-5,
        "tokens {tokens_err:e}, pooled {pooled_err:e}"
    );

    let slide_config = config.slide_encoder.clone().unwrap();
    let n = 37;
    let positions: Vec<[f32; 2]> = (0..n).map(|i| [(i / 7) as f32, (i % 7) as f32 * 1.5]).collect();
    let features: Vec<f32> = random_tiles(1, 64)[..n * slide_config.input_dim]
        .iter()
        .map(|&v| v as f32 / 128.0 - 1.0)
        .collect();
    let cpu = SlideEncoder::random(&CpuBackend, slide_config.clone()).unwrap();
    let be = AutodiffBackend::default();
    let diff = SlideEncoder::random(&be, slide_config.clone()).unwrap();
    let x_cpu = CpuBackend.upload(&features, n, slide_config.input_dim).unwrap();
    let x_diff = be.upload(&features, n, slide_config.input_dim).unwrap();
    let (a, b) = (
        cpu.forward(&x_cpu, &positions).unwrap(),
        diff.forward(&x_diff, &positions).unwrap(),
    );
    let err = relative_error(&b.token_logits, &a.token_logits);
    assert!(err < 1e-5, "slide encoder token logits {err:e}");
    assert!((a.slide_logit - b.slide_logit).abs() < 1e-5);

    // Packed, uneven sequences (the per-sequence path) against the CPU kernel.
    let (heads, hd) = (2, 64);
    let offsets = [0, 5, 5, 17, 18];
    let qkv: Vec<f32> = (0..18 * 3 * heads * hd)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let spec = flashslide::backend::PositionSpec {
        positions: &positions[..18],
        rope_base: Some(100.0),
        alibi: false,
    };
    let run = |b: &dyn Fn() -> Vec<f32>| b();
    let want = run(&|| {
        let p = CpuBackend.prepare_positions(spec, heads, hd).unwrap();
        let t = CpuBackend.upload(&qkv, 18, 3 * heads * hd).unwrap();
        CpuBackend
            .download(&CpuBackend.attention(&t, &offsets, heads, hd, Some(&p)).unwrap())
            .unwrap()
    });
    let got = run(&|| {
        let p = be.prepare_positions(spec, heads, hd).unwrap();
        let t = be.upload(&qkv, 18, 3 * heads * hd).unwrap();
        be.download(&be.attention(&t, &offsets, heads, hd, Some(&p)).unwrap())
            .unwrap()
    });
    let err = relative_error(&got, &want);
    assert!(err < 1e-5, "packed attention {err:e}");
}

#[test]
fn gradients_agree_with_finite_differences() {
    let config = bundled_config().slide_encoder.unwrap();
    let be = AutodiffBackend::default();
    let encoder = SlideEncoder::random(&be, config.clone()).unwrap();
    let n = 12;
    let positions: Vec<[f32; 2]> = (0..n).map(|i| [(i / 4) as f32, (i % 4) as f32]).collect();
    let features: Vec<f32> = (0..n * config.input_dim)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let x = be.upload(&features, n, config.input_dim).unwrap();
    let weights = Tensor::from_vec(
        (0..n).map(|i| (i as f32 - 5.5) / 6.0).collect(),
        (n, 1),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let loss = |encoder: &SlideEncoder<AutodiffBackend>| -> Tensor {
        let (tokens, slide) = encoder.logits(&x, &positions).unwrap();
        ((tokens * &weights).unwrap().sum_all().unwrap() + slide.sum_all().unwrap()).unwrap()
    };
    let grads = loss(&encoder).backward().unwrap();
    for name in [
        "slide.blocks.0.attn.qkv.weight",
        "slide.blocks.1.mlp.fc1.weight",
        "slide.proj_in.weight",
    ] {
        let tensor = encoder
            .weights()
            .named()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
            .clone();
        let var = Var::from_tensor(&tensor).unwrap();
        let grad = grads
            .get(&tensor)
            .unwrap_or_else(|| panic!("no gradient for {name}"))
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let original = tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // The element with the largest gradient, nudged both ways.
        let (i, &g) = grad
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap();
        let h = 1e-2f32;
        let at = |delta: f32| -> f64 {
            let mut v = original.clone();
            v[i] += delta;
            var.set(&Tensor::from_vec(v, tensor.shape(), &candle_core::Device::Cpu).unwrap())
                .unwrap();
            loss(&encoder).to_scalar::<f32>().unwrap() as f64
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h as f64);
        at(0.0);
        assert!(
            (numeric - g as f64).abs() <= 2e-2 * (g as f64).abs().max(1e-2),
            "{name}[{i}]: autograd {g}, finite differences {numeric}"
        );
    }
}
