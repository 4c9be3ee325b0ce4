//! nvJPEG, CUDA's JPEG decoder, loaded at run time like the rest of CUDA: the few calls of
//! its batched decoder that flashslide uses, bound by hand. On the A100, H100 and H200 the
//! hardware backend decodes on the chip's JPEG engines (NVJPG), leaving the SMs to the
//! encoder; elsewhere the GPU-assisted backend decodes with CUDA kernels.

use libloading::Library;
use std::ffi::{c_int, c_uint, c_void};
use std::sync::Arc;

type Handle = *mut c_void;
type State = *mut c_void;
type Status = c_int;

/// `nvjpegImage_t`: per-plane pointers and pitches; interleaved RGB uses plane 0 alone.
#[repr(C)]
struct Image {
    channel: [*mut u8; 4],
    pitch: [usize; 4],
}

// From nvjpeg.h (CUDA 13).
const BACKEND_GPU_HYBRID: c_int = 2;
const BACKEND_HARDWARE: c_int = 3;
const OUTPUT_RGBI: c_int = 5;
/// Chroma upsampled by interpolation, as libjpeg-turbo and zune-jpeg (the CPU's decoder) do,
/// rather than by repetition.
const FLAGS_UPSAMPLING_WITH_INTERPOLATION: c_uint = 1 << 5;

type CreateEx = unsafe extern "C" fn(c_int, *mut c_void, *mut c_void, c_uint, *mut Handle) -> Status;
type Destroy = unsafe extern "C" fn(Handle) -> Status;
type StateCreate = unsafe extern "C" fn(Handle, *mut State) -> Status;
type StateDestroy = unsafe extern "C" fn(State) -> Status;
type BatchedInitialize = unsafe extern "C" fn(Handle, State, c_int, c_int, c_int) -> Status;
type DecodeBatched =
    unsafe extern "C" fn(Handle, State, *const *const u8, *const usize, *mut Image, *mut c_void) -> Status;

struct Api {
    create_ex: CreateEx,
    destroy: Destroy,
    state_create: StateCreate,
    state_destroy: StateDestroy,
    batched_initialize: BatchedInitialize,
    decode_batched: DecodeBatched,
    /// Keeps the functions above loaded.
    _library: Library,
}

/// Why nvJPEG is unusable or a call failed. Cloned: every decoder slot of a backend keeps
/// the reason it has none.
#[derive(Clone, Debug, thiserror::Error)]
pub enum NvjpegError {
    #[error("libnvjpeg was not found on the library path ({0})")]
    NotFound(String),
    #[error("libnvjpeg lacks {symbol}: {reason}")]
    MissingSymbol { symbol: &'static str, reason: String },
    #[error("nvJPEG {what}: {status}")]
    Call { what: String, status: &'static str },
    /// Neither backend could start: each one's failure.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NoBackend(Vec<NvjpegError>),
    /// The CUDA context or stream it needs.
    #[error("CUDA: {0}")]
    Cuda(String),
}

impl Api {
    fn load() -> Result<Api, NvjpegError> {
        let mut last = String::new();
        for name in ["libnvjpeg.so.13", "libnvjpeg.so"] {
            // SAFETY: loading nvJPEG runs no initialisation with preconditions.
            match unsafe { Library::new(name) } {
                Ok(library) => return Api::bind(library),
                Err(e) => last = e.to_string(),
            }
        }
        Err(NvjpegError::NotFound(last))
    }

    fn bind(library: Library) -> Result<Api, NvjpegError> {
        // SAFETY: each symbol is given its signature from nvjpeg.h.
        unsafe {
            macro_rules! get {
                ($name:literal) => {
                    *library
                        .get(concat!($name, "\0").as_bytes())
                        .map_err(|e| NvjpegError::MissingSymbol {
                            symbol: $name,
                            reason: e.to_string(),
                        })?
                };
            }
            Ok(Api {
                create_ex: get!("nvjpegCreateEx"),
                destroy: get!("nvjpegDestroy"),
                state_create: get!("nvjpegJpegStateCreate"),
                state_destroy: get!("nvjpegJpegStateDestroy"),
                batched_initialize: get!("nvjpegDecodeBatchedInitialize"),
                decode_batched: get!("nvjpegDecodeBatched"),
                _library: library,
            })
        }
    }
}

fn check(status: Status, what: &str) -> Result<(), NvjpegError> {
    const NAMES: [&str; 11] = [
        "success",
        "not initialised",
        "invalid parameter",
        "bad JPEG",
        "JPEG not supported",
        "allocator failure",
        "execution failed",
        "architecture mismatch",
        "internal error",
        "implementation not supported",
        "incomplete bitstream",
    ];
    match status {
        0 => Ok(()),
        s => Err(NvjpegError::Call {
            what: what.to_string(),
            status: NAMES.get(s as usize).copied().unwrap_or("unknown error"),
        }),
    }
}

/// nvJPEG's library and handle, shared by the decoders made from it (each with its own
/// state, so that several threads decode at once: a call keeps its thread busy parsing the
/// streams while the JPEG engines work).
pub struct Nvjpeg {
    api: Api,
    handle: Handle,
    backend: &'static str,
}

// SAFETY: an nvJPEG handle may be used from several threads at once, each with its own state.
unsafe impl Send for Nvjpeg {}
unsafe impl Sync for Nvjpeg {}

impl Nvjpeg {
    /// The hardware backend where the GPU has JPEG engines, else the GPU-assisted one. The
    /// caller has made the device's CUDA context current on this thread.
    pub fn open() -> Result<Arc<Nvjpeg>, NvjpegError> {
        let api = Api::load()?;
        let mut failures = Vec::new();
        for (backend, name) in [(BACKEND_HARDWARE, "hardware"), (BACKEND_GPU_HYBRID, "GPU")] {
            let mut handle = std::ptr::null_mut();
            let mut status = 0;
            for flags in [FLAGS_UPSAMPLING_WITH_INTERPOLATION, 0] {
                // SAFETY: null allocators select cudaMalloc and cudaHostAlloc; one
                // out-parameter.
                status = unsafe {
                    (api.create_ex)(
                        backend,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        flags,
                        &mut handle,
                    )
                };
                if status == 0 {
                    break;
                }
            }
            match check(status, &format!("{name} backend")) {
                Ok(()) => {
                    return Ok(Arc::new(Nvjpeg {
                        api,
                        handle,
                        backend: name,
                    }))
                }
                Err(e) => failures.push(e),
            }
        }
        Err(NvjpegError::NoBackend(failures))
    }

    /// "hardware" or "GPU".
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// A decoder of its own (an nvJPEG state), for one thread at a time.
    pub fn decoder(self: &Arc<Self>) -> Result<NvjpegDecoder, NvjpegError> {
        let mut state = std::ptr::null_mut();
        // SAFETY: a live handle; one out-parameter.
        check(
            unsafe { (self.api.state_create)(self.handle, &mut state) },
            "state",
        )?;
        Ok(NvjpegDecoder {
            nvjpeg: self.clone(),
            state,
            initialised_for: 0,
        })
    }
}

impl Drop for Nvjpeg {
    fn drop(&mut self) {
        // SAFETY: created in `open`; every state made from it is gone (they hold this).
        unsafe { (self.api.destroy)(self.handle) };
    }
}

/// A batched decoder writing interleaved RGB into device memory.
pub struct NvjpegDecoder {
    nvjpeg: Arc<Nvjpeg>,
    state: State,
    /// The batch size the state is initialised for (nvJPEG decodes exactly that many).
    initialised_for: usize,
}

// SAFETY: the state is used by one thread at a time (`&mut self`), from any thread.
unsafe impl Send for NvjpegDecoder {}

impl NvjpegDecoder {
    /// Decodes `streams` to interleaved RGB, image i at `outputs[i]` with rows `pitch` bytes
    /// apart, in the order of `cu_stream`.
    ///
    /// # Safety
    /// Each output must be device memory with room for its image (height × pitch bytes), not
    /// in use by other work until `cu_stream` has passed this decode; the device's context is
    /// current on this thread.
    pub unsafe fn decode(
        &mut self,
        streams: &[&[u8]],
        outputs: &[u64],
        pitch: usize,
        cu_stream: *mut c_void,
    ) -> Result<(), NvjpegError> {
        assert_eq!(streams.len(), outputs.len(), "one output per stream");
        if streams.is_empty() {
            return Ok(());
        }
        if self.initialised_for != streams.len() {
            let n = streams.len() as c_int;
            let (api, handle) = (&self.nvjpeg.api, self.nvjpeg.handle);
            check(
                (api.batched_initialize)(handle, self.state, n, 1, OUTPUT_RGBI),
                "initialising a batch",
            )?;
            self.initialised_for = streams.len();
        }
        let data: Vec<*const u8> = streams.iter().map(|s| s.as_ptr()).collect();
        let lengths: Vec<usize> = streams.iter().map(|s| s.len()).collect();
        let mut images: Vec<Image> = outputs
            .iter()
            .map(|&p| Image {
                channel: [
                    p as *mut u8,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                ],
                pitch: [pitch, 0, 0, 0],
            })
            .collect();
        check(
            (self.nvjpeg.api.decode_batched)(
                self.nvjpeg.handle,
                self.state,
                data.as_ptr(),
                lengths.as_ptr(),
                images.as_mut_ptr(),
                cu_stream,
            ),
            "decoding",
        )
    }
}

impl Drop for NvjpegDecoder {
    fn drop(&mut self) {
        // SAFETY: created in `decoder`, used by nothing else.
        unsafe { (self.nvjpeg.api.state_destroy)(self.state) };
    }
}
