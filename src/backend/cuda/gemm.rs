//! The backend's GEMMs through cuBLASLt: `y = x · wᵀ`, bf16 in and out, f32 accumulation,
//! with the bias, or the bias then GELU, applied in the GEMM's epilogue while the tile is
//! still in registers. A separate bias or bias + GELU pass over the output cost about as
//! much as a third of the GEMMs themselves in a ViT-L/16 forward on an H200 (bench/RESULTS.md).
//!
//! cuBLASLt's GELU epilogue is the tanh form of GELU, not timm's erf form: the two differ by at
//! most 4.7e-4 (at x ≈ −2.7), below the bf16 rounding of any output of magnitude over 0.12; the
//! converted encoders' features still agree with the CPU reference (erf) to a cosine of
//! 0.9999 (`selftest --models`).
//!
//! A residual branch's last GEMM may also add its output to the f32 residual stream in the
//! epilogue (C = the stream, β = 1, D a new f32 stream): the separate residual add read the
//! GEMM's bf16 output back and wrote the stream again, a quarter of a ViT-L/16 forward's
//! non-GEMM time (bench/RESULTS.md).
//!
//! Each shape's descriptors and algorithm are made once and kept: a forward pass asks for
//! the same few shapes in every block. cuBLASLt's heuristic's first choice (for a 32 MiB
//! workspace, as NVIDIA recommends for Hopper) was up to 12% slower with the bias epilogue
//! than cuBLAS's own choice without it (ViT-H/14 on an H200: 669 against 762 TFLOP/s), so
//! for a GEMM of 4 GFLOP or more its first candidates are timed on the first call and the
//! fastest kept; smaller ones (a slide encoder's) take the first, and so does a shape with
//! fewer rows than one of its family already timed (a slide's last, partial batch: every
//! slide of a cohort has its own, and timing each cost a host wait and 96 GEMMs a shape).

use super::{device_err, CudaBackend, CudaTensor};
use crate::backend::BackendError;
use cudarc::cublaslt::sys;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, PushKernelArg};
use half::bf16;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

/// What the epilogue applies to `x · wᵀ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Epilogue {
    None,
    Bias,
    BiasGelu,
}

const WORKSPACE_BYTES: usize = 32 << 20;
/// Candidates asked of the heuristic, and timed where worth it.
const CANDIDATES: usize = 24;
const TIMED_FROM_FLOPS: f64 = 4e9;
/// Shapes kept: a batch run meets a new slide-encoder shape a slide.
const KEPT_PLANS: usize = 256;

/// The cuBLASLt handle, its workspace, and the plans made so far.
pub(super) struct Gemms {
    handle: sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    plans: Mutex<HashMap<PlanKey, Plan>>,
}

/// A plan's shape (rows, inner, out), epilogue, and whether it adds to an f32 stream.
type PlanKey = (usize, usize, usize, Epilogue, bool);

// SAFETY: the handle is used under the plans' lock only, and cuBLASLt handles may be used
// from any thread.
unsafe impl Send for Gemms {}
unsafe impl Sync for Gemms {}

impl Gemms {
    pub(super) fn new(stream: &Arc<CudaStream>) -> Result<Gemms, String> {
        let mut handle = std::ptr::null_mut();
        // SAFETY: one out-parameter.
        lt(unsafe { sys::cublasLtCreate(&mut handle) }).map_err(|e| format!("cuBLASLt: {e}"))?;
        // SAFETY: cuBLASLt writes its workspace before reading it.
        let workspace = unsafe { stream.alloc::<u8>(WORKSPACE_BYTES) }
            .map_err(|e| format!("cuBLASLt workspace: {e:?}"))?;
        Ok(Gemms {
            handle,
            workspace,
            plans: Mutex::new(HashMap::new()),
        })
    }
}

impl Drop for Gemms {
    fn drop(&mut self) {
        if let Ok(plans) = self.plans.get_mut() {
            plans.clear();
        }
        // SAFETY: created in `new`, and every plan made with it is gone.
        unsafe { sys::cublasLtDestroy(self.handle) };
    }
}

/// The descriptors of one shape and epilogue, and the algorithm chosen for it.
struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    /// w, x and y (bf16, or f32 when adding to a stream), in cuBLASLt's column-major terms.
    layouts: [sys::cublasLtMatrixLayout_t; 3],
    /// The heuristic's candidates, best guess first; after the first call, the chosen one
    /// alone.
    algos: Vec<sys::cublasLtMatmulAlgo_t>,
    /// Whether the chosen one was timed against the others.
    timed: bool,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: created by `Plan::new`, used by no one else.
        unsafe {
            sys::cublasLtMatmulDescDestroy(self.desc);
            for layout in self.layouts {
                sys::cublasLtMatrixLayoutDestroy(layout);
            }
        }
    }
}

fn lt(status: sys::cublasStatus_t) -> Result<(), String> {
    match status {
        sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

impl Plan {
    /// y `[rows, out]` = x `[rows, inner]` · w `[out, inner]`ᵀ, all row-major: in cuBLASLt's
    /// column-major terms yᵀ `[out, rows]` = (w stored `[inner, out]`)ᵀ · xᵀ `[inner, rows]`,
    /// so the bias (length `out`) runs along yᵀ's rows, as cuBLASLt's epilogue adds it.
    /// `accumulate`: y is f32, and C (of y's layout) is added to the product.
    fn new(handle: sys::cublasLtHandle_t, key: PlanKey) -> Result<Plan, String> {
        let (rows, inner, out, epilogue, accumulate) = key;
        let bf = sys::cudaDataType_t::CUDA_R_16BF;
        let y_type = match accumulate {
            true => sys::cudaDataType_t::CUDA_R_32F,
            false => bf,
        };
        let mut desc = std::ptr::null_mut();
        let mut layouts = [std::ptr::null_mut(); 3];
        // SAFETY: out-parameters, and attributes of the sizes cuBLASLt documents; whatever
        // was created is destroyed by the Plan's drop even when a later step fails.
        unsafe {
            lt(sys::cublasLtMatmulDescCreate(
                &mut desc,
                sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                sys::cudaDataType_t::CUDA_R_32F,
            ))?;
            let shapes = [(inner, out, bf), (inner, rows, bf), (out, rows, y_type)];
            for (layout, (r, c, ty)) in layouts.iter_mut().zip(shapes) {
                lt(sys::cublasLtMatrixLayoutCreate(
                    layout, ty, r as u64, c as u64, r as i64,
                ))?;
            }
            let mut plan = Plan {
                desc,
                layouts,
                algos: Vec::new(),
                timed: false,
            };
            // cublasOperation_t's CUBLAS_OP_T (cudarc's cuBLASLt bindings leave the type out).
            let transpose: i32 = 1;
            plan.set(
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                &transpose,
            )?;
            let mode = match epilogue {
                Epilogue::None => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_DEFAULT,
                Epilogue::Bias => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS,
                Epilogue::BiasGelu => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_GELU_BIAS,
            };
            plan.set(
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_EPILOGUE,
                &mode,
            )?;
            // cuBLASLt takes the bias in y's type unless told: a bf16 bias is told, and with an
            // f32 y (which refuses a bf16 bias) the caller widens it.
            if !accumulate {
                plan.set(
                    sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                    &bf,
                )?;
            }
            let mut preference = std::ptr::null_mut();
            lt(sys::cublasLtMatmulPreferenceCreate(&mut preference))?;
            let workspace = WORKSPACE_BYTES as u64;
            let chosen = lt(sys::cublasLtMatmulPreferenceSetAttribute(
                preference,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&workspace as *const u64).cast(),
                std::mem::size_of::<u64>(),
            ))
            .and_then(|()| {
                let mut results: [sys::cublasLtMatmulHeuristicResult_t; CANDIDATES] = std::mem::zeroed();
                let mut found = 0;
                lt(sys::cublasLtMatmulAlgoGetHeuristic(
                    handle,
                    desc,
                    layouts[0],
                    layouts[1],
                    layouts[2],
                    layouts[2],
                    preference,
                    CANDIDATES as i32,
                    results.as_mut_ptr(),
                    &mut found,
                ))?;
                let algos: Vec<_> = results[..found.clamp(0, CANDIDATES as i32) as usize]
                    .iter()
                    .map(|r| r.algo)
                    .collect();
                if algos.is_empty() {
                    return Err("no algorithm for this shape".into());
                }
                Ok(algos)
            });
            sys::cublasLtMatmulPreferenceDestroy(preference);
            plan.algos = chosen?;
            Ok(plan)
        }
    }

    /// Sets a descriptor attribute.
    unsafe fn set<T>(
        &mut self,
        attribute: sys::cublasLtMatmulDescAttributes_t,
        value: &T,
    ) -> Result<(), String> {
        lt(sys::cublasLtMatmulDescSetAttribute(
            self.desc,
            attribute,
            (value as *const T).cast(),
            std::mem::size_of::<T>(),
        ))
    }
}

impl CudaBackend {
    /// `x · wᵀ`, then the epilogue (`bias` `[1, out]` given exactly when it adds one), as a
    /// new bf16 `[x.rows, w.rows]` tensor; or, given an f32 `stream` of that shape, the
    /// stream plus all that, as a new f32 tensor.
    pub(super) fn gemm(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
        epilogue: Epilogue,
        stream_in: Option<&CudaSlice<f32>>,
    ) -> Result<CudaTensor, BackendError> {
        if x.cols != w.cols {
            return Err(BackendError::Input(format!(
                "matmul of [{}, {}] by [{}, {}]ᵀ",
                x.rows, x.cols, w.rows, w.cols
            )));
        }
        if bias.is_some_and(|b| b.rows * b.cols != w.rows) {
            return Err(BackendError::Input(format!("a bias for {} outputs", w.rows)));
        }
        let (rows, inner, out) = (x.rows, x.cols, w.rows);
        let accumulate = stream_in.is_some();
        let _span = self.span(
            match (epilogue, accumulate) {
                (Epilogue::None, false) => "GEMM",
                (Epilogue::Bias, false) => "GEMM + bias",
                (Epilogue::BiasGelu, _) => "GEMM + bias + GELU",
                (Epilogue::None, true) => "GEMM + residual",
                (Epilogue::Bias, true) => "GEMM + bias + residual",
            },
            2.0 * (rows * inner * out) as f64,
        );
        let mut y = match accumulate {
            true => Output::F32(self.alloc::<f32>(rows * out)?),
            false => Output::Bf16(self.alloc::<bf16>(rows * out)?),
        };
        let (w, x) = (self.bf16_data(w)?, self.bf16_data(x)?);
        let bias = bias.map(|b| self.bf16_data(b)).transpose()?;
        let wide_bias = match (&bias, accumulate) {
            (Some(b), true) => Some(self.widen(b, out)?),
            _ => None,
        };
        let gemms = &self.inner.gemms;
        let stream = &self.inner.stream;
        let mut plans = gemms.plans.lock().expect("no panics while held");
        let key = (rows, inner, out, epilogue, accumulate);
        if plans.len() >= KEPT_PLANS && !plans.contains_key(&key) {
            plans.clear();
        }
        // Asked only while the shape's algorithm is still to be chosen, not on every call.
        let chosen = plans.get(&key).is_some_and(|p| p.algos.len() == 1);
        let larger_timed = !chosen
            && plans.iter().any(|(k, p)| {
                p.timed && k.0 > rows && (k.1, k.2, k.3, k.4) == (inner, out, epilogue, accumulate)
            });
        let plan = match plans.entry(key) {
            Entry::Occupied(plan) => plan.into_mut(),
            Entry::Vacant(slot) => slot.insert(Plan::new(gemms.handle, key).map_err(|e| {
                BackendError::Device(format!("cuBLASLt, [{rows}, {inner}] · [{out}, {inner}]ᵀ: {e}"))
            })?),
        };
        // The guards cudarc returns record events only with event tracking, which is off.
        let (w_ptr, _) = w.device_ptr(stream);
        let (x_ptr, _) = x.device_ptr(stream);
        let y_ptr = match &mut y {
            Output::F32(d) => d.device_ptr_mut(stream).0,
            Output::Bf16(d) => d.device_ptr_mut(stream).0,
        };
        // C: the stream added to (β = 1), or y itself, unread (β = 0).
        let (c_ptr, beta) = match stream_in {
            Some(s) => (s.device_ptr(stream).0, 1f32),
            None => (y_ptr, 0f32),
        };
        let (workspace, _) = gemms.workspace.device_ptr(stream);
        let failed = |e: String| BackendError::Device(format!("cuBLASLt matmul: {e}"));
        // cuBLASLt works in the thread's current context, which cudarc's own calls set but a
        // GEMM may come first in a thread (a batch worker's, with several GPUs).
        stream.context().bind_to_thread().map_err(device_err)?;
        // SAFETY: the buffers hold the shapes the plan was made for (checked above), the
        // bias pointer is set on this plan's descriptor for this call under the lock, and
        // everything runs on the backend's one stream.
        unsafe {
            if let Some(bias) = &bias {
                let b_ptr = match &wide_bias {
                    Some(wide) => wide.device_ptr(stream).0,
                    None => bias.device_ptr(stream).0,
                };
                plan.set(
                    sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                    &b_ptr,
                )
                .map_err(failed)?;
            }
            let run = |algo: &sys::cublasLtMatmulAlgo_t| {
                let one = 1f32;
                lt(sys::cublasLtMatmul(
                    gemms.handle,
                    plan.desc,
                    (&one as *const f32).cast(),
                    w_ptr as *const c_void,
                    plan.layouts[0],
                    x_ptr as *const c_void,
                    plan.layouts[1],
                    (&beta as *const f32).cast(),
                    c_ptr as *const c_void,
                    plan.layouts[2],
                    y_ptr as *mut c_void,
                    plan.layouts[2],
                    algo,
                    workspace as *mut c_void,
                    WORKSPACE_BYTES,
                    stream.cu_stream() as sys::cudaStream_t,
                ))
            };
            if plan.algos.len() > 1 {
                plan.timed = !larger_timed && 2.0 * (rows * inner * out) as f64 >= TIMED_FROM_FLOPS;
                let best = if plan.timed {
                    fastest(stream, &plan.algos, &run)?
                } else {
                    0
                };
                plan.algos = vec![plan.algos[best]];
            }
            run(&plan.algos[0]).map_err(failed)?;
        }
        drop(plans);
        Ok(match y {
            Output::F32(d) => self.tensor_f32(d, rows, out),
            Output::Bf16(d) => self.tensor(d, rows, out),
        })
    }
}

impl CudaBackend {
    /// The first `n` values of `x` as f32.
    fn widen(&self, x: &CudaSlice<bf16>, n: usize) -> Result<CudaSlice<f32>, BackendError> {
        let mut out = self.alloc::<f32>(n)?;
        let n64 = n as i64;
        launch!(self, "to_f32", Self::elementwise(n), x, &mut out, &n64)?;
        Ok(out)
    }
}

/// A GEMM's output buffer.
enum Output {
    Bf16(CudaSlice<bf16>),
    F32(CudaSlice<f32>),
}

/// The index of the fastest of `algos` run by `run`: each run once to warm, then three
/// times between events (a host wait, on a shape's first call only). A candidate that fails
/// (some need more workspace than they claimed) is passed over.
fn fastest(
    stream: &Arc<CudaStream>,
    algos: &[sys::cublasLtMatmulAlgo_t],
    run: &dyn Fn(&sys::cublasLtMatmulAlgo_t) -> Result<(), String>,
) -> Result<usize, BackendError> {
    let event = || {
        stream
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(device_err)
    };
    let mut best = (0, f32::INFINITY);
    for (i, algo) in algos.iter().enumerate() {
        if run(algo).is_err() {
            continue;
        }
        let start = event()?;
        let ok = (0..3).all(|_| run(algo).is_ok());
        let end = event()?;
        let ms = start.elapsed_ms(&end).map_err(device_err)?;
        if ok && ms < best.1 {
            best = (i, ms);
        }
    }
    Ok(best.0)
}
