//! Timing the attention kernel: CUDA events around each launch, warm-up first, the median of
//! many runs, FLOPs counted as 4·B·H·N²·d; random bf16 inputs laid out as the model's fused
//! QKV projection gives them, B sequences of N tokens packed into one launch.

use super::attention::{fused_parts, FlashArgs};
use super::{device_err, CudaBackend};
use crate::backend::testing::random_inputs;
use crate::backend::BackendError;
use cudarc::driver::sys::CUevent_flags;
use half::bf16;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct GpuAttentionRun {
    pub device: String,
    /// The kernel that ran (kernels/flash_attn.cu's or flash_attn_sm90.cu's).
    pub kernel: String,
    /// Sequences of `tokens` tokens each, packed into one launch.
    pub sequences: usize,
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub runs: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub tflops: f64,
    /// q, k, v and the output (bytes).
    pub io_bytes: u64,
    /// Device memory the launch took beyond its inputs and output: the block table, and
    /// what the device reported used around the timed runs (bytes).
    pub extra_bytes: u64,
    pub device_used_delta_bytes: i64,
}

/// Training's attention timed ([`CudaBackend::bench_attention_backward`]).
#[derive(Debug, Clone, Serialize)]
pub struct GpuAttentionBackwardRun {
    pub device: String,
    pub sequences: usize,
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// The forward that saves the log-sum-exp.
    pub forward_ms: f64,
    pub forward_tflops: f64,
    pub backward_ms: f64,
    pub backward_tflops: f64,
}

/// Offsets of `sequences` packed sequences of `tokens` tokens.
fn equal_offsets(sequences: usize, tokens: usize) -> Vec<usize> {
    (0..=sequences).map(|s| s * tokens).collect()
}

/// Attention's forward FLOPs over them (QKᵀ and PV, a multiply-add two).
fn forward_flops(sequences: usize, tokens: usize, heads: usize, d: usize) -> f64 {
    4.0 * (sequences * heads) as f64 * (tokens as f64).powi(2) * d as f64
}

impl CudaBackend {
    /// Times attention over `sequences` packed sequences of `tokens` tokens each.
    pub fn bench_attention(
        &self,
        sequences: usize,
        tokens: usize,
        heads: usize,
        d: usize,
        runs: usize,
    ) -> Result<GpuAttentionRun, BackendError> {
        let width = heads * d;
        let total = sequences * tokens;
        let qkv: Vec<bf16> = random_inputs(total * 3 * width, 42)
            .into_iter()
            .map(bf16::from_f32)
            .collect();
        let qkv = self.upload_raw(&qkv)?;
        let mut out = self.upload_raw(&vec![bf16::NAN; total * width])?;
        let offsets = equal_offsets(sequences, tokens);
        let (q, k, v) = fused_parts(&qkv, width);
        let args = FlashArgs {
            q,
            k,
            v,
            q_stride: 3 * width,
            kv_stride: 3 * width,
            offsets: &offsets,
            heads,
            head_dim: d,
            alibi: None,
        };
        let stream = &self.inner.stream;
        stream.synchronize().map_err(device_err)?;
        let used_before = self.memory().map(|(free, total)| total - free)?;
        let times = self.event_times(runs, &mut || self.flash_attention(&args, &mut out))?;
        let used_after = self.memory().map(|(free, total)| total - free)?;
        let host = stream.clone_dtoh(&out).map_err(device_err)?;
        if host.iter().any(|v| !v.to_f32().is_finite()) {
            return Err(BackendError::Device(format!(
                "attention N {tokens} d {d}: the output has NaN or Inf"
            )));
        }
        let median_ms = times[times.len() / 2];
        let flops = forward_flops(sequences, tokens, heads, d);
        let kernel = self.attention_kernel(&args);
        let blocks = sequences * tokens.div_ceil(kernel.map_or(1, |k| k.block_m));
        Ok(GpuAttentionRun {
            device: self.describe_short(),
            kernel: kernel.map_or("", |k| k.name).to_string(),
            sequences,
            tokens,
            heads,
            head_dim: d,
            runs: times.len(),
            median_ms,
            min_ms: times[0],
            tflops: flops / (median_ms * 1e-3) / 1e12,
            io_bytes: (total * width * 2 * 4) as u64,
            // The block table: offsets, then each block's first row and sequence (i64).
            extra_bytes: (8 * (sequences + 1) + 16 * blocks) as u64,
            device_used_delta_bytes: used_after as i64 - used_before as i64,
        })
    }

    /// Times training's attention over `sequences` packed sequences of `tokens` tokens: the
    /// forward that saves the log-sum-exp, and the backward (δ, the kernel, dQ's scaling),
    /// each the median of `runs` after warm-ups; the backward's FLOPs counted as 2.5 times the
    /// forward's (its five products against two), as FlashAttention's papers count them.
    pub fn bench_attention_backward(
        &self,
        sequences: usize,
        tokens: usize,
        heads: usize,
        d: usize,
        runs: usize,
    ) -> Result<GpuAttentionBackwardRun, BackendError> {
        use crate::backend::grad::Gradients;
        use crate::backend::Backend;
        let width = heads * d;
        let total = sequences * tokens;
        let qkv = self.upload(&random_inputs(total * 3 * width, 42), total, 3 * width)?;
        let dout = self.upload(&random_inputs(total * width, 43), total, width)?;
        let offsets = equal_offsets(sequences, tokens);
        let median = |f: &mut dyn FnMut() -> Result<(), BackendError>| -> Result<f64, BackendError> {
            let times = self.event_times(runs, f)?;
            Ok(times[times.len() / 2])
        };
        let (out, lse) = self.attention_saving(&qkv, &offsets, heads, d, None)?;
        let forward_ms = median(&mut || self.attention_saving(&qkv, &offsets, heads, d, None).map(|_| ()))?;
        let backward_ms = median(&mut || {
            self.attention_backward(&qkv, &out, &lse, &dout, &offsets, heads, d, None)
                .map(|_| ())
        })?;
        let dqkv =
            self.download(&self.attention_backward(&qkv, &out, &lse, &dout, &offsets, heads, d, None)?)?;
        if dqkv.iter().any(|v| !v.is_finite()) {
            return Err(BackendError::Device(format!(
                "attention backward N {tokens} d {d}: the gradient has NaN or Inf"
            )));
        }
        let flops = forward_flops(sequences, tokens, heads, d);
        Ok(GpuAttentionBackwardRun {
            device: self.describe_short(),
            sequences,
            tokens,
            heads,
            head_dim: d,
            forward_ms,
            forward_tflops: flops / (forward_ms * 1e-3) / 1e12,
            backward_ms,
            backward_tflops: 2.5 * flops / (backward_ms * 1e-3) / 1e12,
        })
    }

    /// Milliseconds of `runs` runs of `f` (at least one) between CUDA events, after three
    /// warm-up runs, fastest first.
    fn event_times(
        &self,
        runs: usize,
        f: &mut dyn FnMut() -> Result<(), BackendError>,
    ) -> Result<Vec<f64>, BackendError> {
        for _ in 0..3 {
            f()?;
        }
        let stream = &self.inner.stream;
        let event = || {
            stream
                .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(device_err)
        };
        let mut times = Vec::with_capacity(runs.max(1));
        for _ in 0..runs.max(1) {
            let start = event()?;
            f()?;
            let end = event()?;
            end.synchronize().map_err(device_err)?;
            times.push(start.elapsed_ms(&end).map_err(device_err)? as f64);
        }
        times.sort_by(f64::total_cmp);
        Ok(times)
    }

    fn describe_short(&self) -> String {
        self.inner.ctx.name().unwrap_or_default()
    }
}
