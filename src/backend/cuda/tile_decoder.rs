//! Tiles decoded on the GPU: nvJPEG decodes a batch's stored tiles on a stream of its own,
//! so decoding overlaps the encoder's work on the main stream; `assemble_tiles`
//! (kernels/tiles.cu) cuts and averages the model's tiles from them; the encoder gets them
//! in a buffer from a small pool and gives the buffer back, with an event marking when its
//! kernels have read it, as soon as its work is queued.

use super::kernels::KernelSignature;
use super::nvjpeg::{Nvjpeg, NvjpegDecoder, NvjpegError};
use super::pixels::{CudaPixels, PixelPool};
use super::{device_err, CudaBackend};

use crate::backend::BackendError;
use crate::backend::{DecoderSeconds, JpegBatch, TileDecoder};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtrMut, LaunchConfig, PushKernelArg,
};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// An nvJPEG decoder with its stream, the assembling kernel and the pixel buffers.
pub(super) struct JpegDecoder {
    nvjpeg: NvjpegDecoder,
    backend: &'static str,
    assemble: CudaFunction,
    assemble_signature: &'static KernelSignature,
    /// The decoded stored tiles of the batch in hand, reused from batch to batch.
    stored: Option<CudaSlice<u8>>,
    /// The pixel buffers handed to the encoder, filled on the decoder's stream.
    pool: PixelPool,
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
        let stream = ctx
            .new_stream_with_priority(highest)
            .map_err(|e| NvjpegError::Cuda(format!("{e:?}")))?;
        Ok(JpegDecoder {
            nvjpeg: nvjpeg.decoder()?,
            backend: nvjpeg.backend(),
            assemble: assemble.clone(),
            assemble_signature,
            stored: None,
            pool: PixelPool::new(stream, compute.clone()),
        })
    }

    /// The batch's pixels, and the time the call and the wait for the device took.
    fn decode(&mut self, batch: &JpegBatch) -> Result<(CudaPixels, DecoderSeconds), BackendError> {
        let stream = self.pool.stream().clone();
        let [tw, th] = batch.stored_size;
        let stored_bytes = tw as usize * th as usize * 3;
        let needed = (batch.streams.len() * stored_bytes).max(1);
        if self.stored.as_ref().is_none_or(|s| s.len() < needed) {
            self.stored = None;
            // SAFETY: nvJPEG writes each stored tile before the kernel reads it.
            self.stored = Some(unsafe { stream.alloc::<u8>(needed) }.map_err(device_err)?);
        }
        let base = {
            let stored = self.stored.as_mut().expect("allocated above");
            stored.device_ptr_mut(&stream).0
        };
        let outputs: Vec<u64> = (0..batch.streams.len())
            .map(|i| base + (i * stored_bytes) as u64)
            .collect();
        let streams: Vec<&[u8]> = batch.streams.iter().map(Vec::as_slice).collect();
        stream.context().bind_to_thread().map_err(device_err)?;
        // SAFETY: each output has room for one stored tile (a batch's streams decode to its
        // stored size: their frame headers were checked), the buffer is used by this stream
        // alone, and the context is current.
        let submitted = Instant::now();
        unsafe {
            self.nvjpeg
                .decode(&streams, &outputs, tw as usize * 3, stream.cu_stream() as *mut _)
                .map_err(|e| BackendError::Device(e.to_string()))?;
        }
        let submit = submitted.elapsed().as_secs_f64();

        let px = batch.tile_px as usize;
        let len = batch.len() * px * px * 3;
        let mut out = self.pool.buffer(len)?;
        let starts: Vec<i32> = batch.starts.iter().map(|&s| s as i32).collect();
        let sources: Vec<i32> = batch.placements.iter().map(|p| p.source as i32).collect();
        let corners: Vec<i64> = batch.placements.iter().flat_map(|p| p.corner).collect();
        let origins: Vec<i64> = batch.origins.iter().flatten().copied().collect();
        // A batch whose tiles touch no stored tile still hands the kernel valid buffers.
        let upload = |v: &[i32]| stream.clone_htod(if v.is_empty() { &[0][..] } else { v });
        let (starts, sources) = (
            upload(&starts).map_err(device_err)?,
            upload(&sources).map_err(device_err)?,
        );
        let corners = stream
            .clone_htod(if corners.is_empty() { &[0i64][..] } else { &corners })
            .map_err(device_err)?;
        let origins = stream.clone_htod(&origins).map_err(device_err)?;
        let values = (batch.len() * px * px) as u64;
        let cfg = LaunchConfig {
            grid_dim: (values.div_ceil(256).clamp(1, 65_536 * 8) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let (tiles, tile_px, factor) = (batch.len() as i32, batch.tile_px as i32, batch.factor as i32);
        let (stored_w, stored_h) = (tw as i32, th as i32);
        let [level_w, level_h] = batch.level_size;
        let stored = self.stored.as_ref().expect("allocated above");
        // `starts` holds tiles + 1 offsets into the placements (`sources`, `corners`), each
        // source a decoded stored tile; `out` holds `len` bytes.
        launch_on!(
            stream,
            &self.assemble,
            self.assemble_signature,
            cfg,
            stored,
            &starts,
            &sources,
            &corners,
            &origins,
            &mut out,
            &tiles,
            &tile_px,
            &factor,
            &stored_w,
            &stored_h,
            &level_w,
            &level_h
        )?;
        // The encoder's stream does not wait for this one: hand over finished pixels only.
        let waited = Instant::now();
        stream.synchronize().map_err(device_err)?;
        let seconds = DecoderSeconds {
            submit,
            device: waited.elapsed().as_secs_f64(),
        };
        Ok((self.pool.hand_over(out, len), seconds))
    }
}

/// One of the backend's decoders, lent to a pipeline's decoding thread. nvJPEG takes a while
/// to start (in the background, from the first asking; decoder after decoder): until this
/// one is ready, `decode` declines and the pipeline decodes on the CPU rather than wait.
pub(super) struct SharedJpegDecoder {
    pub(super) backend: CudaBackend,
    pub(super) index: usize,
    /// Its lane's time so far.
    pub(super) seconds: DecoderSeconds,
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
        let (pixels, seconds) = decoder.decode(batch)?;
        drop(decoder);
        self.seconds.submit += seconds.submit;
        self.seconds.device += seconds.device;
        Ok(pixels)
    }

    fn seconds(&self) -> DecoderSeconds {
        self.seconds
    }
}
