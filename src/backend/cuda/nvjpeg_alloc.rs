//! nvJPEG's memory, given to it as allocators of flashslide's (nvjpegCreateExV2): device
//! memory stream-ordered (cuMemAllocAsync, cuMemFreeAsync on the decoder's stream) and
//! page-locked host memory kept for reuse. With nvJPEG's defaults, cudaMalloc and cudaFree,
//! each time a batch of another size made it grow or re-initialise its buffers the free
//! waited for the whole GPU, the encoder's queued work included: with a ViT-L encoder the
//! decoders spent about twice as long as with a ViT-S one.

use cudarc::driver::sys::{self as driver, cudaError_enum::CUDA_SUCCESS, CUdeviceptr, CUstream};
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::Mutex;

type Alloc = unsafe extern "C" fn(*mut c_void, *mut *mut c_void, usize, *mut c_void) -> c_int;
type Free = unsafe extern "C" fn(*mut c_void, *mut c_void, usize, *mut c_void) -> c_int;

/// `nvjpegDevAllocatorV2_t` and `nvjpegPinnedAllocatorV2_t` (the same layout): allocate,
/// free, and the context both receive.
#[repr(C)]
pub(super) struct AllocatorV2 {
    alloc: Alloc,
    free: Free,
    context: *mut c_void,
}

/// The two allocators of one nvJPEG handle; it must outlive the handle.
pub(super) struct Allocators {
    pub(super) device: Box<AllocatorV2>,
    pub(super) pinned: Box<AllocatorV2>,
    /// The page-locked blocks, owned through `pinned.context`.
    pool: *mut PinnedPool,
}

// SAFETY: the pool is reached through its mutex alone; the rest are function pointers.
unsafe impl Send for Allocators {}
unsafe impl Sync for Allocators {}

impl Allocators {
    pub(super) fn new() -> Allocators {
        let pool: *mut PinnedPool = Box::into_raw(Box::default());
        Allocators {
            device: Box::new(AllocatorV2 {
                alloc: device_alloc,
                free: device_free,
                context: std::ptr::null_mut(),
            }),
            pinned: Box::new(AllocatorV2 {
                alloc: pinned_alloc,
                free: pinned_free,
                context: pool.cast(),
            }),
            pool,
        }
    }
}

impl Drop for Allocators {
    fn drop(&mut self) {
        // SAFETY: made by Box::into_raw in `new`; the handle using it is destroyed by now.
        let pool = unsafe { Box::from_raw(self.pool) };
        let blocks = pool.blocks.into_inner().unwrap_or_default();
        for &pointer in blocks.capacity.keys() {
            // SAFETY: each block came from cuMemHostAlloc and nothing uses it any more.
            unsafe { driver::cuMemFreeHost(pointer as *mut c_void) };
        }
    }
}

unsafe extern "C" fn device_alloc(
    _: *mut c_void,
    ptr: *mut *mut c_void,
    size: usize,
    stream: *mut c_void,
) -> c_int {
    let mut d: CUdeviceptr = 0;
    if driver::cuMemAllocAsync(&mut d, size.max(1), stream as CUstream) != CUDA_SUCCESS {
        return 1;
    }
    *ptr = d as *mut c_void;
    0
}

unsafe extern "C" fn device_free(_: *mut c_void, ptr: *mut c_void, _: usize, stream: *mut c_void) -> c_int {
    if ptr.is_null() {
        return 0;
    }
    (driver::cuMemFreeAsync(ptr as CUdeviceptr, stream as CUstream) != CUDA_SUCCESS) as c_int
}

/// Page-locked blocks by address: each one's capacity, and those free to hand out again.
#[derive(Default)]
struct PinnedPool {
    blocks: Mutex<Blocks>,
}

#[derive(Default)]
struct Blocks {
    capacity: HashMap<usize, usize>,
    free: Vec<usize>,
}

unsafe extern "C" fn pinned_alloc(
    pool: *mut c_void,
    ptr: *mut *mut c_void,
    size: usize,
    _: *mut c_void,
) -> c_int {
    let pool = &*(pool as *const PinnedPool);
    let Ok(mut blocks) = pool.blocks.lock() else {
        return 1;
    };
    // The smallest free block that fits.
    let fits = (0..blocks.free.len())
        .filter(|&i| blocks.capacity[&blocks.free[i]] >= size)
        .min_by_key(|&i| blocks.capacity[&blocks.free[i]]);
    if let Some(i) = fits {
        *ptr = blocks.free.swap_remove(i) as *mut c_void;
        return 0;
    }
    let mut p = std::ptr::null_mut();
    if driver::cuMemHostAlloc(&mut p, size.max(1), 0) != CUDA_SUCCESS {
        return 1;
    }
    blocks.capacity.insert(p as usize, size.max(1));
    *ptr = p;
    0
}

unsafe extern "C" fn pinned_free(
    pool: *mut c_void,
    ptr: *mut c_void,
    _: usize,
    stream: *mut c_void,
) -> c_int {
    if ptr.is_null() {
        return 0;
    }
    // Whatever nvJPEG queued on `stream` may still read the block: only the decoder's own
    // stream is waited for, never the encoder's.
    if driver::cuStreamSynchronize(stream as CUstream) != CUDA_SUCCESS {
        return 1;
    }
    let pool = &*(pool as *const PinnedPool);
    let Ok(mut blocks) = pool.blocks.lock() else {
        return 1;
    };
    blocks.free.push(ptr as usize);
    0
}
