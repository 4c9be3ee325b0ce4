//! The CUDA backend: bf16 activations and weights on the GPU, GEMMs through cuBLAS (bf16 in,
//! f32 accumulation), the other operations as our own kernels (kernels/*.cu) compiled at run
//! time by NVRTC, attention through kernels/flash_attn.cu.
//!
//! CUDA is loaded at run time (cudarc's dynamic loading): a machine without the driver,
//! NVRTC or cuBLAS gets a [`CudaUnavailable`] saying which is missing, never a panic.

pub mod attention;
mod bench;
pub mod kernel_check;
mod nvjpeg;
pub mod nvrtc;
mod tile_decoder;

pub use bench::GpuAttentionRun;
pub use tile_decoder::CudaPixels;

use super::{Backend, PositionSpec, TileDecoder};
use crate::backend::BackendError;
use cudarc::cublas::{sys as blas_sys, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{
    sys as driver_sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig,
    PushKernelArg,
};
use half::bf16;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tile_decoder::{JpegDecoder, SharedJpegDecoder};

/// Why the CUDA backend cannot run here.
#[derive(Debug, thiserror::Error)]
#[error("CUDA is not usable: {0}")]
pub struct CudaUnavailable(pub String);

#[derive(Clone)]
pub struct CudaBackend {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    functions: HashMap<&'static str, CudaFunction>,
    description: String,
    /// Keeps the modules the functions came from loaded.
    _modules: Vec<Arc<CudaModule>>,
    /// Attention block tables of recent packed batches (a forward pass reuses one per layer).
    block_tables: attention::BlockTables,
    /// The JPEG decoders, each set once opened (on first use); why not where nvJPEG is
    /// unusable.
    jpeg: Arc<[OnceLock<JpegDecoderOrWhyNot>; JPEG_DECODERS]>,
    /// The thread starting it, joined before the context goes: a process must not exit
    /// while nvJPEG is starting.
    jpeg_starting: Mutex<Option<std::thread::JoinHandle<()>>>,
}

type JpegDecoderOrWhyNot = Result<Mutex<JpegDecoder>, String>;

/// JPEG decoders, each for a thread of its own: one thread feeds the JPEG engines about
/// 45,000 256-px tiles a second (its calls parse the streams on the CPU), fewer than an
/// H200's engines and encoder take.
const JPEG_DECODERS: usize = 3;

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(starting) = self.jpeg_starting.get_mut().ok().and_then(Option::take) {
            let _ = starting.join();
        }
    }
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

impl CudaBackend {
    /// Opens GPU `ordinal`, compiling (or taking from the cache) every kernel for it.
    pub fn open(ordinal: usize) -> Result<CudaBackend, CudaUnavailable> {
        let missing = |what: &str| CudaUnavailable(format!("{what} was not found on the library path"));
        // SAFETY: these only try to open the libraries; cudarc panics on first use otherwise.
        unsafe {
            if !driver_sys::is_culib_present() {
                return Err(missing("libcuda (the NVIDIA driver)"));
            }
            if !blas_sys::is_culib_present() {
                return Err(missing("libcublas"));
            }
        }
        if !nvrtc::present() {
            return Err(missing("libnvrtc (CUDA's run-time compiler)"));
        }
        let fail = |e: &dyn std::fmt::Debug| CudaUnavailable(format!("{e:?}"));
        let count = CudaContext::device_count().map_err(|e| fail(&e))?;
        if count <= 0 {
            return Err(CudaUnavailable("no CUDA device is visible".into()));
        }
        if ordinal >= count as usize {
            return Err(CudaUnavailable(format!(
                "there is no CUDA device {ordinal} ({count} visible)"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| fail(&e))?;
        // One stream orders everything, so cudarc's per-buffer events are not needed (the
        // JPEG decoder's own stream hands its buffers over finished: tile_decoder.rs).
        // SAFETY: no buffer exists yet, and every buffer is used on this one stream.
        unsafe { ctx.disable_event_tracking() };
        // Not the legacy default stream, which would wait for (and hold up) the decoder's.
        let stream = ctx.new_stream().map_err(|e| fail(&e))?;
        let blas = CudaBlas::new(stream.clone()).map_err(|e| fail(&e))?;
        let (major, minor) = ctx.compute_capability().map_err(|e| fail(&e))?;
        if major < 8 {
            return Err(CudaUnavailable(format!(
                "the GPU has compute capability {major}.{minor}; flashslide's kernels need 8.0 (Ampere) or newer"
            )));
        }
        let arch = match (major, minor) {
            (9, 0) => "sm_90a".to_string(),
            _ => format!("sm_{major}{minor}"),
        };
        let mut driver = 0;
        // SAFETY: one out-parameter.
        unsafe { driver_sys::cuDriverGetVersion(&mut driver) }
            .result()
            .map_err(|e| fail(&e))?;
        let mut functions = HashMap::new();
        let mut modules = Vec::new();
        for file in nvrtc::kernel_files() {
            let cubin =
                nvrtc::compile_cached(file, &arch, driver).map_err(|e| CudaUnavailable(e.to_string()))?;
            let module = ctx
                .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
                .map_err(|e| fail(&e))?;
            for &name in KERNELS
                .iter()
                .filter(|(f, _)| *f == file)
                .flat_map(|(_, names)| names.iter())
            {
                let f = module.load_function(name).map_err(|e| fail(&e))?;
                functions.insert(name, f);
            }
            modules.push(module);
        }
        attention::configure(&functions).map_err(|e| fail(&e))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let description = format!(
            "cuda:{ordinal} {name} (compute {major}.{minor}, {arch}, driver {}.{})",
            driver / 1000,
            driver % 1000 / 10
        );
        Ok(CudaBackend {
            inner: Arc::new(Inner {
                ctx,
                stream,
                blas,
                functions,
                description,
                _modules: modules,
                block_tables: Default::default(),
                jpeg: Default::default(),
                jpeg_starting: Mutex::new(None),
            }),
        })
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    /// Opens the JPEG decoders in the background, each usable as soon as it is open.
    fn start_jpeg_decoders(&self) {
        let inner = &self.inner;
        let (ctx, compute, assemble) = (
            inner.ctx.clone(),
            inner.stream.clone(),
            self.function("assemble_tiles").clone(),
        );
        let cells = inner.jpeg.clone();
        let open = move || {
            let nvjpeg = match JpegDecoder::start(&ctx) {
                Ok(n) => n,
                Err(why) => return cells.iter().for_each(|c| drop(c.set(Err(why.clone())))),
            };
            for cell in cells.iter() {
                let _ = cell.set(JpegDecoder::open(&nvjpeg, &ctx, &compute, &assemble).map(Mutex::new));
            }
        };
        if let Ok(mut starting) = inner.jpeg_starting.lock() {
            if starting.is_none() && inner.jpeg[0].get().is_none() {
                *starting = Some(std::thread::spawn(open));
            }
        }
    }

    /// Why tiles are decoded on the CPU with this GPU, if they are (no libnvjpeg, say).
    /// Waits for the decoder to start.
    pub fn tile_decoding_unavailable(&self) -> Option<String> {
        self.start_jpeg_decoders();
        let starting = self.inner.jpeg_starting.lock().ok().and_then(|mut s| s.take());
        if let Some(starting) = starting {
            let _ = starting.join();
        }
        self.inner.jpeg[0].get().and_then(|r| r.as_ref().err().cloned())
    }

    /// Bytes of device memory (free, total).
    pub fn memory(&self) -> Result<(usize, usize), BackendError> {
        self.inner.ctx.mem_get_info().map_err(device_err)
    }

    fn function(&self, name: &str) -> &CudaFunction {
        &self.inner.functions[name]
    }

    /// A buffer of `n` values every element of which the next kernel writes.
    fn alloc<T: cudarc::driver::DeviceRepr>(&self, n: usize) -> Result<CudaSlice<T>, BackendError> {
        // SAFETY: callers launch a kernel writing all `n` elements before any read.
        unsafe { self.inner.stream.alloc::<T>(n.max(1)) }.map_err(device_err)
    }

    fn upload_raw<T: cudarc::driver::DeviceRepr>(&self, data: &[T]) -> Result<CudaSlice<T>, BackendError> {
        self.inner.stream.clone_htod(data).map_err(device_err)
    }

    fn tensor(&self, data: CudaSlice<bf16>, rows: usize, cols: usize) -> CudaTensor {
        CudaTensor {
            data: Storage::Bf16(Arc::new(data)),
            rows,
            cols,
        }
    }

    fn tensor_f32(&self, data: CudaSlice<f32>, rows: usize, cols: usize) -> CudaTensor {
        CudaTensor {
            data: Storage::F32(Arc::new(data)),
            rows,
            cols,
        }
    }

    /// `x`'s values in bf16: its own buffer, or a rounded copy of an f32 one.
    fn bf16_data(&self, x: &CudaTensor) -> Result<Arc<CudaSlice<bf16>>, BackendError> {
        match &x.data {
            Storage::Bf16(d) => Ok(d.clone()),
            Storage::F32(d) => {
                let n = x.rows * x.cols;
                let mut out = self.alloc::<bf16>(n)?;
                let n64 = n as i64;
                launch!(self, "to_bf16", Self::elementwise(n), &**d, &mut out, &n64)?;
                Ok(Arc::new(out))
            }
        }
    }

    /// Enough blocks of 256 threads for `n` elements of a grid-stride kernel.
    fn elementwise(n: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (n.div_ceil(256).clamp(1, 65_536 * 8) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// Kernel functions by file.
const KERNELS: &[(&str, &[&str])] = &[
    (
        "layers.cu",
        &[
            "bias_act",
            "gelu",
            "swiglu",
            "add_f32_bf16",
            "add_bf16_bf16",
            "add_f32_f32",
            "to_bf16",
            "scale_columns",
            "layer_norm_bf16",
            "layer_norm_f32",
            "patchify",
            "prepend_and_position",
            "mean_rows_bf16",
            "mean_rows_f32",
            "group_tokens_bf16",
            "group_tokens_f32",
            "rope_2d",
        ],
    ),
    ("flash_attn.cu", attention::FUNCTIONS),
    ("tiles.cu", &["assemble_tiles"]),
];

/// Launches `$name` over `$cfg` with the arguments given, mapping errors.
macro_rules! launch {
    ($be:expr, $name:expr, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let f = $be.function($name);
        let mut b = $be.inner.stream.launch_builder(f);
        $( b.arg($arg); )+
        // SAFETY: each kernel's arguments match its signature in kernels/*.cu, and every
        // buffer holds what the launch reads and writes (checked by the callers).
        unsafe { b.launch($cfg) }.map(|_| ()).map_err(device_err)
    }};
}
pub(crate) use launch;

impl Backend for CudaBackend {
    type Tensor = CudaTensor;
    type Positions = CudaPositions;
    type Pixels = CudaPixels;

    fn describe(&self) -> String {
        self.inner.description.clone()
    }

    fn memory_in_use(&self) -> Option<u64> {
        self.memory().ok().map(|(free, total)| (total - free) as u64)
    }

    fn upload(&self, data: &[f32], rows: usize, cols: usize) -> Result<CudaTensor, BackendError> {
        assert_eq!(data.len(), rows * cols, "upload of [{rows}, {cols}]");
        let host: Vec<bf16> = data.iter().map(|&x| bf16::from_f32(x)).collect();
        Ok(self.tensor(self.upload_raw(&host)?, rows, cols))
    }

    fn download(&self, x: &CudaTensor) -> Result<Vec<f32>, BackendError> {
        let n = x.rows * x.cols;
        let stream = &self.inner.stream;
        Ok(match &x.data {
            Storage::Bf16(d) => stream.clone_dtoh(&**d).map_err(device_err)?[..n]
                .iter()
                .map(|v| v.to_f32())
                .collect(),
            Storage::F32(d) => {
                let mut v = stream.clone_dtoh(&**d).map_err(device_err)?;
                v.truncate(n);
                v
            }
        })
    }

    fn shape(&self, x: &CudaTensor) -> (usize, usize) {
        (x.rows, x.cols)
    }

    fn linear(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: Option<&CudaTensor>,
    ) -> Result<CudaTensor, BackendError> {
        let y = self.matmul_transposed(x, w)?;
        if let Some(b) = b {
            self.bias_act(&y, b, false)?;
        }
        Ok(y)
    }

    fn linear_gelu(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
    ) -> Result<CudaTensor, BackendError> {
        let y = self.matmul_transposed(x, w)?;
        self.bias_act(&y, b, true)?;
        Ok(y)
    }

    fn layer_norm(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
        eps: f64,
    ) -> Result<CudaTensor, BackendError> {
        let mut out = self.alloc::<bf16>(x.rows * x.cols)?;
        let cfg = LaunchConfig {
            grid_dim: (x.rows.div_ceil(8).clamp(1, 1 << 20) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let (rows, cols, eps) = (x.rows as i64, x.cols as i32, eps as f32);
        let (w, b) = (self.bf16_data(w)?, self.bf16_data(b)?);
        match &x.data {
            Storage::Bf16(d) => launch!(
                self,
                "layer_norm_bf16",
                cfg,
                &**d,
                &*w,
                &*b,
                &mut out,
                &rows,
                &cols,
                &eps
            )?,
            Storage::F32(d) => launch!(
                self,
                "layer_norm_f32",
                cfg,
                &**d,
                &*w,
                &*b,
                &mut out,
                &rows,
                &cols,
                &eps
            )?,
        }
        Ok(self.tensor(out, x.rows, x.cols))
    }

    fn gelu(&self, x: &CudaTensor) -> Result<CudaTensor, BackendError> {
        let n = x.rows * x.cols;
        let mut out = self.alloc::<bf16>(n)?;
        let n64 = n as i64;
        let x_data = self.bf16_data(x)?;
        launch!(self, "gelu", Self::elementwise(n), &*x_data, &mut out, &n64)?;
        Ok(self.tensor(out, x.rows, x.cols))
    }

    fn swiglu(&self, x: &CudaTensor) -> Result<CudaTensor, BackendError> {
        let half = x.cols / 2;
        let mut out = self.alloc::<bf16>(x.rows * half)?;
        let (rows, h) = (x.rows as i64, half as i32);
        let x_data = self.bf16_data(x)?;
        launch!(
            self,
            "swiglu",
            Self::elementwise(x.rows * half),
            &*x_data,
            &mut out,
            &rows,
            &h
        )?;
        Ok(self.tensor(out, x.rows, half))
    }

    fn add(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor, BackendError> {
        if (a.rows, a.cols) != (b.rows, b.cols) {
            return Err(BackendError::Input(format!(
                "add of [{}, {}] and [{}, {}]",
                a.rows, a.cols, b.rows, b.cols
            )));
        }
        let n = a.rows * a.cols;
        let mut out = self.alloc::<f32>(n)?;
        let (n64, cfg) = (n as i64, Self::elementwise(n));
        // The kernels take (f32, bf16), (bf16, bf16) or (f32, f32); addition commutes.
        let (a, b) = match (&a.data, &b.data) {
            (Storage::Bf16(_), Storage::F32(_)) => (b, a),
            _ => (a, b),
        };
        let stream = &self.inner.stream;
        let ((a_ptr, a_ty), (b_ptr, b_ty)) = (a.data.pointer(stream), b.data.pointer(stream));
        let name = format!("add_{a_ty}_{b_ty}");
        launch!(self, &name, cfg, &a_ptr, &b_ptr, &mut out, &n64)?;
        Ok(self.tensor_f32(out, a.rows, a.cols))
    }

    fn scale_columns(&self, x: &CudaTensor, gamma: &CudaTensor) -> Result<CudaTensor, BackendError> {
        let n = x.rows * x.cols;
        let mut out = self.alloc::<bf16>(n)?;
        let (rows, cols) = (x.rows as i64, x.cols as i32);
        let (x_data, gamma) = (self.bf16_data(x)?, self.bf16_data(gamma)?);
        launch!(
            self,
            "scale_columns",
            Self::elementwise(n),
            &*x_data,
            &*gamma,
            &mut out,
            &rows,
            &cols
        )?;
        Ok(self.tensor(out, x.rows, x.cols))
    }

    fn concat_rows(&self, parts: &[CudaTensor]) -> Result<CudaTensor, BackendError> {
        let cols = parts.first().map_or(0, |p| p.cols);
        if parts.iter().any(|p| p.cols != cols) {
            return Err(BackendError::Input(
                "concat of matrices of different widths".into(),
            ));
        }
        let rows: usize = parts.iter().map(|p| p.rows).sum();
        let mut out = self.alloc::<bf16>(rows * cols)?;
        let mut at = 0;
        for p in parts {
            let n = p.rows * cols;
            let data = self.bf16_data(p)?;
            self.inner
                .stream
                .memcpy_dtod(&data.slice(..n), &mut out.slice_mut(at..at + n))
                .map_err(device_err)?;
            at += n;
        }
        Ok(self.tensor(out, rows, cols))
    }

    fn upload_pixels(&self, rgb: Vec<u8>) -> Result<CudaPixels, BackendError> {
        Ok(CudaPixels::uploaded(self.upload_raw(&rgb)?, rgb.len()))
    }

    fn pixel_bytes(&self, pixels: &CudaPixels) -> usize {
        pixels.len()
    }

    fn download_pixels(&self, pixels: &CudaPixels) -> Result<Vec<u8>, BackendError> {
        let mut host = self.inner.stream.clone_dtoh(pixels.data()).map_err(device_err)?;
        host.truncate(pixels.len());
        Ok(host)
    }

    fn prepare_tile_decoder(&self) {
        self.start_jpeg_decoders();
    }

    fn tile_decoders(&self) -> Vec<Box<dyn TileDecoder<CudaPixels>>> {
        self.start_jpeg_decoders();
        if let Some(Err(_)) = self.inner.jpeg[0].get() {
            return Vec::new();
        }
        (0..JPEG_DECODERS)
            .map(|index| {
                let backend = self.clone();
                Box::new(SharedJpegDecoder { backend, index }) as Box<dyn TileDecoder<CudaPixels>>
            })
            .collect()
    }

    fn patchify(
        &self,
        rgb: &CudaPixels,
        batch: usize,
        side: usize,
        patch: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<CudaTensor, BackendError> {
        let pixels = rgb.data();
        let (rows, cols) = (batch * (side / patch).pow(2), 3 * patch * patch);
        let mut out = self.alloc::<bf16>(rows * cols)?;
        let (b, s, p) = (batch as i32, side as i32, patch as i32);
        launch!(
            self,
            "patchify",
            Self::elementwise(rows * cols),
            pixels,
            &mut out,
            &b,
            &s,
            &p,
            &mean[0],
            &mean[1],
            &mean[2],
            &std[0],
            &std[1],
            &std[2]
        )?;
        Ok(self.tensor(out, rows, cols))
    }

    fn prepend_and_position(
        &self,
        patches: &CudaTensor,
        batch: usize,
        prefix: Option<&CudaTensor>,
        position: &CudaTensor,
    ) -> Result<CudaTensor, BackendError> {
        let (n, d) = (patches.rows / batch, patches.cols);
        let p = prefix.map_or(0, |t| t.rows);
        let rows = batch * (p + n);
        let mut out = self.alloc::<f32>(rows * d)?;
        let (patches, position) = (self.bf16_data(patches)?, self.bf16_data(position)?);
        // Without prefix tokens the kernel never reads `prefix`; the position embedding
        // stands in as a valid pointer.
        let prefix_data = match prefix {
            Some(t) => self.bf16_data(t)?,
            None => position.clone(),
        };
        let (b, n32, p32, d32) = (batch as i32, n as i32, p as i32, d as i32);
        launch!(
            self,
            "prepend_and_position",
            Self::elementwise(rows * d),
            &*patches,
            &*prefix_data,
            &*position,
            &mut out,
            &b,
            &n32,
            &p32,
            &d32
        )?;
        Ok(self.tensor_f32(out, rows, d))
    }

    fn mean_rows(
        &self,
        x: &CudaTensor,
        seqs: usize,
        start: usize,
        count: usize,
    ) -> Result<CudaTensor, BackendError> {
        let mut out = self.alloc::<bf16>(seqs * x.cols)?;
        let (s, len, st, c, d) = (
            seqs as i32,
            (x.rows / seqs) as i64,
            start as i64,
            count as i64,
            x.cols as i32,
        );
        let (x_ptr, ty) = x.data.pointer(&self.inner.stream);
        let name = format!("mean_rows_{ty}");
        launch!(
            self,
            &name,
            Self::elementwise(seqs * x.cols),
            &x_ptr,
            &mut out,
            &s,
            &len,
            &st,
            &c,
            &d
        )?;
        Ok(self.tensor(out, seqs, x.cols))
    }

    fn group_tokens(
        &self,
        x: &CudaTensor,
        seqs: usize,
        prefix: usize,
        side: usize,
        k: usize,
    ) -> Result<CudaTensor, BackendError> {
        let g = side / k;
        let rows = seqs * g * g;
        let mut out = self.alloc::<bf16>(rows * x.cols)?;
        let (s, len, p, sd, k32, d) = (
            seqs as i32,
            (x.rows / seqs) as i32,
            prefix as i32,
            side as i32,
            k as i32,
            x.cols as i32,
        );
        let (x_ptr, ty) = x.data.pointer(&self.inner.stream);
        let name = format!("group_tokens_{ty}");
        launch!(
            self,
            &name,
            Self::elementwise(rows * x.cols),
            &x_ptr,
            &mut out,
            &s,
            &len,
            &p,
            &sd,
            &k32,
            &d
        )?;
        Ok(self.tensor(out, rows, x.cols))
    }

    fn prepare_positions(
        &self,
        spec: PositionSpec,
        heads: usize,
        _head_dim: usize,
    ) -> Result<CudaPositions, BackendError> {
        let flat: Vec<f32> = spec.positions.iter().flatten().copied().collect();
        let slopes = if spec.alibi {
            let s: Vec<f32> = crate::backend::cpu::attention::alibi_slopes(heads)
                .iter()
                .map(|s| s * std::f32::consts::LOG2_E)
                .collect();
            Some(self.upload_raw(&s)?)
        } else {
            None
        };
        Ok(CudaPositions {
            positions: self.upload_raw(&flat)?,
            rope_log2_base: spec.rope_base.map(|b| b.log2() as f32),
            slopes_log2: slopes,
        })
    }

    fn attention(
        &self,
        qkv: &CudaTensor,
        offsets: &[usize],
        heads: usize,
        head_dim: usize,
        positions: Option<&CudaPositions>,
    ) -> Result<CudaTensor, BackendError> {
        attention::packed_attention(self, qkv, offsets, heads, head_dim, positions)
    }
}

impl CudaBackend {
    /// `x · wᵀ` through cuBLAS: x `[rows, in]`, w `[out, in]`, both row-major, which in
    /// cuBLAS's column-major terms is yᵀ `[out, rows]` = w (wᵀ stored, transposed) · xᵀ.
    fn matmul_transposed(&self, x: &CudaTensor, w: &CudaTensor) -> Result<CudaTensor, BackendError> {
        if x.cols != w.cols {
            return Err(BackendError::Input(format!(
                "matmul of [{}, {}] by [{}, {}]ᵀ",
                x.rows, x.cols, w.rows, w.cols
            )));
        }
        let (rows, inner, out_cols) = (x.rows, x.cols, w.rows);
        let mut y = self.alloc::<bf16>(rows * out_cols)?;
        let cfg = GemmConfig {
            transa: blas_sys::cublasOperation_t::CUBLAS_OP_T,
            transb: blas_sys::cublasOperation_t::CUBLAS_OP_N,
            m: out_cols as i32,
            n: rows as i32,
            k: inner as i32,
            alpha: bf16::ONE,
            lda: inner as i32,
            ldb: inner as i32,
            beta: bf16::ZERO,
            ldc: out_cols as i32,
        };
        let (w, x) = (self.bf16_data(w)?, self.bf16_data(x)?);
        // SAFETY: the dimensions above match the buffers' sizes.
        unsafe { self.inner.blas.gemm(cfg, &*w, &*x, &mut y) }.map_err(device_err)?;
        Ok(self.tensor(y, rows, out_cols))
    }

    /// `x += bias` per column, then GELU if asked, in place: `x` is a fresh matmul output
    /// no other tensor shares yet.
    fn bias_act(&self, x: &CudaTensor, bias: &CudaTensor, gelu: bool) -> Result<(), BackendError> {
        let n = x.rows * x.cols;
        let (rows, cols, act) = (x.rows as i64, x.cols as i32, gelu as i32);
        // The buffer is written through a shared handle: sound because the caller owns the
        // only other reference and reads it only after this launch, on the same stream.
        let (data, bias) = (self.bf16_data(x)?, self.bf16_data(bias)?);
        launch!(
            self,
            "bias_act",
            Self::elementwise(n),
            &*data,
            &*bias,
            &rows,
            &cols,
            &act
        )
    }
}
