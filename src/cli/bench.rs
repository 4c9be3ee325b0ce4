use anyhow::Result;
use clap::{Args, Subcommand};
use flashslide::bench::read::read_throughput;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
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

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    match args.what {
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
