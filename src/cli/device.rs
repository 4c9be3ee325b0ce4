//! `--device auto|cpu|cuda`, shared by the commands that compute.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use flashslide::backend::cuda::kernels::KernelFamily;
use flashslide::backend::{select, DeviceChoice, Selected};

/// Parses `--device` into the library's [`DeviceChoice`], listing each value with its meaning
/// in `--help`.
pub fn parser() -> impl TypedValueParser<Value = DeviceChoice> {
    PossibleValuesParser::new(DeviceChoice::ALL.map(|d| PossibleValue::new(d.name()).help(d.meaning())))
        .map(|name| DeviceChoice::from_name(&name).expect("clap accepts only the listed names"))
}

/// Opens the device asked for. With `auto` and no usable CUDA, one line on stderr says why
/// and the CPU is used; with `cuda` and no usable CUDA, the error (exit code 2).
pub fn open(choice: DeviceChoice, quiet: bool) -> anyhow::Result<Selected> {
    let (selected, fallback) = select(choice)?;
    if let (Some(why), false) = (fallback, quiet) {
        eprintln!("flashslide: running on the CPU ({why})");
    }
    Ok(selected)
}

/// `--kernel`: an attention kernel family, for `bench attention` and `selftest` on a GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttentionKernels {
    Mma,
    Wgmma,
    WgmmaPipelined,
    WgmmaTma,
    WgmmaTmaPersistent,
}

impl AttentionKernels {
    pub fn family(self) -> KernelFamily {
        match self {
            AttentionKernels::Mma => KernelFamily::MmaSync,
            AttentionKernels::Wgmma => KernelFamily::Wgmma,
            AttentionKernels::WgmmaPipelined => KernelFamily::WgmmaPipelined,
            AttentionKernels::WgmmaTma => KernelFamily::WgmmaTma,
            AttentionKernels::WgmmaTmaPersistent => KernelFamily::WgmmaTmaPersistent,
        }
    }
}
