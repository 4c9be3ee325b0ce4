//! Where the GPU's time goes in a forward pass: CUDA events around each operation (cuBLAS
//! GEMMs, our kernels, attention, uploads), summed per operation, when asked
//! (`bench encoder --profile`). Events are recorded on the compute stream, so nothing waits
//! for them; while profiling is off an operation pays one atomic load and nothing else.

use super::{device_err, CudaBackend};
use crate::backend::BackendError;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::CudaEvent;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Whether profiling is on, and the events of every operation since it started.
#[derive(Default)]
pub(super) struct Spans {
    on: AtomicBool,
    recorded: Mutex<Vec<Span>>,
}

pub(super) struct Span {
    op: &'static str,
    flops: f64,
    start: CudaEvent,
    end: CudaEvent,
}

/// One operation's share of the profiled passes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpTime {
    pub op: &'static str,
    pub calls: usize,
    pub ms: f64,
    /// Tera floating-point operations per second, where the operation counts them (GEMMs,
    /// attention).
    pub tflops: Option<f64>,
}

/// Records the end of an operation when dropped.
pub(super) struct SpanGuard<'a> {
    backend: &'a CudaBackend,
    op: &'static str,
    flops: f64,
    start: Option<CudaEvent>,
}

impl Drop for SpanGuard<'_> {
    fn drop(&mut self) {
        let inner = &self.backend.inner;
        let (Some(start), Ok(end)) = (
            self.start.take(),
            inner.stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)),
        ) else {
            return;
        };
        if let Ok(mut spans) = inner.spans.recorded.lock() {
            spans.push(Span {
                op: self.op,
                flops: self.flops,
                start,
                end,
            });
        }
    }
}

impl CudaBackend {
    /// Starts (clearing what was recorded) or stops recording operations.
    pub fn profile_ops(&self, on: bool) {
        if on {
            if let Ok(mut spans) = self.inner.spans.recorded.lock() {
                spans.clear();
            }
        }
        self.inner.spans.on.store(on, Ordering::Release);
    }

    /// Times `op` (doing `flops` floating-point operations) from now until the guard drops,
    /// when profiling is on.
    pub(super) fn span(&self, op: &'static str, flops: f64) -> Option<SpanGuard<'_>> {
        if !self.inner.spans.on.load(Ordering::Acquire) {
            return None;
        }
        let start = self
            .inner
            .stream
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .ok()?;
        Some(SpanGuard {
            backend: self,
            op,
            flops,
            start: Some(start),
        })
    }

    /// The time of each operation recorded so far, summed, the largest first (waits for
    /// the stream).
    pub fn op_times(&self) -> Result<Vec<OpTime>, BackendError> {
        self.inner.stream.synchronize().map_err(device_err)?;
        let spans = self
            .inner
            .spans
            .recorded
            .lock()
            .map_err(|_| BackendError::Device("profile lock poisoned".into()))?;
        let mut by_op: BTreeMap<&'static str, (usize, f64, f64)> = BTreeMap::new();
        for s in spans.iter() {
            let ms = s.start.elapsed_ms(&s.end).map_err(device_err)? as f64;
            let e = by_op.entry(s.op).or_default();
            *e = (e.0 + 1, e.1 + ms, e.2 + s.flops);
        }
        let mut times: Vec<OpTime> = by_op
            .into_iter()
            .map(|(op, (calls, ms, flops))| OpTime {
                op,
                calls,
                ms,
                tflops: (flops > 0.0).then(|| flops / (ms * 1e-3) / 1e12),
            })
            .collect();
        times.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(times)
    }
}

impl CudaBackend {
    /// Records where a batch starts or ends on the compute stream.
    pub(super) fn mark(&self, start: bool) {
        let event = self
            .inner
            .stream
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT));
        if let (Ok(event), Ok(mut marks)) = (event, self.inner.batch_marks.lock()) {
            marks.push((start, event));
        }
    }

    /// The compute stream's idle time from each marked end to the next marked start.
    pub(super) fn idle_between_marks(&self) -> f64 {
        let Ok(mut marks) = self.inner.batch_marks.lock() else {
            return 0.0;
        };
        let idle: f64 = marks
            .windows(2)
            .filter(|w| !w[0].0 && w[1].0)
            .filter_map(|w| w[0].1.elapsed_ms(&w[1].1).ok())
            .map(|ms| ms.max(0.0) as f64 / 1e3)
            .sum();
        marks.clear();
        idle
    }
}
