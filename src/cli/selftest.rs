use super::device::{self, Device};
use anyhow::{bail, Result};
use clap::Args;
use flashslide::backend::cuda::check::run_all;
use flashslide::backend::{Backend, Selected};
use flashslide::model::config::ModelConfig;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct SelftestArgs {
    /// The device to check against the CPU reference
    #[arg(long, value_enum, default_value_t = Device::Cuda)]
    device: Device,
    /// Model configurations whose encoders to check (random weights)
    #[arg(long, num_args = 1..)]
    configs: Vec<PathBuf>,
    /// Also attend over 2^20 tokens (512 sampled rows against f64)
    #[arg(long)]
    long: bool,
    /// Print JSON lines instead of a table
    #[arg(long)]
    json: bool,
}

pub fn run(args: SelftestArgs) -> Result<ExitCode> {
    let Selected::Cuda(gpu) = device::open(args.device, false)? else {
        bail!("the self-test checks a GPU against the CPU reference; no GPU was selected");
    };
    let configs = args
        .configs
        .iter()
        .map(|p| Ok(serde_json::from_str::<ModelConfig>(&std::fs::read_to_string(p)?)?))
        .collect::<Result<Vec<_>>>()?;
    if !args.json {
        println!("{}", gpu.describe());
        if let Some(why) = gpu.tile_decoding_unavailable() {
            println!("tiles are decoded on the CPU with this GPU ({why}): no tile decoding check");
        }
        println!(
            "{:<84} {:>10} {:>10} {:>8}",
            "check", "rel. err", "max |Δ|", "result"
        );
    }
    let json = args.json;
    let checks = run_all(&gpu, &configs, args.long, &mut |c| {
        if json {
            println!("{}", serde_json::to_string(c).unwrap_or_default());
        } else {
            println!(
                "{:<84} {:>10.2e} {:>10.2e} {:>8}",
                c.what,
                c.relative_error,
                c.max_abs_diff,
                if c.passed {
                    "ok"
                } else if !c.finite {
                    "NaN/Inf"
                } else if !c.repeatable {
                    "unstable"
                } else {
                    "FAILED"
                }
            );
        }
    })?;
    let failed = checks.iter().filter(|c| !c.passed).count();
    if !json {
        println!("{} checks, {failed} failed", checks.len());
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
