//! `--device auto|cpu|cuda`, shared by the commands that compute.

use clap::ValueEnum;
use flashslide::backend::{select, DeviceChoice, Selected};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Device {
    /// A CUDA GPU when one is usable, else the CPU
    Auto,
    Cpu,
    Cuda,
}

/// Opens the device asked for. With `auto` and no usable CUDA, one line on stderr says why
/// and the CPU is used; with `cuda` and no usable CUDA, the error (exit code 2).
pub fn open(device: Device, quiet: bool) -> anyhow::Result<Selected> {
    let choice = match device {
        Device::Auto => DeviceChoice::Auto,
        Device::Cpu => DeviceChoice::Cpu,
        Device::Cuda => DeviceChoice::Cuda,
    };
    match select(choice) {
        Ok((selected, fallback)) => {
            if let (Some(why), false) = (fallback, quiet) {
                eprintln!("flashslide: running on the CPU ({why})");
            }
            Ok(selected)
        }
        Err(e) => Err(e.into()),
    }
}
