//! `flashslide selftest`: the device's backend checked against the CPU reference (every
//! operation, the encoders, its tile decoders on a generated slide, and on a GPU the
//! attention kernels themselves).

use super::device;
use anyhow::{Context, Result};
use clap::Args;
use flashslide::analysis::decoder_check::check_tile_decoders;
use flashslide::backend::check::{check_attention_kernels, check_operations, Check, Scope};
use flashslide::backend::cpu::CpuBackend;
use flashslide::backend::cuda::kernel_check::check_kernels;
use flashslide::backend::cuda::kernels::KernelFamily;
use flashslide::backend::grad_check::{check_gradients, check_long_attention_backward};
use flashslide::backend::{Backend, DeviceChoice, Selected};
use flashslide::model::check::{check_encoders, check_model_dir};
use flashslide::model::config::ModelConfig;
use flashslide::slide::Slide;
use flashslide::synth::{generate_slide, SynthOptions};
use flashslide::train::backprop::check_encoder_gradients;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct SelftestArgs {
    /// The device to check against the CPU reference
    #[arg(long, value_parser = device::parser(), default_value = "cuda")]
    device: DeviceChoice,
    /// Model configurations whose encoders to check (random weights)
    #[arg(long, num_args = 1..)]
    configs: Vec<PathBuf>,
    /// Model directories (converted foundation encoders) whose pooled features to check
    /// against the CPU's on random tiles (least cosine similarity 0.9999)
    #[arg(long, num_args = 1..)]
    models: Vec<PathBuf>,
    /// Slides (files, or folders of a DICOM series) whose stored JPEG tiles the device's
    /// decoder also decodes, against the CPU's reading of the same tiles
    #[arg(long, num_args = 1..)]
    slides: Vec<PathBuf>,
    /// Also attend over 2^20 tokens (512 sampled rows against f64; GPU only)
    #[arg(long)]
    long: bool,
    /// Only the attention kernels' checks, through every kernel family this GPU runs (kernel
    /// work: a minute, not the several of the whole check)
    #[arg(long)]
    attention: bool,
    /// Only these attention kernel families (on a Hopper; default: the GPU's own choice,
    /// then every family). A --long check of every family takes longer than one device call
    /// may: split it with this
    #[arg(long, value_enum, num_args = 1..)]
    kernel: Vec<device::AttentionKernels>,
    /// Only training's checks (part of the whole check too): every backward operation and
    /// AdamW against the CPU's, and the slide encoder's gradients against the CPU's (with --long also attention's backward over
    /// 2^20 tokens, sampled rows against f64, and the memory it keeps)
    #[arg(long)]
    training: bool,
    /// Only the encoders' checks: those of --configs and --models (a converted model checked
    /// in a minute, without the several of the whole check)
    #[arg(long)]
    encoders: bool,
    /// The inputs' seed (default: a fresh one each run, printed)
    #[arg(long)]
    seed: Option<u64>,
    /// Print JSON lines instead of a table
    #[arg(long)]
    json: bool,
}

pub fn run(args: SelftestArgs) -> Result<ExitCode> {
    let configs = args
        .configs
        .iter()
        .map(|p| Ok(serde_json::from_str::<ModelConfig>(&std::fs::read_to_string(p)?)?))
        .collect::<Result<Vec<_>>>()?;
    let json = args.json;
    let mut print = |c: &Check| {
        if json {
            println!("{}", serde_json::to_string(c).unwrap_or_default());
        } else {
            let result = if c.passed {
                "ok"
            } else if !c.finite {
                "NaN/Inf"
            } else if !c.repeatable {
                "unstable"
            } else {
                "FAILED"
            };
            println!(
                "{:<84} {:>10.2e} {:>10.2e} {:>8}",
                c.what, c.relative_error, c.max_abs_diff, result
            );
        }
    };
    // Fresh inputs each run (fixed ones could hide a fault they happen not to touch); the
    // seed is printed, so a failure can be repeated with it.
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let selected = device::open(args.device, false)?;
    if matches!(selected, Selected::Cpu(_)) && !args.kernel.is_empty() {
        anyhow::bail!("--kernel picks among the CUDA attention kernels: add --device cuda on a GPU machine");
    }
    if args.training && !args.kernel.is_empty() {
        anyhow::bail!("--kernel picks the inference attention kernels; --training checks training's own");
    }
    if args.encoders && (args.training || args.attention || !args.kernel.is_empty()) {
        anyhow::bail!("--encoders checks the encoders alone: leave out --training, --attention and --kernel");
    }
    if args.encoders && configs.is_empty() && args.models.is_empty() {
        anyhow::bail!("--encoders checks the encoders of --configs and --models: name at least one");
    }
    let checks = match selected {
        Selected::Cpu(cpu) if args.encoders => {
            check_only_encoders(&cpu, &configs, &args.models, Scope::Quick, seed, json, &mut print)?
        }
        Selected::Cuda(gpu) if args.encoders => {
            gpu.poison_new_buffers(true);
            check_only_encoders(&gpu, &configs, &args.models, Scope::Full, seed, json, &mut print)?
        }
        // The CPU against itself: a check of the check, kept quick.
        Selected::Cpu(cpu) if args.training => {
            let mut found = check_gradients(&cpu, seed, &mut print)?;
            found.extend(check_encoder_gradients(&cpu, seed, &mut print)?);
            found
        }
        Selected::Cpu(cpu) => check_all(
            &cpu,
            &configs,
            &args.models,
            &args.slides,
            Scope::Quick,
            seed,
            json,
            &mut print,
            |_| Ok(Vec::new()),
        )?,
        Selected::Cuda(gpu) => {
            gpu.poison_new_buffers(true);
            if let (Some(why), false) = (gpu.tile_decoding_unavailable(), json) {
                println!("tiles are decoded on the CPU with this GPU ({why}): no tile decoding check");
            }
            let long = args.long;
            // check_all prints the seed itself.
            if (args.training || args.attention) && !json {
                println!("{} [inputs from seed {seed}]", gpu.describe());
            }
            let mut checks = if args.training {
                let mut found = check_gradients(&gpu, seed, &mut print)?;
                found.extend(check_encoder_gradients(&gpu, seed, &mut print)?);
                if long {
                    found.extend(check_long_attention_backward(&gpu, 1 << 20, seed, &mut print)?);
                }
                found
            } else if args.attention && !args.kernel.is_empty() {
                Vec::new()
            } else if args.attention {
                check_kernels(&gpu, long, seed, &mut print)?
            } else {
                check_all(
                    &gpu,
                    &configs,
                    &args.models,
                    &args.slides,
                    Scope::Full,
                    seed,
                    json,
                    &mut print,
                    |print| {
                        let mut found = check_kernels(&gpu, long, seed, print)?;
                        found.extend(check_gradients(&gpu, seed, print)?);
                        found.extend(check_encoder_gradients(&gpu, seed, print)?);
                        Ok(found)
                    },
                )?
            };
            // Where the GPU has several attention kernel families (a Hopper), each one too:
            // the kernels alone as above, and through the backend at the quick scope's
            // lengths (its CPU references are most of selftest's time), at all with --long.
            let families: Vec<KernelFamily> = match args.training {
                true => Vec::new(),
                false if args.kernel.is_empty() => gpu.attention_families().to_vec(),
                false => args.kernel.iter().map(|k| k.family()).collect(),
            };
            let scope = if long { Scope::Full } else { Scope::Quick };
            for (i, &family) in families
                .iter()
                .enumerate()
                .filter(|_| families.len() > 1 || !args.kernel.is_empty())
            {
                gpu.use_attention_kernels(Some(family))?;
                // Each family its own inputs, so that their checks are independent.
                let family_seed = seed.wrapping_add(7_919 * (i as u64 + 1));
                let name = family.name();
                let mut named = |c: &Check| {
                    let mut c = c.clone();
                    c.what = format!("{name} {}", c.what);
                    print(&c)
                };
                let found = check_kernels(&gpu, long, family_seed, &mut named).and_then(|mut found| {
                    found.extend(check_attention_kernels(
                        &gpu,
                        &CpuBackend,
                        scope,
                        family_seed,
                        &mut named,
                    )?);
                    Ok(found)
                });
                gpu.use_attention_kernels(None)?;
                checks.extend(found?.into_iter().map(|mut c| {
                    c.what = format!("{name} {}", c.what);
                    c
                }));
            }
            checks
        }
    };
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

/// Every check of `b`, in order: its operations (inputs from `seed`), its own extra checks
/// (`extra`), its tile decoders (on a generated slide and on `slides`), the encoders of
/// `configs`, the model directories `models` (tiles from `seed`).
#[allow(clippy::too_many_arguments)]
fn check_all<B: Backend>(
    b: &B,
    configs: &[ModelConfig],
    models: &[PathBuf],
    slides: &[PathBuf],
    scope: Scope,
    seed: u64,
    json: bool,
    print: &mut dyn FnMut(&Check),
    extra: impl FnOnce(&mut dyn FnMut(&Check)) -> Result<Vec<Check>>,
) -> Result<Vec<Check>> {
    print_header(b, seed, json);
    let mut all = check_operations(b, &CpuBackend, scope, seed, print)?;
    all.extend(extra(print)?);
    for c in decoding_checks(b)? {
        print(&c);
        all.push(c);
    }
    for path in slides {
        let slide = Slide::open(path)?;
        let mpp = slide.mpp().map_or(0.5, |m| m.x);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for mut c in check_tile_decoders(b, &slide, mpp).with_context(|| path.display().to_string())? {
            c.what = format!("{name}: {}", c.what);
            print(&c);
            all.push(c);
        }
    }
    all.extend(encoder_checks(b, configs, models, scope, seed, print)?);
    Ok(all)
}

/// The table's heading: the backend, the inputs' seed and the columns.
fn print_header<B: Backend>(b: &B, seed: u64, json: bool) {
    if !json {
        println!("{} [inputs from seed {seed}]", b.describe());
        println!(
            "{:<84} {:>10} {:>10} {:>8}",
            "check", "rel. err", "max |Δ|", "result"
        );
    }
}

/// `--encoders`: [`encoder_checks`] alone, under the table's heading.
fn check_only_encoders<B: Backend>(
    b: &B,
    configs: &[ModelConfig],
    models: &[PathBuf],
    scope: Scope,
    seed: u64,
    json: bool,
    print: &mut dyn FnMut(&Check),
) -> Result<Vec<Check>> {
    print_header(b, seed, json);
    encoder_checks(b, configs, models, scope, seed, print)
}

/// The encoders of `configs` (slide encoders at `scope`'s lengths), then each model
/// directory's pooled features against the CPU's (tiles from `seed`).
fn encoder_checks<B: Backend>(
    b: &B,
    configs: &[ModelConfig],
    models: &[PathBuf],
    scope: Scope,
    seed: u64,
    print: &mut dyn FnMut(&Check),
) -> Result<Vec<Check>> {
    let mut all = check_encoders(b, configs, scope, print)?;
    for dir in models {
        let mut c = check_model_dir(b, dir, 4, seed).with_context(|| format!("model {}", dir.display()))?;
        c.what = format!("{} [seed {seed}]", c.what);
        print(&c);
        all.push(c);
    }
    Ok(all)
}

/// The tile decoders' checks on a slide generated in a temporary directory.
fn decoding_checks<B: Backend>(b: &B) -> Result<Vec<Check>> {
    let dir = std::env::temp_dir().join(format!("flashslide-selftest-{}", std::process::id()));
    let options = SynthOptions {
        width: 2100,
        height: 1700,
        mpp: 0.25,
        jpeg_quality: Some(85),
    };
    let slide = generate_slide(&dir, "decode", 17, &options, None)
        .map_err(anyhow::Error::from)
        .and_then(|_| Ok(Slide::open(dir.join("decode.svs"))?));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(check_tile_decoders(b, &slide?, options.mpp)?)
}
