use super::device;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use flashslide::backend::cuda::attention::family_head_dims;
use flashslide::backend::DeviceChoice;
use flashslide::backend::{Backend, Selected};
use flashslide::bench::read::read_throughput;
use flashslide::train::backprop::time_steps;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Encoder throughput (random weights): tile-encoder tiles per second, and with
    /// --slide-tokens the seconds of one slide-encoder pass
    Encoder {
        /// Model configurations (config.json files)
        #[arg(required = true)]
        configs: Vec<PathBuf>,
        #[arg(long, value_parser = device::parser(), default_value = "cpu")]
        device: DeviceChoice,
        #[arg(long, default_value_t = 16, value_parser = super::values::batch)]
        batch: usize,
        #[arg(long, default_value_t = 3)]
        batches: usize,
        /// Also time one slide-encoder pass over this many tokens (configs with one)
        #[arg(long)]
        slide_tokens: Option<usize>,
        /// On a GPU, also the time of each operation (CUDA events) over --batches more passes
        #[arg(long)]
        profile: bool,
    },
    /// Attention: on the CPU, the tiled kernel against naive attention (N × N scores); on a
    /// GPU, the CUDA kernel timed with events (bf16)
    Attention {
        #[arg(long, value_parser = device::parser(), default_value = "cpu")]
        device: DeviceChoice,
        /// Sequence lengths
        #[arg(long, num_args = 1.., default_values_t = [1024usize, 4096])]
        seq: Vec<usize>,
        /// On a GPU: sequences of each length packed into one launch (a tile encoder's
        /// batch, e.g. 256 of 197 tokens)
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 8)]
        heads: usize,
        #[arg(long, num_args = 1.., default_values_t = [64usize])]
        head_dim: Vec<usize>,
        /// Timed runs (the median is reported; default 3 on the CPU, 20 on a GPU)
        #[arg(long)]
        runs: Option<usize>,
        /// Run naive attention only where one head's N × N scores fit in this many GiB
        #[arg(long, default_value_t = 4.0)]
        naive_limit_gib: f64,
        /// On a GPU: the attention kernels (mma: kernels/flash_attn.cu, every GPU; wgmma and
        /// wgmma-pipelined: kernels/flash_attn_sm90.cu, wgmma-tma and wgmma-tma-persistent:
        /// flash_attn_sm90_tma.cu, Hopper; default: the GPU's choice, on a Hopper wgmma-tma
        /// for sequences of 512 tokens and more, wgmma-tma-persistent below, elsewhere mma)
        #[arg(long, value_enum)]
        kernel: Option<device::AttentionKernels>,
        /// Print JSON lines instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Training's attention on a GPU: the forward that saves each row's log-sum-exp and the
    /// backward (kernels/attention_backward.cu), timed with events (bf16, no positions)
    AttentionBackward {
        /// Sequence lengths
        #[arg(long, num_args = 1.., default_values_t = [16384usize, 65536])]
        seq: Vec<usize>,
        /// Sequences of each length packed into one launch
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 8)]
        heads: usize,
        #[arg(long, num_args = 1.., default_values_t = [64usize, 128])]
        head_dim: Vec<usize>,
        /// Timed runs (the median is reported)
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Print JSON lines instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Training steps of a slide encoder (forward, backward, AdamW) on one crop of each
    /// number of tokens, on the CPU or a GPU (random features and weights; the features
    /// kept where the backend computes, as `train` keeps its slides' where they fit)
    SlideTrain {
        /// A model configuration with a slide encoder (default: the bundled model's)
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, num_args = 1.., default_values_t = [4096usize, 65536])]
        tokens: Vec<usize>,
        /// Timed steps (the median is reported)
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, value_parser = device::parser(), default_value = "auto")]
        device: DeviceChoice,
        /// On a GPU, then time each operation of a few more steps with CUDA events
        #[arg(long)]
        profile: bool,
        /// Print JSON lines instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Full resolution against downscaled analysis: every model run over a held-out
    /// cohort and scored (CAMELYON16 FROC, sensitivity by lesion size, AUROC, cost);
    /// writes baseline.md, baseline.json and froc.png
    Baseline {
        /// Annotated slides (as for `train`), none of them seen in training
        #[arg(long)]
        cohort: PathBuf,
        /// Where each arm's results and the comparison go
        #[arg(long, default_value = "baseline")]
        out: PathBuf,
        /// The arms' models, one directory each (default: the bundled full-resolution
        /// model and its downscaled baselines, those of them in models/)
        #[arg(long = "model")]
        models: Vec<PathBuf>,
        #[arg(long, value_parser = device::parser(), default_value = "auto")]
        device: DeviceChoice,
        #[arg(long)]
        quiet: bool,
    },
    /// Reader throughput: every level-0 tile as an RGBA region, tile cache off
    Read {
        /// Slides to read
        #[arg(required = true)]
        slides: Vec<PathBuf>,
        /// Thread counts to measure (each a separate run)
        #[arg(long, num_args = 1.., default_values_t = [1usize, 2])]
        threads: Vec<usize>,
        /// Timed passes per run (the median is reported)
        #[arg(long, default_value_t = 5)]
        passes: usize,
        /// Print JSON lines instead of a table
        #[arg(long)]
        json: bool,
    },
}

fn bench_encoders<B: Backend>(
    backend: &B,
    configs: &[PathBuf],
    batch: usize,
    batches: usize,
    slide_tokens: Option<usize>,
) -> Result<ExitCode> {
    use flashslide::bench::encoder::{slide_encoder_seconds, tiles_per_second};
    println!("{}", backend.describe());
    for path in configs {
        let text = std::fs::read_to_string(path)?;
        let config: flashslide::model::config::ModelConfig = serde_json::from_str(&text)?;
        let rate = tiles_per_second(backend, &config, batch, batches)?;
        println!(
            "{:<32} {}px/{} width {} depth {}: {rate:.1} tiles/s (batch {batch})",
            config.name, config.image_size, config.patch_size, config.width, config.depth,
        );
        if let (Some(n), Some(s)) = (slide_tokens, &config.slide_encoder) {
            let secs = slide_encoder_seconds(backend, s, n)?;
            println!(
                "{:<32} slide encoder width {} depth {}: {n} tokens in {secs:.3} s",
                config.name, s.width, s.depth
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Each operation's share of a forward pass on the GPU (CUDA events around each), per pass,
/// against the pass's wall time.
fn profile_encoders(
    gpu: &flashslide::backend::cuda::CudaBackend,
    configs: &[PathBuf],
    batch: usize,
    passes: usize,
) -> Result<()> {
    for path in configs {
        let config: flashslide::model::config::ModelConfig =
            serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let wall = std::cell::Cell::new(std::time::Instant::now());
        let elapsed = std::cell::Cell::new(0.0);
        flashslide::bench::encoder::watched_passes(gpu, &config, batch, passes.max(1), &|on| {
            gpu.profile_ops(on);
            if on {
                wall.set(std::time::Instant::now());
            } else {
                elapsed.set(wall.get().elapsed().as_secs_f64() * 1e3);
            }
        })?;
        print_op_times(
            gpu,
            &format!("{} (batch {batch})", config.name),
            "pass",
            passes.max(1),
            elapsed.get(),
        )?;
    }
    Ok(())
}

/// The operations timed while profiling was on, over `repeats` repeats of a `unit` (a pass,
/// a step) that took `elapsed_ms` in all on the host's clock.
fn print_op_times(
    gpu: &flashslide::backend::cuda::CudaBackend,
    what: &str,
    unit: &str,
    repeats: usize,
    elapsed_ms: f64,
) -> Result<()> {
    let times = gpu.op_times()?;
    let per = repeats as f64;
    let busy: f64 = times.iter().map(|t| t.ms).sum::<f64>() / per;
    println!(
        "{what}: {:.2} ms a {unit}, operations {busy:.2} ms (CUDA events)",
        elapsed_ms / per
    );
    println!(
        "  {:<24} {:>7} {:>10} {:>7} {:>9}",
        "operation", "calls", "ms", "share", "TFLOP/s"
    );
    for t in &times {
        println!(
            "  {:<24} {:>7} {:>10.3} {:>6.1}% {:>9}",
            t.op,
            (t.calls as f64 / per).round(),
            t.ms / per,
            100.0 * t.ms / per / busy,
            t.tflops.map_or(String::new(), |f| format!("{f:.1}"))
        );
    }
    Ok(())
}

/// The bundled arms: the full-resolution model, its baselines at 2 and 8 µm/px, and the
/// one-image baseline (each slide one image of at most 1,024 pixels).
const BUNDLED_ARMS: [&str; 4] = [
    "models/flashslide-synth-v1",
    "models/flashslide-synth-v1-2um",
    "models/flashslide-synth-v1-8um",
    "models/flashslide-synth-v1-1024px",
];

fn bench_baseline<B: Backend>(
    backend: &B,
    cohort: &std::path::Path,
    out: &std::path::Path,
    models: &[PathBuf],
    quiet: bool,
) -> Result<ExitCode> {
    use flashslide::bench::baseline::{markdown, run_arm, write_outputs};
    use flashslide::model::Model;
    let mut arms = Vec::new();
    for dir in models {
        let model = Model::load(dir, backend)?;
        if !quiet {
            eprintln!(
                "{}: {} µm/px on {}",
                model.config.name,
                model.config.mpp,
                backend.describe()
            );
        }
        let arm = run_arm(&model, dir, cohort, out, &|done, total| {
            if !quiet {
                eprintln!("  {done}/{total} slides");
            }
        })?;
        for failure in &arm.failed {
            eprintln!("flashslide: {}: FAILED: {failure}", arm.name);
        }
        arms.push(arm);
    }
    write_outputs(out, &arms, cohort)?;
    print!("{}", markdown(&arms));
    let failed = arms.iter().any(|a| !a.failed.is_empty());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    match args.what {
        BenchCommand::Baseline {
            cohort,
            out,
            models,
            device,
            quiet,
        } => {
            let models = if models.is_empty() {
                BUNDLED_ARMS
                    .iter()
                    .map(PathBuf::from)
                    .filter(|p| p.is_dir())
                    .collect()
            } else {
                models
            };
            if models.is_empty() {
                anyhow::bail!(
                    "no models: none of {} is here; name them with --model",
                    BUNDLED_ARMS.join(", ")
                );
            }
            match device::open(device, quiet)? {
                Selected::Cpu(b) => bench_baseline(&b, &cohort, &out, &models, quiet),
                Selected::Cuda(b) => bench_baseline(&b, &cohort, &out, &models, quiet),
            }
        }
        BenchCommand::Encoder {
            configs,
            device,
            batch,
            batches,
            slide_tokens,
            profile,
        } => match device::open(device, false)? {
            Selected::Cpu(b) => bench_encoders(&b, &configs, batch, batches, slide_tokens),
            Selected::Cuda(b) => {
                let code = bench_encoders(&b, &configs, batch, batches, slide_tokens)?;
                if profile {
                    profile_encoders(&b, &configs, batch, batches)?;
                }
                Ok(code)
            }
        },
        BenchCommand::SlideTrain {
            config,
            tokens,
            steps,
            device,
            profile,
            json,
        } => {
            let (text, path) = match config {
                Some(path) => (
                    std::fs::read_to_string(&path).with_context(|| path.display().to_string())?,
                    path,
                ),
                None => (
                    super::train::BUNDLED_CONFIG.to_string(),
                    PathBuf::from("the bundled model"),
                ),
            };
            let model = flashslide::model::parse_config(&text, &path)?;
            let Some(slide) = model.slide_encoder else {
                anyhow::bail!("{} has no slide encoder", path.display());
            };
            let selected = device::open(device, json)?;
            for &n in &tokens {
                let r = match &selected {
                    Selected::Cpu(be) => time_steps(be, &slide, n, steps)?,
                    Selected::Cuda(be) => time_steps(be, &slide, n, steps)?,
                };
                if let (true, Selected::Cuda(be)) = (profile, &selected) {
                    be.profile_ops(true);
                    let profiled = time_steps(be, &slide, n, 1);
                    be.profile_ops(false);
                    // time_steps runs two warm-up steps and one timed: three under the events.
                    let profiled = profiled?;
                    print_op_times(
                        be,
                        &format!("{n} tokens"),
                        "step",
                        3,
                        profiled.median_seconds * 3e3,
                    )?;
                }
                if json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    println!(
                        "{n:>8} tokens: {:.4} s a step, {:.2} steps/s (loss {:.4})",
                        r.median_seconds, r.steps_per_second, r.last_loss
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::AttentionBackward {
            seq,
            batch,
            heads,
            head_dim,
            runs,
            json,
        } => {
            let Selected::Cuda(gpu) = device::open(DeviceChoice::Cuda, json)? else {
                anyhow::bail!("bench attention-backward times the CUDA kernels");
            };
            if !json {
                println!(
                    "{:>6} {:>8} {:>5} {:>4} {:>12} {:>12} {:>12} {:>12}",
                    "batch", "N", "heads", "d", "fwd ms", "fwd TFLOP/s", "bwd ms", "bwd TFLOP/s"
                );
            }
            for &d in &head_dim {
                for &n in &seq {
                    let r = gpu.bench_attention_backward(batch, n, heads, d, runs)?;
                    if json {
                        println!("{}", serde_json::to_string(&r)?);
                    } else {
                        println!(
                            "{:>6} {:>8} {:>5} {:>4} {:>12.3} {:>12.1} {:>12.3} {:>12.1}",
                            batch,
                            n,
                            heads,
                            d,
                            r.forward_ms,
                            r.forward_tflops,
                            r.backward_ms,
                            r.backward_tflops
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Attention {
            device,
            seq,
            batch,
            heads,
            head_dim,
            runs,
            naive_limit_gib,
            kernel,
            json,
        } => {
            if let Selected::Cuda(gpu) = device::open(device, json)? {
                let family = kernel.map(device::AttentionKernels::family);
                if let Some(family) = family {
                    let dims = family_head_dims(family);
                    if let Some(d) = head_dim.iter().find(|d| !dims.contains(d)) {
                        anyhow::bail!(
                            "--kernel {} has no kernel for head dim {d} (it has {dims:?}); without \
                             --kernel, flash_attn.cu's kernel runs at that head dim",
                            family.name()
                        );
                    }
                }
                gpu.use_attention_kernels(family)?;
                if !json {
                    println!(
                        "{:>6} {:>8} {:>5} {:>4} {:>11} {:>9} {:>10} {:>14}  kernel",
                        "batch", "N", "heads", "d", "median ms", "TFLOP/s", "io MiB", "extra bytes"
                    );
                }
                for &d in &head_dim {
                    for &n in &seq {
                        let r = gpu.bench_attention(batch, n, heads, d, runs.unwrap_or(20))?;
                        if json {
                            println!("{}", serde_json::to_string(&r)?);
                        } else {
                            println!(
                                "{:>6} {:>8} {:>5} {:>4} {:>11.3} {:>9.1} {:>10} {:>14}  {}",
                                batch,
                                n,
                                heads,
                                d,
                                r.median_ms,
                                r.tflops,
                                r.io_bytes >> 20,
                                r.extra_bytes,
                                r.kernel
                            );
                        }
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            if batch != 1 || kernel.is_some() {
                anyhow::bail!("--batch and --kernel time the CUDA kernels: add --device cuda");
            }
            let runs = runs.unwrap_or(3);
            if !json {
                println!(
                    "{:>7} {:>5} {:>4} {:>10} {:>9} {:>10} {:>8} {:>11} {:>12} {:>12}",
                    "N",
                    "heads",
                    "d",
                    "flash s",
                    "GFLOP/s",
                    "naive s",
                    "speedup",
                    "rel. error",
                    "RSS flash",
                    "RSS naive"
                );
            }
            let limit = (naive_limit_gib * (1u64 << 30) as f64) as u64;
            for &d in &head_dim {
                for &n in &seq {
                    let r = flashslide::bench::attention::bench_attention(n, heads, d, runs, limit);
                    if json {
                        println!("{}", serde_json::to_string(&r)?);
                        continue;
                    }
                    let mib = |b: Option<u64>| b.map_or("-".into(), |b| format!("{} MiB", b >> 20));
                    println!(
                        "{:>7} {:>5} {:>4} {:>10.3} {:>9.1} {:>10} {:>8} {:>11} {:>12} {:>12}",
                        n,
                        heads,
                        d,
                        r.flash_seconds,
                        r.flash_gflops,
                        r.naive_seconds.map_or("-".into(), |s| format!("{s:.3}")),
                        r.naive_seconds
                            .map_or("-".into(), |s| format!("{:.2}x", s / r.flash_seconds)),
                        r.relative_error.map_or("-".into(), |e| format!("{e:.1e}")),
                        mib(r.peak_rss_after_flash),
                        mib(r.peak_rss_after_naive),
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Read {
            slides,
            threads,
            passes,
            json,
        } => {
            if !json {
                println!(
                    "{:<48} {:>7} {:>6} {:>8} {:>9}",
                    "slide", "threads", "tiles", "MP", "MP/s"
                );
            }
            for slide in &slides {
                for &t in &threads {
                    let r = read_throughput(slide, t, passes)?;
                    if json {
                        println!("{}", serde_json::to_string(&r)?);
                    } else {
                        println!(
                            "{:<48} {:>7} {:>6} {:>8.1} {:>9.1}",
                            r.slide, r.threads, r.tiles, r.megapixels, r.megapixels_per_second
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
