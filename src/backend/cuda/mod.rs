//! The CUDA backend: bf16 activations and weights on the GPU, GEMMs through cuBLAS (bf16 in,
//! f32 accumulation), the other operations as our own kernels (kernels/*.cu) compiled at run
//! time by NVRTC, attention through kernels/flash_attn.cu.
//!
//! CUDA is loaded at run time (cudarc's dynamic loading): a machine without the driver,
//! NVRTC or cuBLAS gets a [`CudaUnavailable`] saying which is missing, never a panic.

// Before the modules: they launch kernels with it.
/// Launches `$function` on `$stream` over `$cfg` with the arguments given, after checking
/// them against the kernel's `$signature` from kernels/*.cu (kernels.rs); maps errors.
macro_rules! launch_on {
    ($stream:expr, $function:expr, $signature:expr, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        $signature
            .check(&[$($crate::backend::cuda::kernels::LaunchArg::kind(&$arg)),+])
            .map_err(|e| BackendError::Device(e.to_string()))?;
        let mut b = $stream.launch_builder($function);
        $( b.arg($arg); )+
        // SAFETY: the arguments match the kernel's signature (checked above), and every
        // buffer holds what the launch reads and writes (checked by the callers).
        unsafe { b.launch($cfg) }.map(|_| ()).map_err(device_err)
    }};
}

/// Launches the backend's kernel `$name` on its stream (see [`launch_on`]).
macro_rules! launch {
    ($be:expr, $name:expr, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let (function, signature) = $be.function($name);
        launch_on!($be.inner.stream, function, signature, $cfg, $($arg),+)
    }};
}

pub mod attention;
mod attention_backward;
mod bench;
mod context;
mod gemm;
mod grad;
pub mod kernel_check;
pub mod kernels;
mod nvjpeg;
pub mod nvrtc;
mod ops;
mod pixels;
mod profile;
mod tile_decoder;
mod upload;

pub use attention_backward::HEAD_DIMS as TRAINING_HEAD_DIMS;
pub use bench::GpuAttentionRun;
pub use pixels::CudaPixels;
pub use profile::OpTime;

use crate::backend::BackendError;
use context::Inner;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use half::bf16;
use std::sync::Arc;

/// Why the CUDA backend cannot run here.
#[derive(Debug, thiserror::Error)]
#[error("CUDA is not usable: {0}")]
pub struct CudaUnavailable(pub String);

#[derive(Clone)]
pub struct CudaBackend {
    inner: Arc<Inner>,
}

/// A `[rows, cols]` matrix on the GPU: bf16, or f32 for the residual stream (the output of
/// `add` and `prepend_and_position`). Clones share the buffer: operations never write their
/// inputs.
#[derive(Clone)]
pub struct CudaTensor {
    data: Storage,
    rows: usize,
    cols: usize,
}

#[derive(Clone)]
enum Storage {
    Bf16(Arc<CudaSlice<bf16>>),
    F32(Arc<CudaSlice<f32>>),
}

impl Storage {
    /// The buffer's device address, and the suffix of the kernel version that reads its type.
    fn pointer(&self, stream: &CudaStream) -> (u64, &'static str) {
        // The guard cudarc returns records an event only with event tracking, which is off.
        match self {
            Storage::Bf16(d) => (d.device_ptr(stream).0, "bf16"),
            Storage::F32(d) => (d.device_ptr(stream).0, "f32"),
        }
    }
}

/// Positions prepared on the GPU.
pub struct CudaPositions {
    positions: CudaSlice<f32>,
    rope_log2_base: Option<f32>,
    /// Per-head ALiBi slopes times log2 e, when the bias is on.
    slopes_log2: Option<CudaSlice<f32>>,
}

fn device_err(e: impl std::fmt::Debug) -> BackendError {
    BackendError::Device(format!("CUDA: {e:?}"))
}
