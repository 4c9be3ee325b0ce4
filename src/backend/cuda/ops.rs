//! The backend's operations on the GPU: GEMMs through cuBLAS (bf16 in, f32 accumulation),
//! the rest as kernels of kernels/layers.cu, attention through attention.rs.

use super::context::JPEG_DECODERS;
use super::gemm::Epilogue;
use super::tile_decoder::SharedJpegDecoder;
use super::{attention, device_err, CudaBackend, CudaPixels, CudaPositions, CudaTensor, Storage};
use crate::backend::{Backend, BackendError, PositionSpec, TileDecoder};
use cudarc::driver::{LaunchConfig, PushKernelArg};
use half::bf16;
use rayon::prelude::*;

/// Values an upload stages in page-locked memory at most (64 MiB of bf16, each of two
/// buffers).
const STAGED_VALUES: usize = 32 << 20;

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
        let _span = self.span("upload", 0.0);
        // Converted on every core for large uploads (a training crop: 65,536 tokens × 128
        // features).
        let fill = |host: &mut [bf16]| {
            host.par_iter_mut()
                .with_min_len(1 << 16)
                .zip(data.par_iter())
                .for_each(|(to, &x)| *to = bf16::from_f32(x))
        };
        // Beyond a crop's size (a whole slide's features), from pageable memory: the staging
        // buffers stay as large as the largest upload.
        if data.len() > STAGED_VALUES {
            let mut host = vec![bf16::ZERO; data.len()];
            fill(&mut host);
            return Ok(self.tensor(self.upload_raw(&host)?, rows, cols));
        }
        // Into page-locked memory and copied from there without holding this thread: from
        // pageable memory the driver's copy would.
        let mut out = self.alloc::<bf16>(data.len())?;
        self.inner
            .tensor_staging
            .lock()
            .map_err(|_| BackendError::Device("an upload failed earlier".into()))?
            .copy(&self.inner.stream, data.len(), fill, &mut out)?;
        Ok(self.tensor(out, rows, cols))
    }

    fn download(&self, x: &CudaTensor) -> Result<Vec<f32>, BackendError> {
        let _span = self.span("download", 0.0);
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
        let epilogue = if b.is_some() {
            Epilogue::Bias
        } else {
            Epilogue::None
        };
        self.gemm(x, w, b, epilogue, None)
    }

    fn linear_residual(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: Option<&CudaTensor>,
        residual: &CudaTensor,
    ) -> Result<CudaTensor, BackendError> {
        let epilogue = if b.is_some() {
            Epilogue::Bias
        } else {
            Epilogue::None
        };
        match &residual.data {
            Storage::F32(stream) if (residual.rows, residual.cols) == (x.rows, w.rows) => {
                self.gemm(x, w, b, epilogue, Some(&**stream))
            }
            _ => self.add(residual, &self.gemm(x, w, b, epilogue, None)?),
        }
    }

    fn linear_gelu(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
    ) -> Result<CudaTensor, BackendError> {
        self.gemm(x, w, Some(b), Epilogue::BiasGelu, None)
    }

    fn layer_norm(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
        eps: f64,
    ) -> Result<CudaTensor, BackendError> {
        let _span = self.span("layer norm", 0.0);
        let mut out = self.alloc::<bf16>(x.rows * x.cols)?;
        let (rows, cols, eps) = (x.rows as i64, x.cols as i32, eps as f32);
        let (w, b) = (self.bf16_data(w)?, self.bf16_data(b)?);
        let (x_ptr, x_ty) = x.data.pointer(&self.inner.stream);
        let (name, cfg) = match (warp_norm_groups(x.cols), row_norm_takes(x.cols)) {
            (Some(groups), _) => (
                format!("layer_norm_warp{groups}_{x_ty}"),
                warp_norm_launch(x.rows),
            ),
            (None, true) => (format!("layer_norm_rows_{x_ty}"), row_norm_launch(x.rows, x.cols)),
            (None, false) => (format!("layer_norm_{x_ty}"), warp_norm_launch(x.rows)),
        };
        launch!(self, &name, cfg, &x_ptr, &*w, &*b, &mut out, &rows, &cols, &eps)?;
        Ok(self.tensor(out, x.rows, x.cols))
    }

    fn add_layer_norm(
        &self,
        residual: &CudaTensor,
        y: &CudaTensor,
        gamma: Option<&CudaTensor>,
        w: &CudaTensor,
        b: &CudaTensor,
        eps: f64,
    ) -> Result<(CudaTensor, CudaTensor), BackendError> {
        let (rows, cols) = (residual.rows, residual.cols);
        if (y.rows, y.cols) != (rows, cols) {
            return Err(BackendError::Input(format!(
                "add of [{rows}, {cols}] and [{}, {}]",
                y.rows, y.cols
            )));
        }
        if !row_norm_takes(cols) {
            return crate::backend::add_then_layer_norm(self, residual, y, gamma, w, b, eps);
        }
        let _span = self.span("residual add + layer norm", 0.0);
        let mut sum = self.alloc::<f32>(rows * cols)?;
        let mut normed = self.alloc::<bf16>(rows * cols)?;
        let (y, w, b) = (self.bf16_data(y)?, self.bf16_data(w)?, self.bf16_data(b)?);
        // Without layer scale the kernel never reads `gamma`; the norm's weight stands in as
        // a valid pointer.
        let (gamma, has_gamma) = match gamma {
            Some(g) => (self.bf16_data(g)?, 1i32),
            None => (w.clone(), 0),
        };
        let cfg = row_norm_launch(rows, cols);
        let (rows64, cols32, eps) = (rows as i64, cols as i32, eps as f32);
        let (r_ptr, r_ty) = residual.data.pointer(&self.inner.stream);
        let name = format!("add_layer_norm_{r_ty}");
        launch!(
            self,
            &name,
            cfg,
            &r_ptr,
            &*y,
            &*gamma,
            &has_gamma,
            &*w,
            &*b,
            &mut sum,
            &mut normed,
            &rows64,
            &cols32,
            &eps
        )?;
        Ok((self.tensor_f32(sum, rows, cols), self.tensor(normed, rows, cols)))
    }

    fn gelu(&self, x: &CudaTensor) -> Result<CudaTensor, BackendError> {
        let _span = self.span("GELU", 0.0);
        let n = x.rows * x.cols;
        let mut out = self.alloc::<bf16>(n)?;
        let n64 = n as i64;
        let x_data = self.bf16_data(x)?;
        launch!(self, "gelu", Self::elementwise(n), &*x_data, &mut out, &n64)?;
        Ok(self.tensor(out, x.rows, x.cols))
    }

    fn swiglu(&self, x: &CudaTensor) -> Result<CudaTensor, BackendError> {
        let _span = self.span("SwiGLU", 0.0);
        let half = x.cols / 2;
        let mut out = self.alloc::<bf16>(x.rows * half)?;
        let (rows, h) = (x.rows as i64, half as i32);
        let x_data = self.bf16_data(x)?;
        let cfg = LaunchConfig {
            grid_dim: (
                (half / 4).div_ceil(256).max(1) as u32,
                x.rows.clamp(1, 65_535) as u32,
                1,
            ),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, "swiglu", cfg, &*x_data, &mut out, &rows, &h)?;
        Ok(self.tensor(out, x.rows, half))
    }

    fn add(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor, BackendError> {
        let _span = self.span("residual add", 0.0);
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
        let _span = self.span("layer scale", 0.0);
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
        let _span = self.span("concatenate", 0.0);
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

    fn concat_cols(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor, BackendError> {
        let _span = self.span("concatenate", 0.0);
        if a.rows != b.rows {
            return Err(BackendError::Input(format!(
                "side by side: [{}, {}] and [{}, {}]",
                a.rows, a.cols, b.rows, b.cols
            )));
        }
        let cols = a.cols + b.cols;
        let mut out = self.alloc::<bf16>(a.rows * cols)?;
        let (a_data, b_data) = (self.bf16_data(a)?, self.bf16_data(b)?);
        let (rows, ca, cb) = (a.rows as i64, a.cols as i32, b.cols as i32);
        launch!(
            self,
            "concat_cols",
            Self::elementwise(a.rows * cols),
            &*a_data,
            &*b_data,
            &mut out,
            &rows,
            &ca,
            &cb
        )?;
        Ok(self.tensor(out, a.rows, cols))
    }

    fn upload_pixels(&self, rgb: &[u8]) -> Result<CudaPixels, BackendError> {
        self.upload_tiles(rgb)
    }

    fn mark_batch(&self, start: bool) {
        self.mark(start);
    }

    fn idle_seconds(&self) -> f64 {
        self.idle_between_marks()
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

    fn warms_up(&self) -> bool {
        true
    }

    fn tile_decoders(&self) -> Vec<Box<dyn TileDecoder<CudaPixels>>> {
        self.start_jpeg_decoders();
        if let Some(Err(_)) = self.inner.jpeg[0].get() {
            return Vec::new();
        }
        (0..JPEG_DECODERS)
            .map(|index| {
                let backend = self.clone();
                Box::new(SharedJpegDecoder {
                    backend,
                    index,
                    seconds: Default::default(),
                }) as Box<dyn TileDecoder<CudaPixels>>
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
        let _span = self.span("patchify", 0.0);
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
        let _span = self.span("prefix + position", 0.0);
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
        let _span = self.span("pooling", 0.0);
        let mut out = self.alloc::<bf16>(seqs * x.cols)?;
        if seqs == 0 || x.cols == 0 {
            return Ok(self.tensor(out, seqs, x.cols));
        }
        let (len, st, c, d) = ((x.rows / seqs) as i64, start as i64, count as i64, x.cols as i32);
        let (x_ptr, ty) = x.data.pointer(&self.inner.stream);
        let name = format!("mean_rows_{ty}");
        // A block a sequence and 32 columns (layers.cu).
        let cfg = LaunchConfig {
            grid_dim: (seqs as u32, x.cols.div_ceil(32) as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, &name, cfg, &x_ptr, &mut out, &len, &st, &c, &d)?;
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
        let _span = self.span("group tokens", 0.0);
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
            Some(self.upload_raw(&attention::alibi_slopes_log2(heads))?)
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
        // QKᵀ and P·V: 2·n²·d each per head and sequence.
        let flops: f64 = offsets
            .windows(2)
            .map(|w| 4.0 * ((w[1] - w[0]) as f64).powi(2) * (heads * head_dim) as f64)
            .sum();
        let _span = self.span("attention", flops);
        attention::packed_attention(self, qkv, offsets, heads, head_dim, positions)
    }
}

/// The `layer_norm_warp{GROUPS}` kernel for rows of `cols`, if one takes them: chunks of 128
/// columns, at most 12 (every ViT width from 384 to 1,536), held in registers sized for 4, 8
/// or 12.
fn warp_norm_groups(cols: usize) -> Option<usize> {
    if cols % 128 != 0 {
        return None;
    }
    [4, 8, 12].into_iter().find(|&g| (1..=g).contains(&(cols / 128)))
}

/// A warp-a-row norm's launch: 8 warps a block (grid-striding past 2^23 rows).
fn warp_norm_launch(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.div_ceil(8).clamp(1, 1 << 20) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Whether kernels/layers.cu's `row_norm` (a block a row, 4 columns a thread) takes rows of
/// `cols`.
fn row_norm_takes(cols: usize) -> bool {
    cols % 4 == 0 && cols <= 4 * 1024
}

/// `row_norm`'s launch for `rows` of `cols`: a block a row (grid-striding past 2^20 rows),
/// cols / 4 threads rounded up to whole warps.
fn row_norm_launch(rows: usize, cols: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.clamp(1, 1 << 20) as u32, 1, 1),
        block_dim: ((cols / 4).div_ceil(32).max(1) as u32 * 32, 1, 1),
        shared_mem_bytes: 0,
    }
}
