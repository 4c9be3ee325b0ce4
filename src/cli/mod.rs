//! Command-line interface: argument definitions and one function per subcommand.

mod bench;
mod convert;
mod device;
mod embed;
mod evaluate;
mod info;
mod model_choice;
mod region;
mod run;
mod selftest;
mod serve;
mod synth;
mod train;
mod values;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "flashslide",
    version,
    about = "Whole-slide tumour detection at full resolution"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Find suspected tumour in slides: heatmaps, QuPath GeoJSON, probability TIFF, detections
    Run(run::RunArgs),
    /// Show a slide's vendor, levels, MPP (and its source), objective power and associated images
    Info(info::InfoArgs),
    /// Write one region of a slide as an RGBA PNG
    Region(region::RegionArgs),
    /// Features of every tissue tile of a slide (or of one image) with the tile encoder
    Embed(embed::EmbedArgs),
    /// Generate synthetic H&E lymph-node slides with tumour ground truth
    Synth(synth::SynthArgs),
    /// Train both stages on annotated slides; ends with a model directory `run` takes
    Train(train::TrainArgs),
    /// Convert a foundation model's checkpoint (timm, transformers ViT, open_clip trunk) into a model directory
    Convert(convert::ConvertArgs),
    /// Score run outputs against ground truth: CAMELYON16 FROC, sensitivity by lesion size, AUROC
    Evaluate(evaluate::EvaluateArgs),
    /// Benchmarks: reader throughput, attention (CPU or GPU), tile encoder
    Bench(bench::BenchArgs),
    /// Check the GPU backend against the CPU reference on random inputs
    Selftest(selftest::SelftestArgs),
    /// Serve a run's outputs: index.html, and each slide zoomable with its heatmap, regions and detections
    Serve(serve::ServeArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Info(a) => info::run(a),
        Command::Region(a) => region::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Train(a) => train::run(a),
        Command::Selftest(a) => selftest::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Serve(a) => serve::run(a),
    }
}
