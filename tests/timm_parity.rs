//! Parity with timm's VisionTransformer on the committed fixtures (tools/make_timm_fixtures.py):
//! every output element within 1e-4.

use flashslide::backend::{cpu::CpuBackend, Backend};
use flashslide::model::config::ModelConfig;
use flashslide::model::tile_encoder::TileEncoder;
use flashslide::model::weights::read_safetensors;
use std::path::Path;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/timm")
        .join(name)
}

#[test]
fn tile_encoder_matches_timm() {
    let cases = [
        ("vit-s16-cls", ""),
        ("vit-s16-cls", "-96"),
        ("vit-s16-cls", "-48"),
        ("vit-14-reg-swiglu-avg", ""),
        ("vit-14-reg-swiglu-avg", "-84"),
        ("vit-14-reg-swiglu-avg", "-42"),
        // UNI2-h / H-optimus layout: no position embedding for class and register tokens.
        ("vit-14-noembed-reg8", ""),
        ("vit-14-noembed-reg8", "-84"),
        ("vit-14-noembed-reg8", "-42"),
        // Virchow2 layout: head dim 80, class token ⊕ mean of patch tokens.
        ("vit-14-hd80-token-and-avg", ""),
        ("vit-14-hd80-token-and-avg", "-84"),
        ("vit-14-hd80-token-and-avg", "-42"),
    ];
    for (name, size) in cases {
        let config: ModelConfig =
            serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{name}.config.json"))).unwrap())
                .unwrap();
        let weights = fixture(&format!("{name}.model.safetensors"));
        let host = read_safetensors(&weights).unwrap();
        let encoder = TileEncoder::new(&CpuBackend, config, &host, &weights).unwrap();
        let io = candle_core::safetensors::load(
            fixture(&format!("{name}.io{size}.safetensors")),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let images = io["images"].flatten_all().unwrap().to_vec1::<u8>().unwrap();
        let (batch, side) = (io["images"].dim(0).unwrap(), io["images"].dim(1).unwrap());
        let out = encoder.forward(&images, batch, side).unwrap();
        for (what, got, want) in [
            ("features", &out.tokens, &io["features"]),
            ("pooled", &out.pooled, &io["pooled"]),
        ] {
            // Ours are [B·T, D] and [B, D]; timm's [B, T, D] and [B, D].
            let want_dims = want.dims();
            assert_eq!(
                CpuBackend.shape(got),
                (
                    want_dims[..want_dims.len() - 1].iter().product(),
                    want_dims[want_dims.len() - 1]
                ),
                "{name} {what} shape"
            );
            let got = CpuBackend.download(got).unwrap();
            let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let max = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            eprintln!(
                "{name} {side}px {what}: {} elements, max |Δ| {max:.2e}",
                got.len()
            );
            assert!(max <= 1e-4, "{name} {what}: max |Δ| {max:.2e}");
        }
    }
}

/// Inference folds layer scale into the layers it scales (so a GPU adds each branch to the
/// residual stream in the GEMM); training keeps it apart. Both give the same features.
#[test]
fn folded_layer_scale_gives_the_trainable_encoders_features() {
    for name in ["vit-14-reg-swiglu-avg", "vit-14-hd80-token-and-avg"] {
        let config: ModelConfig =
            serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{name}.config.json"))).unwrap())
                .unwrap();
        assert!(config.layer_scale, "{name} has layer scale");
        let side = config.image_size;
        let images: Vec<u8> = (0..2 * side * side * 3).map(|i| (i * 37 % 251) as u8).collect();
        let folded = TileEncoder::random(&CpuBackend, config.clone()).unwrap();
        let apart = TileEncoder::random_trainable(&CpuBackend, config).unwrap();
        let a = CpuBackend
            .download(&folded.forward(&images, 2, side).unwrap().tokens)
            .unwrap();
        let b = CpuBackend
            .download(&apart.forward(&images, 2, side).unwrap().tokens)
            .unwrap();
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        eprintln!("{name}: max |Δ| {max:.2e} of values up to {scale:.2}");
        assert!(max <= 1e-5 * scale.max(1.0), "{name}: max |Δ| {max:.2e}");
    }
}
