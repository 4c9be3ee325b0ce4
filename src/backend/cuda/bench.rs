//! Timing the attention kernel: CUDA events around each launch, warm-up first, the median of
//! many runs, FLOPs counted as 4·B·H·N²·d; random bf16 inputs laid out as the model's fused
//! QKV projection gives them, B sequences of N tokens packed into one launch.

use super::attention::FlashArgs;
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
        let offsets: Vec<usize> = (0..=sequences).map(|s| s * tokens).collect();
        let args = FlashArgs {
            q: qkv.slice(0..),
            k: qkv.slice(width..),
            v: qkv.slice(2 * width..),
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
        for _ in 0..3 {
            self.flash_attention(&args, &mut out)?;
        }
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let start = stream
                .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(device_err)?;
            self.flash_attention(&args, &mut out)?;
            let end = stream
                .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(device_err)?;
            end.synchronize().map_err(device_err)?;
            times.push(start.elapsed_ms(&end).map_err(device_err)? as f64);
        }
        let used_after = self.memory().map(|(free, total)| total - free)?;
        let host = stream.clone_dtoh(&out).map_err(device_err)?;
        if host.iter().any(|v| !v.to_f32().is_finite()) {
            return Err(BackendError::Device(format!(
                "attention N {tokens} d {d}: the output has NaN or Inf"
            )));
        }
        times.sort_by(f64::total_cmp);
        let median_ms = times[times.len() / 2];
        let flops = 4.0 * (sequences * heads) as f64 * (tokens as f64).powi(2) * d as f64;
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

    fn describe_short(&self) -> String {
        self.inner.ctx.name().unwrap_or_default()
    }
}
