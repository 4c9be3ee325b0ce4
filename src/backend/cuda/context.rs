//! The CUDA context of a backend: the device opened, its libraries found, every kernel
//! compiled (or taken from the cache) and loaded, the JPEG decoders started in the
//! background, and the buffer helpers the operations share.

use super::kernels::KernelSignature;
use super::nvjpeg::NvjpegError;
use super::tile_decoder::JpegDecoder;
use super::{attention, device_err, nvrtc, CudaBackend, CudaTensor, CudaUnavailable, Storage};
use crate::backend::BackendError;
use cudarc::cublas::sys as blas_sys;
use cudarc::driver::{
    sys as driver_sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtrMut,
    LaunchConfig, PushKernelArg,
};
use half::bf16;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub(super) struct Inner {
    pub(super) ctx: Arc<CudaContext>,
    pub(super) stream: Arc<CudaStream>,
    pub(super) gemms: super::gemm::Gemms,
    /// cuBLAS, for training's backward GEMMs (transposed operands, f32 out): made on first use.
    blas: OnceLock<Result<cudarc::cublas::CudaBlas, String>>,
    /// Host tiles' way to the GPU, on a stream of its own.
    pub(super) uploader: Mutex<super::upload::Uploader>,
    /// Page-locked memory that host tensors (a training crop's features) are converted into
    /// and copied from on the compute stream.
    pub(super) tensor_staging: Mutex<super::upload::Staging<half::bf16>>,
    functions: HashMap<&'static str, (CudaFunction, &'static KernelSignature)>,
    pub(super) description: String,
    /// Each operation's CUDA events while profiling (`profile_ops`).
    pub(super) spans: super::profile::Spans,
    /// Events at the starts (true) and ends of batches, for `idle_seconds`.
    pub(super) batch_marks: Mutex<Vec<(bool, cudarc::driver::CudaEvent)>>,
    /// Keeps the modules the functions came from loaded.
    _modules: Vec<Arc<CudaModule>>,
    /// Attention block tables of recent packed batches (a forward pass reuses one per layer).
    pub(super) block_tables: attention::BlockTables,
    /// Whether the GPU runs sm_90a code (Hopper), where flash_attn_sm90.cu's kernels exist.
    pub(super) hopper: bool,
    /// Its streaming multiprocessors (SMs): how many blocks of a kernel run at once.
    pub(super) multiprocessors: usize,
    /// The attention kernels used where they take the head dim: those asked for by `bench
    /// attention --kernel` and `selftest`, else (`None`) the GPU's choice for each launch.
    pub(super) attention_family: Mutex<Option<super::kernels::KernelFamily>>,
    /// New buffers filled with NaN ([`CudaBackend::poison_new_buffers`]).
    pub(super) poison: std::sync::atomic::AtomicBool,
    /// The JPEG decoders, each set once opened (on first use); why not where nvJPEG is
    /// unusable.
    pub(super) jpeg: Arc<[OnceLock<JpegDecoderOrWhyNot>; JPEG_DECODERS]>,
    /// The thread starting it, joined before the context goes: a process must not exit
    /// while nvJPEG is starting.
    jpeg_starting: Mutex<Option<std::thread::JoinHandle<()>>>,
}

type JpegDecoderOrWhyNot = Result<Mutex<JpegDecoder>, NvjpegError>;

/// JPEG decoders, each for a thread of its own: one thread feeds the JPEG engines about
/// 45,000 256-px tiles a second (its calls parse the streams on the CPU), fewer than an
/// H200's engines and encoder take.
pub(super) const JPEG_DECODERS: usize = 3;

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(starting) = self.jpeg_starting.get_mut().ok().and_then(Option::take) {
            let _ = starting.join();
        }
    }
}

impl CudaBackend {
    /// How many CUDA devices are visible (at least one), or why CUDA cannot be used.
    pub fn device_count() -> Result<usize, CudaUnavailable> {
        let missing = |what: &str| CudaUnavailable(format!("{what} was not found on the library path"));
        // SAFETY: these only try to open the libraries; cudarc panics on first use otherwise.
        unsafe {
            if !driver_sys::is_culib_present() {
                return Err(missing("libcuda (the NVIDIA driver)"));
            }
            if !blas_sys::is_culib_present() {
                return Err(missing("libcublas"));
            }
            if !cudarc::cublaslt::sys::is_culib_present() {
                return Err(missing("libcublasLt"));
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
        Ok(count as usize)
    }

    /// Opens GPU `ordinal`, compiling (or taking from the cache) every kernel for it.
    pub fn open(ordinal: usize) -> Result<CudaBackend, CudaUnavailable> {
        let count = CudaBackend::device_count()?;
        let fail = |e: &dyn std::fmt::Debug| CudaUnavailable(format!("{e:?}"));
        if ordinal >= count {
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
        let gemms = super::gemm::Gemms::new(&stream).map_err(CudaUnavailable)?;
        let copies = ctx.new_stream().map_err(|e| fail(&e))?;
        let uploader = Mutex::new(super::upload::Uploader::new(copies, stream.clone()));
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
            for signature in super::kernels::KERNELS.iter().filter(|k| k.file == file) {
                let f = module.load_function(signature.name).map_err(|e| fail(&e))?;
                functions.insert(signature.name, (f, signature));
            }
            modules.push(module);
        }
        attention::configure(&functions).map_err(|e| fail(&e))?;
        super::attention_backward::configure(&functions, arch == "sm_90a").map_err(|e| fail(&e))?;
        let multiprocessors = ctx
            .attribute(driver_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| fail(&e))? as usize;
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
                gemms,
                blas: OnceLock::new(),
                uploader,
                tensor_staging: Default::default(),
                functions,
                description,
                _modules: modules,
                block_tables: Default::default(),
                hopper: arch == "sm_90a",
                multiprocessors,
                attention_family: Mutex::new(None),
                poison: Default::default(),
                spans: Default::default(),
                batch_marks: Default::default(),
                jpeg: Default::default(),
                jpeg_starting: Mutex::new(None),
            }),
        })
    }

    /// The cuBLAS handle, on the backend's stream.
    pub(super) fn blas(&self) -> Result<&cudarc::cublas::CudaBlas, BackendError> {
        self.inner
            .blas
            .get_or_init(|| {
                cudarc::cublas::CudaBlas::new(self.inner.stream.clone()).map_err(|e| format!("{e:?}"))
            })
            .as_ref()
            .map_err(|e| BackendError::Device(format!("cuBLAS: {e}")))
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    /// Opens the JPEG decoders in the background, each usable as soon as it is open.
    pub(super) fn start_jpeg_decoders(&self) {
        let inner = &self.inner;
        let (function, signature) = self.function("assemble_tiles");
        let (ctx, compute, function) = (inner.ctx.clone(), inner.stream.clone(), function.clone());
        let cells = inner.jpeg.clone();
        let open = move || {
            let nvjpeg = match JpegDecoder::start(&ctx) {
                Ok(n) => n,
                Err(why) => return cells.iter().for_each(|c| drop(c.set(Err(why.clone())))),
            };
            for cell in cells.iter() {
                let _ = cell
                    .set(JpegDecoder::open(&nvjpeg, &ctx, &compute, (&function, signature)).map(Mutex::new));
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
        self.inner.jpeg[0]
            .get()
            .and_then(|r| r.as_ref().err().map(ToString::to_string))
    }

    /// Bytes of device memory (free, total).
    pub fn memory(&self) -> Result<(usize, usize), BackendError> {
        self.inner.ctx.mem_get_info().map_err(device_err)
    }

    /// The kernel `name` and its signature (every kernel of kernels/*.cu is loaded).
    pub(super) fn function(&self, name: &str) -> (&CudaFunction, &'static KernelSignature) {
        let (f, signature) = &self.inner.functions[name];
        (f, signature)
    }

    /// A buffer of `n` values every element of which the next kernel writes (filled with
    /// NaN first while [`CudaBackend::poison_new_buffers`] is on).
    pub(super) fn alloc<T: cudarc::driver::DeviceRepr>(
        &self,
        n: usize,
    ) -> Result<CudaSlice<T>, BackendError> {
        let stream = &self.inner.stream;
        // SAFETY: callers launch a kernel writing all `n` elements before any read.
        let mut buffer = unsafe { stream.alloc::<T>(n.max(1)) }.map_err(device_err)?;
        if self.inner.poison.load(std::sync::atomic::Ordering::Relaxed) {
            let bytes = buffer.num_bytes();
            let (ptr, _) = buffer.device_ptr_mut(stream);
            // SAFETY: the buffer's own bytes, on its stream; all-ones bytes are NaN in f32,
            // bf16 and f16 (and a value no kernel's output should keep).
            unsafe { cudarc::driver::result::memset_d8_async(ptr, 0xFF, bytes, stream.cu_stream()) }
                .map_err(device_err)?;
        }
        Ok(buffer)
    }

    /// Fills every buffer an operation makes with NaN before its kernel runs (`selftest`): a
    /// kernel that leaves part of its output unwritten then fails its check, where memory
    /// left over from an earlier run of the same operation could have passed it.
    pub fn poison_new_buffers(&self, on: bool) {
        self.inner.poison.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) fn upload_raw<T: cudarc::driver::DeviceRepr>(
        &self,
        data: &[T],
    ) -> Result<CudaSlice<T>, BackendError> {
        self.inner.stream.clone_htod(data).map_err(device_err)
    }

    pub(super) fn tensor(&self, data: CudaSlice<bf16>, rows: usize, cols: usize) -> CudaTensor {
        CudaTensor {
            data: Storage::Bf16(Arc::new(data)),
            rows,
            cols,
        }
    }

    pub(super) fn tensor_f32(&self, data: CudaSlice<f32>, rows: usize, cols: usize) -> CudaTensor {
        CudaTensor {
            data: Storage::F32(Arc::new(data)),
            rows,
            cols,
        }
    }

    /// `x`'s values in bf16: its own buffer, or a rounded copy of an f32 one.
    pub(super) fn bf16_data(&self, x: &CudaTensor) -> Result<Arc<CudaSlice<bf16>>, BackendError> {
        match &x.data {
            Storage::Bf16(d) => Ok(d.clone()),
            Storage::F32(d) => {
                let _span = self.span("to bf16", 0.0);
                let n = x.rows * x.cols;
                let mut out = self.alloc::<bf16>(n)?;
                let n64 = n as i64;
                launch!(self, "to_bf16", Self::elementwise(n), &**d, &mut out, &n64)?;
                Ok(Arc::new(out))
            }
        }
    }

    /// Enough blocks of 256 threads for `n` elements of a grid-stride kernel.
    pub(super) fn elementwise(n: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (n.div_ceil(256).clamp(1, 65_536 * 8) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}
