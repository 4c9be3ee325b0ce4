//! Tiles decoded on the GPU: nvJPEG decodes a batch's stored tiles on a stream of its own,
//! so decoding overlaps the encoder's work on the main stream; `assemble_tiles`
//! (kernels/tiles.cu) cuts and averages the model's tiles from them; the encoder gets them
//! in a buffer from a small pool and gives the buffer back, with an event marking when its
//! kernels have read it, as soon as its work is queued.

use super::kernels::KernelSignature;
use super::nvjpeg::{Nvjpeg, NvjpegDecoder, NvjpegError};
use super::{device_err, CudaBackend};

use crate::backend::BackendError;
use crate::backend::{JpegBatch, TileDecoder};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtrMut, LaunchConfig, PushKernelArg,
};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// RGB tiles on the GPU: uploaded from the host, or decoded there into a pool buffer that
/// goes back to its decoder when dropped.
pub struct CudaPixels {
    data: Option<CudaSlice<u8>>,
    len: usize,
    home: Option<(Sender<Slot>, Arc<CudaStream>)>,
}

impl CudaPixels {
    pub(super) fn uploaded(data: CudaSlice<u8>, len: usize) -> CudaPixels {
        CudaPixels {
            data: Some(data),
            len,
            home: None,
        }
    }

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
        // passed, the decoder may write the buffer again.
        let released = compute.record_event(None).ok();
        if released.is_none() {
            let _ = compute.synchronize();
        }
        // A decoder that is gone drops the slot here, which waits for the event first.
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
        // The buffer is freed on the decoder's stream, which does not wait for the encoder's.
        let _ = self.wait_released();
    }
}

/// An nvJPEG decoder with its stream, the assembling kernel and the pixel buffers.
pub(super) struct JpegDecoder {
    nvjpeg: NvjpegDecoder,
    backend: &'static str,
    stream: Arc<CudaStream>,
    compute: Arc<CudaStream>,
    assemble: CudaFunction,
    assemble_signature: &'static KernelSignature,
    /// The decoded stored tiles of the batch in hand, reused from batch to batch.
    stored: Option<CudaSlice<u8>>,
    free: Receiver<Slot>,
    home: Sender<Slot>,
}

impl JpegDecoder {
    /// nvJPEG's handle, made on the device of `ctx` (about a third of a second).
    pub(super) fn start(ctx: &Arc<CudaContext>) -> Result<Arc<Nvjpeg>, NvjpegError> {
        ctx.bind_to_thread()
            .map_err(|e| NvjpegError::Cuda(format!("{e:?}")))?;
        Nvjpeg::open()
    }

    /// A decoder of `nvjpeg`'s (its state takes about a third of a second to make), handing
    /// pixels to the encoder's stream `compute`.
    pub(super) fn open(
        nvjpeg: &Arc<Nvjpeg>,
        ctx: &Arc<CudaContext>,
        compute: &Arc<CudaStream>,
        (assemble, assemble_signature): (&CudaFunction, &'static KernelSignature),
    ) -> Result<JpegDecoder, NvjpegError> {
        ctx.bind_to_thread()
            .map_err(|e| NvjpegError::Cuda(format!("{e:?}")))?;
        // Its kernels (nvJPEG's own, and assembling) go before the encoder's: waiting on
        // decoding idles the encoder, while the encoder's kernels can wait.
        let (_, highest) = cudarc::driver::result::stream::get_priority_range().unwrap_or((0, 0));
        let (home, free) = channel();
        Ok(JpegDecoder {
            nvjpeg: nvjpeg.decoder()?,
            backend: nvjpeg.backend(),
            stream: ctx
                .new_stream_with_priority(highest)
                .map_err(|e| NvjpegError::Cuda(format!("{e:?}")))?,
            compute: compute.clone(),
            assemble: assemble.clone(),
            assemble_signature,
            stored: None,
            free,
            home,
        })
    }

    /// A buffer of at least `len` bytes that nothing reads any more: one given back, else a
    /// new one (the pool grows to the pipeline's depth and stays there).
    fn buffer(&mut self, len: usize) -> Result<CudaSlice<u8>, BackendError> {
        if let Ok(mut slot) = self.free.try_recv() {
            slot.wait_released()?;
            if let Some(data) = slot.data.take_if(|d| d.len() >= len) {
                return Ok(data);
            }
        }
        // SAFETY: `assemble_tiles` writes every byte the pixels' length covers.
        unsafe { self.stream.alloc::<u8>(len.max(1)) }.map_err(device_err)
    }

    fn decode(&mut self, batch: &JpegBatch) -> Result<CudaPixels, BackendError> {
        let [tw, th] = batch.stored_size;
        let stored_bytes = tw as usize * th as usize * 3;
        let needed = (batch.streams.len() * stored_bytes).max(1);
        if self.stored.as_ref().is_none_or(|s| s.len() < needed) {
            self.stored = None;
            // SAFETY: nvJPEG writes each stored tile before the kernel reads it.
            self.stored = Some(unsafe { self.stream.alloc::<u8>(needed) }.map_err(device_err)?);
        }
        let base = {
            let stored = self.stored.as_mut().expect("allocated above");
            stored.device_ptr_mut(&self.stream).0
        };
        let outputs: Vec<u64> = (0..batch.streams.len())
            .map(|i| base + (i * stored_bytes) as u64)
            .collect();
        let streams: Vec<&[u8]> = batch.streams.iter().map(Vec::as_slice).collect();
        self.stream.context().bind_to_thread().map_err(device_err)?;
        // SAFETY: each output has room for one stored tile (a batch's streams decode to its
        // stored size: their frame headers were checked), the buffer is used by this stream
        // alone, and the context is current.
        unsafe {
            self.nvjpeg
                .decode(
                    &streams,
                    &outputs,
                    tw as usize * 3,
                    self.stream.cu_stream() as *mut _,
                )
                .map_err(|e| BackendError::Device(e.to_string()))?;
        }

        let px = batch.tile_px as usize;
        let len = batch.len() * px * px * 3;
        let mut out = self.buffer(len)?;
        let sources = self.stream.clone_htod(&batch.sources).map_err(device_err)?;
        let origins: Vec<i64> = batch.origins.iter().flatten().copied().collect();
        let origins = self.stream.clone_htod(&origins).map_err(device_err)?;
        let values = (batch.len() * px * px) as u64;
        let cfg = LaunchConfig {
            grid_dim: (values.div_ceil(256).clamp(1, 65_536 * 8) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let (tiles, tile_px, factor) = (batch.len() as i32, batch.tile_px as i32, batch.factor as i32);
        let (stored_w, stored_h) = (tw as i32, th as i32);
        let (span_x, span_y) = (batch.span[0] as i32, batch.span[1] as i32);
        let [level_w, level_h] = batch.level_size;
        let stored = self.stored.as_ref().expect("allocated above");
        // The table holds span² entries a tile, each −1 or a decoded stored tile; `out` holds
        // `len` bytes.
        launch_on!(
            self.stream,
            &self.assemble,
            self.assemble_signature,
            cfg,
            stored,
            &sources,
            &origins,
            &mut out,
            &tiles,
            &tile_px,
            &factor,
            &stored_w,
            &stored_h,
            &span_x,
            &span_y,
            &level_w,
            &level_h
        )?;
        // The encoder's stream does not wait for this one: hand over finished pixels only.
        self.stream.synchronize().map_err(device_err)?;
        Ok(CudaPixels {
            data: Some(out),
            len,
            home: Some((self.home.clone(), self.compute.clone())),
        })
    }
}

/// One of the backend's decoders, lent to a pipeline's decoding thread. nvJPEG takes a while
/// to start (in the background, from the first asking; decoder after decoder): until this
/// one is ready, `decode` declines and the pipeline decodes on the CPU rather than wait.
pub(super) struct SharedJpegDecoder {
    pub(super) backend: CudaBackend,
    pub(super) index: usize,
}

impl SharedJpegDecoder {
    fn get(&self) -> Option<&Mutex<JpegDecoder>> {
        self.backend.inner.jpeg[self.index].get()?.as_ref().ok()
    }
}

impl TileDecoder<CudaPixels> for SharedJpegDecoder {
    fn describe(&self) -> String {
        let ready = self
            .backend
            .inner
            .jpeg
            .iter()
            .find_map(|d| d.get()?.as_ref().ok());
        match ready.and_then(|d| d.lock().ok().map(|d| d.backend)) {
            Some(backend) => format!("GPU (nvJPEG, {backend} backend)"),
            None => "GPU (nvJPEG)".into(),
        }
    }

    fn decode(&mut self, batch: &JpegBatch) -> Result<CudaPixels, BackendError> {
        let decoder = self
            .get()
            .ok_or_else(|| BackendError::Device("this nvJPEG decoder is not ready".into()))?;
        let mut decoder = decoder
            .lock()
            .map_err(|_| BackendError::Device("the JPEG decoder failed earlier".into()))?;
        decoder.decode(batch)
    }
}
