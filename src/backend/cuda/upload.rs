//! Host tiles to the GPU on a copy stream of their own, so that the upload of one batch
//! overlaps the encoder's work on the one before: the tiles are copied (by several threads)
//! into page-locked staging memory, from there by DMA into a pool buffer, and the compute
//! stream waits for that copy alone, not for the host. From pageable memory the driver's
//! copy would hold the calling thread and, on the compute stream, the encoder.

use super::pixels::{CudaPixels, PixelPool};
use super::{device_err, CudaBackend};
use crate::backend::BackendError;
use cudarc::driver::{
    CudaEvent, CudaSlice, CudaStream, DevicePtrMut, DeviceRepr, PinnedHostSlice, ValidAsZeroBits,
};
use rayon::prelude::*;
use std::sync::Arc;

/// Two staging buffers, used in turn: one is filled while the other's copy may still run.
const STAGES: usize = 2;

/// Page-locked staging memory for copies to the GPU, in [`STAGES`] buffers used in turn.
pub(super) struct Staging<T> {
    stages: [Option<Stage<T>>; STAGES],
    next: usize,
}

/// Page-locked memory, and the event after which its last copy has finished.
struct Stage<T> {
    host: PinnedHostSlice<T>,
    copied: Option<CudaEvent>,
}

impl<T> Default for Staging<T> {
    fn default() -> Self {
        Staging {
            stages: std::array::from_fn(|_| None),
            next: 0,
        }
    }
}

impl<T: DeviceRepr + ValidAsZeroBits> Staging<T> {
    /// Fills `n` values of the next buffer with `fill` (once its last copy has finished;
    /// grown if smaller) and copies them into the start of `target` on `stream`, without
    /// waiting: the event the copy passes, after which the buffer may be written again.
    pub(super) fn copy(
        &mut self,
        stream: &Arc<CudaStream>,
        n: usize,
        fill: impl FnOnce(&mut [T]),
        target: &mut CudaSlice<T>,
    ) -> Result<&CudaEvent, BackendError> {
        assert!(target.len() >= n, "a copy of {n} values into {}", target.len());
        let stage = &mut self.stages[self.next];
        self.next = (self.next + 1) % STAGES;
        // The event is dropped only once passed: a failed wait leaves the buffer unwritten.
        if let Some(copied) = stage.as_ref().and_then(|s| s.copied.as_ref()) {
            copied.synchronize().map_err(device_err)?;
        }
        if stage.as_ref().is_none_or(|s| s.host.len() < n) {
            *stage = None;
            // SAFETY: the values copied are written by `fill` before the copy reads them.
            let host = unsafe { stream.context().alloc_pinned::<T>(n.max(1)) }.map_err(device_err)?;
            *stage = Some(Stage { host, copied: None });
        }
        let stage = stage.as_mut().expect("allocated above");
        stage.copied = None;
        let host = &mut stage.host.as_mut_slice().map_err(device_err)?[..n];
        fill(host);
        let (to, _) = target.device_ptr_mut(stream);
        // SAFETY: `target` holds at least n values (checked above), and the staging memory is
        // page-locked and not written again before `copied` has passed.
        unsafe { cudarc::driver::result::memcpy_htod_async(to, &*host, stream.cu_stream()) }
            .map_err(device_err)?;
        match stream.record_event(None) {
            Ok(copied) => Ok(stage.copied.insert(copied)),
            Err(e) => {
                // No event to wait for later: the copy finishes before the buffer can be
                // written again or freed.
                let _ = stream.synchronize();
                Err(device_err(e))
            }
        }
    }
}

impl<T> Drop for Staging<T> {
    fn drop(&mut self) {
        // Page-locked memory is not freed under a copy still reading it.
        for copied in self.stages.iter_mut().flatten().filter_map(|s| s.copied.take()) {
            let _ = copied.synchronize();
        }
    }
}

pub(super) struct Uploader {
    pool: PixelPool,
    staging: Staging<u8>,
}

impl Uploader {
    pub(super) fn new(stream: Arc<CudaStream>, compute: Arc<CudaStream>) -> Uploader {
        Uploader {
            pool: PixelPool::new(stream, compute),
            staging: Staging::default(),
        }
    }

    /// `rgb` on the GPU; the compute stream's later work waits for the copy.
    pub(super) fn upload(&mut self, rgb: &[u8]) -> Result<CudaPixels, BackendError> {
        let stream = self.pool.stream().clone();
        let mut data = self.pool.buffer(rgb.len())?;
        let fill = |host: &mut [u8]| {
            host.par_chunks_mut(1 << 20)
                .zip(rgb.par_chunks(1 << 20))
                .for_each(|(to, from)| to.copy_from_slice(from))
        };
        let copied = self.staging.copy(&stream, rgb.len(), fill, &mut data)?;
        self.pool.compute().wait(copied).map_err(device_err)?;
        Ok(self.pool.hand_over(data, rgb.len()))
    }
}

impl CudaBackend {
    pub(super) fn upload_tiles(&self, rgb: &[u8]) -> Result<CudaPixels, BackendError> {
        // On the compute stream, this times how long the encoder waits for the copy.
        let _span = self.span("wait for uploaded tiles", 0.0);
        let mut uploader = self
            .inner
            .uploader
            .lock()
            .map_err(|_| BackendError::Device("an upload failed earlier".into()))?;
        uploader.upload(rgb)
    }
}
