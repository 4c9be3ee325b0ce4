//! The `flashslide` command: parses arguments, dispatches, maps errors to exit codes
//! (0 ok, 1 some slides failed, 2 bad usage or unusable input).

mod cli;

use clap::Parser;
use std::process::ExitCode;

// Slide reading allocates and frees many tile-sized buffers (hundreds of KB to MBs); the
// system allocator maps and unmaps each from the kernel, which cost half the read time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "flashslide: {}",
                flashslide::util::errors::with_causes(e.as_ref())
            );
            ExitCode::from(2)
        }
    }
}
