//! RGB tiles on the GPU, in buffers of a small pool: the JPEG decoders and the uploader of
//! host tiles fill them on streams of their own, the encoder reads them on the compute
//! stream and gives each buffer back, with an event marking when its kernels have read it,
//! as soon as its work is queued.

use super::device_err;
use crate::backend::BackendError;
use cudarc::driver::{CudaEvent, CudaSlice, CudaStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

/// RGB tiles on the GPU, in a pool buffer that goes back to its pool when dropped.
pub struct CudaPixels {
    data: Option<CudaSlice<u8>>,
    len: usize,
    home: Option<(Sender<Slot>, Arc<CudaStream>)>,
}

impl CudaPixels {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn data(&self) -> &CudaSlice<u8> {
        self.data.as_ref().expect("pixels are held until dropped")
    }
}

impl Drop for CudaPixels {
    fn drop(&mut self) {
        let (Some(data), Some((home, compute))) = (self.data.take(), self.home.take()) else {
            return;
        };
        // Whatever read these pixels is queued on `compute` by now: once this event has
        // passed, the pool may hand the buffer out again.
        let released = compute.record_event(None).ok();
        if released.is_none() {
            let _ = compute.synchronize();
        }
        // A pool that is gone drops the slot here, which waits for the event first.
        let _ = home.send(Slot {
            data: Some(data),
            released,
        });
    }
}

/// A pool buffer, and the event after which nothing reads it any more.
struct Slot {
    data: Option<CudaSlice<u8>>,
    released: Option<CudaEvent>,
}

impl Slot {
    fn wait_released(&mut self) -> Result<(), BackendError> {
        if let Some(e) = self.released.take() {
            e.synchronize().map_err(device_err)?;
        }
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The buffer is freed on its filler's stream, which does not wait for the encoder's.
        let _ = self.wait_released();
    }
}

/// The buffers of one filler (a decoder, the uploader): it grows to the pipeline's depth
/// and stays there.
pub(super) struct PixelPool {
    /// The stream the buffers are filled and freed on.
    stream: Arc<CudaStream>,
    /// The encoder's stream, which reads them.
    compute: Arc<CudaStream>,
    free: Receiver<Slot>,
    home: Sender<Slot>,
}

impl PixelPool {
    pub(super) fn new(stream: Arc<CudaStream>, compute: Arc<CudaStream>) -> PixelPool {
        let (home, free) = channel();
        PixelPool {
            stream,
            compute,
            free,
            home,
        }
    }

    pub(super) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub(super) fn compute(&self) -> &Arc<CudaStream> {
        &self.compute
    }

    /// A buffer of at least `len` bytes that nothing reads any more: one given back, else a
    /// new one. The caller writes all of the `len` bytes it hands over.
    pub(super) fn buffer(&self, len: usize) -> Result<CudaSlice<u8>, BackendError> {
        if let Ok(mut slot) = self.free.try_recv() {
            slot.wait_released()?;
            if let Some(data) = slot.data.take_if(|d| d.len() >= len) {
                return Ok(data);
            }
        }
        // SAFETY: callers write every byte of the pixels they hand over before any is read.
        unsafe { self.stream.alloc::<u8>(len.max(1)) }.map_err(device_err)
    }

    /// `len` bytes of `data` as pixels for the encoder, the buffer coming back when they go.
    pub(super) fn hand_over(&self, data: CudaSlice<u8>, len: usize) -> CudaPixels {
        CudaPixels {
            data: Some(data),
            len,
            home: Some((self.home.clone(), self.compute.clone())),
        }
    }
}
