//! `flashslide convert`: a foundation model's checkpoint into a model directory.

use anyhow::{bail, Result};
use clap::Args;
use flashslide::model::config::GlobalPool;
use flashslide::model::convert::{convert, ArchitectureSpec, ConvertRequest};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The checkpoint: safetensors, or a PyTorch file (pytorch_model.bin, .pth, .pt)
    checkpoint: PathBuf,
    /// The model directory to write (config.json, model.safetensors)
    out: PathBuf,
    /// The architecture from a config.json: a model hub's timm config ("architecture",
    /// "model_args", "pretrained_cfg") or a transformers ViT config (Phikon)
    #[arg(long, conflicts_with = "arch")]
    config: Option<PathBuf>,
    /// A timm architecture name whose defaults --arg overrides (e.g. vit_large_patch16_224)
    #[arg(long)]
    arch: Option<String>,
    /// A timm VisionTransformer constructor argument, KEY=VALUE (VALUE as JSON, else a
    /// string): what the model card passes to timm.create_model, e.g. init_values=1e-5,
    /// mlp_layer=swiglu_packed, act_layer=silu, reg_tokens=8, no_embed_class=true
    #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = timm_argument)]
    args: Vec<(String, Value)>,
    /// Input normalisation mean, R,G,B (0–1 pixels), as the model card states it; needed
    /// when the config gives none
    #[arg(long, value_parser = triple)]
    mean: Option<[f32; 3]>,
    /// Input normalisation std, R,G,B
    #[arg(long, value_parser = triple)]
    std: Option<[f32; 3]>,
    /// Microns per pixel the encoder was trained at (0.5 for 20×): no checkpoint says it
    #[arg(long, value_parser = super::values::mpp)]
    mpp: f64,
    /// The tile feature: the class token, the mean of the patch tokens, or both side by side
    /// (Virchow's); default what the architecture pools
    #[arg(long, value_parser = pool)]
    pool: Option<GlobalPool>,
    /// Take only the tensors under this prefix (default: open_clip's visual.trunk. when
    /// present; wrappers every tensor shares, such as module., are always stripped)
    #[arg(long)]
    prefix: Option<String>,
    /// The model's name (default: the output folder's)
    #[arg(long)]
    name: Option<String>,
}

fn timm_argument(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((key.trim().to_string(), value))
}

fn triple(text: &str) -> Result<[f32; 3], String> {
    let values: Vec<f32> = text
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<f32>()
                .map_err(|_| format!("{v:?} is not a number"))
        })
        .collect::<Result<_, _>>()?;
    match values[..] {
        [a, b, c] if values.iter().all(|v| v.is_finite()) => Ok([a, b, c]),
        _ => Err(format!("{text:?} is not three finite numbers R,G,B")),
    }
}

fn pool(text: &str) -> Result<GlobalPool, String> {
    serde_json::from_value(Value::String(text.to_string()))
        .map_err(|_| format!("{text:?} is not token, avg or token_and_avg"))
}

pub fn run(args: ConvertArgs) -> Result<ExitCode> {
    let timm_args: Map<String, Value> = args.args.into_iter().collect();
    let architecture = match (args.config, args.arch) {
        (Some(path), _) => ArchitectureSpec::ConfigFile {
            path,
            args: timm_args,
        },
        (None, None) if timm_args.is_empty() => bail!(
            "say the architecture: --config CONFIG.json (the model hub's), or --arch TIMM_NAME and/or --arg KEY=VALUE (timm's constructor arguments)"
        ),
        (None, name) => ArchitectureSpec::Timm {
            name,
            args: timm_args,
        },
    };
    let request = ConvertRequest {
        checkpoint: args.checkpoint,
        out: args.out,
        architecture,
        mean: args.mean,
        std: args.std,
        mpp: args.mpp,
        pool: args.pool,
        prefix: args.prefix,
        name: args.name,
    };
    let report = convert(&request)?;
    let c = &report.config;
    println!(
        "{} → {}: {} tensors, {:.1} M parameters",
        request.checkpoint.display(),
        request.out.display(),
        report.tensors,
        report.parameters as f64 / 1e6
    );
    println!(
        "  ViT {} px, patch {}, width {}, depth {}, {} heads (head dim {}), {} register tokens; feature {} ({:?})",
        c.image_size,
        c.patch_size,
        c.width,
        c.depth,
        c.heads,
        c.head_dim(),
        c.register_tokens,
        c.feature_dim(),
        c.global_pool
    );
    if !report.stripped.is_empty() {
        println!("  prefixes stripped: {}", report.stripped.join(" "));
    }
    if let Some(s) = &c.source {
        if !s.left_out.is_empty() {
            println!("  left out (not the tile encoder): {}", s.left_out.join(", "));
        }
        println!("  checkpoint SHA-256 {}", s.sha256);
    }
    Ok(ExitCode::SUCCESS)
}
