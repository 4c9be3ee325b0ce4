//! `flashslide serve`: a run's outputs in the browser, each slide zoomable with its heatmap.

use anyhow::Result;
use clap::Args;
use flashslide::serve::{run as serve, ServeOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A run's output folder (its index.html and one folder a slide)
    out: PathBuf,
    /// Folders to search for slides moved or copied since the run (found by their size and
    /// the hashes of their first and last MiB)
    #[arg(long, num_args = 1..)]
    slides: Vec<PathBuf>,
    /// Address to listen on: loopback unless you mean to share the results on a network
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Port (0: any free one, printed)
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Connections served at once
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    serve(ServeOptions {
        out: args.out,
        slides: args.slides,
        bind: args.bind,
        port: args.port,
        threads: args.threads as usize,
    })?;
    Ok(ExitCode::SUCCESS)
}
