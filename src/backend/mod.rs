//! The operations the two encoders are written against. The model code (src/model/) calls
//! only these, so each backend implements them once: the CPU one here (candle-core tensors,
//! f32, attention through the tiled kernel) is the reference every other backend is checked
//! against.
//!
//! Activations are row-major matrices `[rows, cols]`: one row per token, the tokens of a
//! batch of sequences packed one after another. Weights are matrices too (a bias or a norm
//! weight is `[1, n]`).

pub mod autodiff;
pub mod check;
pub mod cpu;
pub mod cuda;
mod error;
pub mod grad;
pub mod grad_check;
mod jpeg_batch;
pub mod testing;

pub use error::BackendError;
pub use jpeg_batch::{JpegBatch, Placement};

/// Where each token of a sequence sits on the slide's grid (row, column), and what attention
/// does with it.
#[derive(Clone, Copy, Debug)]
pub struct PositionSpec<'a> {
    pub positions: &'a [[f32; 2]],
    /// 2D rotary embedding of q and k with this frequency base (see [`cpu::rope`]).
    pub rope_base: Option<f64>,
    /// Add the 2D ALiBi bias `−slope[h] · ‖pos[i] − pos[j]‖` to the scores.
    pub alibi: bool,
}

/// Where a device decoder's time went, summed over the batches it decoded: where decoding
/// falls behind the encoder, whether the host's call or the device is the slow part.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DecoderSeconds {
    /// In the decoding library's call (parsing the streams, handing them to the device).
    pub submit: f64,
    /// Waiting for the device to finish the batch (decoding and cutting the tiles, its
    /// kernels queued beside the encoder's).
    pub device: f64,
}

/// Decodes batches of stored JPEG tiles into model tiles on a backend's device.
pub trait TileDecoder<Pixels>: Send {
    /// What decodes ("GPU (nvJPEG, hardware backend)"), for reports.
    fn describe(&self) -> String;
    fn decode(&mut self, batch: &JpegBatch) -> Result<Pixels, BackendError>;
    /// Its time so far, by where it went.
    fn seconds(&self) -> DecoderSeconds;
}

pub trait Backend: Clone + Send + Sync {
    type Tensor: Clone + Send + Sync;
    /// A [`PositionSpec`] prepared once for the layers that share it.
    type Positions;
    /// RGB tiles where this backend computes (bytes, row-major, `side`² pixels a tile).
    type Pixels: Send;

    /// A short description for logs and reports ("cpu", "cuda:0 NVIDIA H100 ...").
    fn describe(&self) -> String;

    /// Device memory in use now (bytes), for devices with memory of their own.
    fn memory_in_use(&self) -> Option<u64> {
        None
    }

    /// Host data (row-major `[rows, cols]`) placed where this backend computes.
    fn upload(&self, data: &[f32], rows: usize, cols: usize) -> Result<Self::Tensor, BackendError>;
    /// A model weight: as `upload`, but a backend that trains makes it a trainable variable.
    fn upload_weight(&self, data: &[f32], rows: usize, cols: usize) -> Result<Self::Tensor, BackendError> {
        self.upload(data, rows, cols)
    }
    fn download(&self, x: &Self::Tensor) -> Result<Vec<f32>, BackendError>;
    /// `(rows, cols)`.
    fn shape(&self, x: &Self::Tensor) -> (usize, usize);

    /// `x · wᵀ + b` for `x` `[rows, in]`, `w` `[out, in]`, `b` `[1, out]`.
    fn linear(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor, BackendError>;
    /// `residual + x · wᵀ + b`: a residual branch's last layer added to the residual stream,
    /// which a backend may do in the GEMM (the result in the stream's own type).
    fn linear_residual(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
        residual: &Self::Tensor,
    ) -> Result<Self::Tensor, BackendError> {
        self.add(residual, &self.linear(x, w, b)?)
    }
    /// `gelu(x · wᵀ + b)`: a backend may fuse the bias and activation into one pass.
    fn linear_gelu(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: &Self::Tensor,
    ) -> Result<Self::Tensor, BackendError> {
        self.gelu(&self.linear(x, w, Some(b))?)
    }
    /// Layer norm of each row.
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: &Self::Tensor,
        eps: f64,
    ) -> Result<Self::Tensor, BackendError>;
    /// `residual + y · diag(gamma)` (`gamma` `[1, cols]`: layer scale, when given) and that
    /// sum's layer norm, `(sum, normed)`: a pre-norm block's residual add and the norm after
    /// it, which a backend may do in one pass.
    fn add_layer_norm(
        &self,
        residual: &Self::Tensor,
        y: &Self::Tensor,
        gamma: Option<&Self::Tensor>,
        w: &Self::Tensor,
        b: &Self::Tensor,
        eps: f64,
    ) -> Result<(Self::Tensor, Self::Tensor), BackendError> {
        add_then_layer_norm(self, residual, y, gamma, w, b, eps)
    }
    /// Exact (erf) GELU.
    fn gelu(&self, x: &Self::Tensor) -> Result<Self::Tensor, BackendError>;
    /// timm's packed SwiGLU: silu(first half of each row) · second half.
    fn swiglu(&self, x: &Self::Tensor) -> Result<Self::Tensor, BackendError>;
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor, BackendError>;
    /// Each column scaled by `gamma` `[1, cols]` (layer scale).
    fn scale_columns(&self, x: &Self::Tensor, gamma: &Self::Tensor) -> Result<Self::Tensor, BackendError>;
    fn concat_rows(&self, parts: &[Self::Tensor]) -> Result<Self::Tensor, BackendError>;
    /// `a` and `b` side by side: `[rows, a.cols + b.cols]`.
    fn concat_cols(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor, BackendError>;

    /// Marks where a batch's work starts (`start`) or ends in the device's queue: the device's
    /// idle time from each end to the next start is what [`Backend::idle_seconds`] sums. A
    /// backend that computes as it is called has no idle device and marks nothing.
    fn mark_batch(&self, _start: bool) {}
    /// Seconds the device sat idle between the batches marked since the last call (waits for
    /// the marked work to finish).
    fn idle_seconds(&self) -> f64 {
        0.0
    }

    /// Host RGB tiles placed where this backend computes.
    fn upload_pixels(&self, rgb: &[u8]) -> Result<Self::Pixels, BackendError>;
    /// Bytes in `pixels`.
    fn pixel_bytes(&self, pixels: &Self::Pixels) -> usize;
    /// `pixels` back on the host (for checks).
    fn download_pixels(&self, pixels: &Self::Pixels) -> Result<Vec<u8>, BackendError>;
    /// Decoders of stored JPEG tiles on this backend's device, each for a thread of its own,
    /// where it has them; none: the CPU decodes tiles and [`Backend::upload_pixels`] places
    /// them.
    fn tile_decoders(&self) -> Vec<Box<dyn TileDecoder<Self::Pixels>>> {
        Vec::new()
    }
    /// Starts the device's tile decoder in the background where it takes a while to start,
    /// so that a run's first slide need not start without it.
    fn prepare_tile_decoder(&self) {}
    /// Whether a shape's first pass costs much more than the next ones (a GPU times its
    /// GEMMs' candidates then): `run` warms such a backend's tile encoder at its batch's
    /// shape before the first slide.
    fn warms_up(&self) -> bool {
        false
    }

    /// Patches of `batch` RGB tiles (`side`² pixels each, row-major bytes): one row per
    /// `patch`² patch, in raster order within a tile, holding its pixels normalised to
    /// `(v/255 − mean[c]) / std[c]` in (channel, row, column) order (a stride-`patch`
    /// convolution's weight order).
    fn patchify(
        &self,
        rgb: &Self::Pixels,
        batch: usize,
        side: usize,
        patch: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Self::Tensor, BackendError>;
    /// For each of `batch` sequences of patch embeddings (`patches` `[batch·n, D]`): the
    /// `prefix` rows (class and register tokens, `[P, D]`) before them, then `position`
    /// (`[P + n, D]`) added.
    fn prepend_and_position(
        &self,
        patches: &Self::Tensor,
        batch: usize,
        prefix: Option<&Self::Tensor>,
        position: &Self::Tensor,
    ) -> Result<Self::Tensor, BackendError>;
    /// For each of `seqs` equal-length sequences of `x`: the mean of its rows
    /// `start..start + count`. `[seqs, D]`.
    fn mean_rows(
        &self,
        x: &Self::Tensor,
        seqs: usize,
        start: usize,
        count: usize,
    ) -> Result<Self::Tensor, BackendError>;
    /// For each of `seqs` equal-length sequences of `x` whose rows after the first `prefix`
    /// are a `side` × `side` grid of patch tokens: the mean of each `k` × `k` group, groups
    /// in raster order. `[seqs · (side/k)², D]`.
    fn group_tokens(
        &self,
        x: &Self::Tensor,
        seqs: usize,
        prefix: usize,
        side: usize,
        k: usize,
    ) -> Result<Self::Tensor, BackendError>;

    fn prepare_positions(
        &self,
        spec: PositionSpec,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self::Positions, BackendError>;
    /// Exact softmax attention over packed sequences: `qkv` is `[tokens, 3·heads·head_dim]`
    /// (a fused projection's output: q, k, v, each head-major), sequence `s` holds tokens
    /// `offsets[s]..offsets[s + 1]`; with `positions`, q and k are rotated and/or scores
    /// biased as it says. Returns `[tokens, heads·head_dim]`.
    fn attention(
        &self,
        qkv: &Self::Tensor,
        offsets: &[usize],
        heads: usize,
        head_dim: usize,
        positions: Option<&Self::Positions>,
    ) -> Result<Self::Tensor, BackendError>;
}

/// Where to compute, as a user asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The first CUDA GPU when CUDA is usable, else the CPU.
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    pub const ALL: [DeviceChoice; 3] = [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda];

    pub fn name(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
        }
    }

    /// What the choice means, in a few words.
    pub fn meaning(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "A CUDA GPU when one is usable, else the CPU",
            DeviceChoice::Cpu => "The CPU",
            DeviceChoice::Cuda => "The first CUDA GPU (an error when none is usable)",
        }
    }

    pub fn from_name(name: &str) -> Option<DeviceChoice> {
        DeviceChoice::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// The backend chosen.
pub enum Selected {
    Cpu(cpu::CpuBackend),
    Cuda(cuda::CudaBackend),
}

/// The GPUs a run uses (`--devices`): every visible one, or these ordinals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceList {
    All,
    Ordinals(Vec<usize>),
}

impl DeviceList {
    /// `all`, or ordinals separated by commas, each once.
    pub fn parse(text: &str) -> Result<DeviceList, String> {
        if text == "all" {
            return Ok(DeviceList::All);
        }
        let mut ordinals = Vec::new();
        for part in text.split(',') {
            let ordinal: usize = part.trim().parse().map_err(|_| {
                format!("{part:?} is not a GPU number (devices are `all` or numbers like 0,1)")
            })?;
            if ordinals.contains(&ordinal) {
                return Err(format!("GPU {ordinal} is named twice"));
            }
            ordinals.push(ordinal);
        }
        Ok(DeviceList::Ordinals(ordinals))
    }

    /// The ordinals, given how many GPUs are visible.
    pub fn ordinals(&self, visible: usize) -> Vec<usize> {
        match self {
            DeviceList::All => (0..visible).collect(),
            DeviceList::Ordinals(v) => v.clone(),
        }
    }
}

/// Opens every GPU of `list`, each with its own context, streams and decoders.
pub fn open_devices(list: &DeviceList) -> Result<Vec<cuda::CudaBackend>, cuda::CudaUnavailable> {
    let visible = cuda::CudaBackend::device_count()?;
    list.ordinals(visible)
        .into_iter()
        .map(cuda::CudaBackend::open)
        .collect()
}

/// Opens the backend `choice` asks for. `Auto` falls back to the CPU, returning why CUDA was
/// not used as the second value; `Cuda` fails when CUDA is not usable.
pub fn select(choice: DeviceChoice) -> Result<(Selected, Option<String>), cuda::CudaUnavailable> {
    match choice {
        DeviceChoice::Cpu => Ok((Selected::Cpu(cpu::CpuBackend), None)),
        DeviceChoice::Cuda => Ok((Selected::Cuda(cuda::CudaBackend::open(0)?), None)),
        DeviceChoice::Auto => match cuda::CudaBackend::open(0) {
            Ok(b) => Ok((Selected::Cuda(b), None)),
            Err(e) => Ok((Selected::Cpu(cpu::CpuBackend), Some(e.to_string()))),
        },
    }
}

/// [`Backend::add_layer_norm`] made of the backend's own `scale_columns`, `add` and
/// `layer_norm`.
pub fn add_then_layer_norm<B: Backend>(
    be: &B,
    residual: &B::Tensor,
    y: &B::Tensor,
    gamma: Option<&B::Tensor>,
    w: &B::Tensor,
    b: &B::Tensor,
    eps: f64,
) -> Result<(B::Tensor, B::Tensor), BackendError> {
    let sum = match gamma {
        Some(g) => be.add(residual, &be.scale_columns(y, g)?)?,
        None => be.add(residual, y)?,
    };
    let normed = be.layer_norm(&sum, w, b, eps)?;
    Ok((sum, normed))
}

#[cfg(test)]
mod tests {
    use super::DeviceList;

    #[test]
    fn device_lists_are_all_or_distinct_numbers() {
        assert_eq!(DeviceList::parse("all"), Ok(DeviceList::All));
        assert_eq!(DeviceList::parse("0"), Ok(DeviceList::Ordinals(vec![0])));
        assert_eq!(
            DeviceList::parse("2, 0,1"),
            Ok(DeviceList::Ordinals(vec![2, 0, 1]))
        );
        assert_eq!(DeviceList::All.ordinals(3), vec![0, 1, 2]);
        assert_eq!(DeviceList::Ordinals(vec![1]).ordinals(3), vec![1]);
        for bad in ["", "0,,1", "-1", "gpu0", "0,0", "all,1"] {
            assert!(DeviceList::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(DeviceList::parse("1,1").unwrap_err(), "GPU 1 is named twice");
    }
}
