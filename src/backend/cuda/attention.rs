//! Launching the attention kernels (kernels/flash_attn.cu everywhere; flash_attn_sm90.cu and
//! flash_attn_sm90_tma.cu on a Hopper): which one a launch runs, the per-block table of a
//! packed batch, strides or TMA tensor maps, the optional rotary embedding (applied to
//! copies of q and k first) and ALiBi slopes.

use super::kernels::{DeviceElem, FlashKernel, KernelFamily, KernelSignature, TensorMap, FLASH_KERNELS};
use super::{device_err, CudaBackend, CudaPositions, CudaTensor};
use crate::backend::BackendError;
use cudarc::driver::{
    sys, CudaFunction, CudaSlice, CudaView, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
};
use half::bf16;
use std::collections::HashMap;
use std::sync::Arc;

/// The kernel for `T` and head dim `d`: of `family` where it has one for `d`, else
/// flash_attn.cu's, if it has one.
pub(super) fn kernel_for<T: AttentionType>(d: usize, family: KernelFamily) -> Option<&'static FlashKernel> {
    let find = |family: KernelFamily| {
        FLASH_KERNELS
            .iter()
            .find(|k| k.head_dim == d && k.bf16 == T::BF16 && k.family == family)
    };
    find(family).or_else(|| find(KernelFamily::MmaSync))
}

/// The head dims with a kernel for `T` on every GPU, ascending.
pub(super) fn head_dims<T: AttentionType>() -> Vec<usize> {
    family_dims(T::BF16, KernelFamily::MmaSync)
}

/// The head dims `family` has bf16 kernels of its own for, ascending: a launch at another
/// head dim runs flash_attn.cu's kernel instead (so a benchmark asking for the family says
/// so rather than time another kernel).
pub fn family_head_dims(family: KernelFamily) -> Vec<usize> {
    family_dims(true, family)
}

fn family_dims(bf16: bool, family: KernelFamily) -> Vec<usize> {
    let mut dims: Vec<usize> = FLASH_KERNELS
        .iter()
        .filter(|k| k.bf16 == bf16 && k.family == family)
        .map(|k| k.head_dim)
        .collect();
    dims.sort_unstable();
    dims.dedup();
    dims
}

/// The error for head dim `d` without a kernel: it names those with one.
fn unsupported_head_dim<T: AttentionType>(d: usize) -> BackendError {
    let dims: Vec<String> = head_dims::<T>().iter().map(usize::to_string).collect();
    let list = match dims.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => "none".into(),
    };
    BackendError::Device(format!(
        "the CUDA attention kernel ({}) takes head dims {list}, not {d}",
        T::NAME
    ))
}

/// Shared memory of `kernel`: the Q tile and its stages of K and V, in rows of its stride;
/// for wgmma's swizzled tiles, 1 KB more to start them on a 1,024-byte boundary, and after
/// the TMA kernels', their mbarriers (Q's arrival and release, each stage's K, V and release).
pub(super) fn smem_bytes(kernel: &FlashKernel) -> usize {
    let tiles = (kernel.block_m + 2 * kernel.stages * kernel.block_n) * kernel.row_stride * 2;
    tiles
        + match kernel.family {
            KernelFamily::MmaSync => 0,
            KernelFamily::Wgmma | KernelFamily::WgmmaPipelined => 1024,
            KernelFamily::WgmmaTma | KernelFamily::WgmmaTmaPersistent => 1024 + 8 * (2 + 3 * kernel.stages),
        }
}

/// Lets each attention kernel use the shared memory it needs (over the 48 KB default).
pub(super) fn configure(
    functions: &HashMap<&'static str, (CudaFunction, &'static KernelSignature)>,
) -> Result<(), cudarc::driver::DriverError> {
    for kernel in FLASH_KERNELS {
        functions[kernel.name].0.set_attribute(
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem_bytes(kernel) as i32,
        )?;
    }
    Ok(())
}

/// The kernel families a GPU runs: on a Hopper the wgmma kernels and flash_attn.cu's,
/// elsewhere flash_attn.cu's.
pub(super) fn families(hopper: bool) -> &'static [KernelFamily] {
    if hopper {
        &[
            KernelFamily::WgmmaTma,
            KernelFamily::WgmmaTmaPersistent,
            KernelFamily::Wgmma,
            KernelFamily::WgmmaPipelined,
            KernelFamily::MmaSync,
        ]
    } else {
        &[KernelFamily::MmaSync]
    }
}

/// Mean tokens a sequence from which a Hopper runs the one-tile TMA kernel (version 3) by
/// default. Below it, in tile-length batches, blocks do one or two key blocks each: the
/// persistent TMA kernel (version 4), which overlaps one tile's end with the next one's start,
/// was the fastest there (H200, 256 × 197 tokens × 16 heads of 64: 146.6 TFLOP/s against the
/// cp.async wgmma kernel's 138.1 and version 3's 100.5 in one job; bench/RESULTS.md); from
/// 1,024 tokens version 3 is (113 against 83 for the cp.async kernel at 1k, 2-17% over
/// version 4 at 16k-128k).
const TMA_FROM_MEAN_TOKENS: usize = 512;

/// The family a launch over `offsets` runs by default: on a Hopper the one-tile TMA kernel for
/// long sequences and the persistent one for short ones, elsewhere flash_attn.cu's.
fn default_family(hopper: bool, offsets: &[usize]) -> KernelFamily {
    let sequences = offsets.len().saturating_sub(1).max(1);
    let tokens = *offsets.last().unwrap_or(&0);
    match hopper {
        true if tokens / sequences >= TMA_FROM_MEAN_TOKENS => KernelFamily::WgmmaTma,
        true => KernelFamily::WgmmaTmaPersistent,
        false => KernelFamily::MmaSync,
    }
}

impl CudaBackend {
    /// The attention kernel families this GPU runs.
    pub fn attention_families(&self) -> &'static [KernelFamily] {
        families(self.inner.hopper)
    }

    /// Runs attention through `family`'s kernels where they take the head dim, flash_attn.cu's
    /// elsewhere (`MmaSync` runs everywhere; the wgmma families need a Hopper); `None`: the
    /// GPU's own choice for each launch (the default).
    pub fn use_attention_kernels(&self, family: Option<KernelFamily>) -> Result<(), BackendError> {
        if family.is_some_and(|f| f != KernelFamily::MmaSync) && !self.inner.hopper {
            return Err(BackendError::Device(
                "the wgmma attention kernels need a Hopper GPU (compute capability 9.0, sm_90a)".into(),
            ));
        }
        *self.inner.attention_family.lock().expect("no panics while held") = family;
        Ok(())
    }

    /// The kernel a launch of `a` runs: the family asked for, or the GPU's choice; the TMA
    /// kernel's cp.async sibling where the TMA cannot read the inputs; flash_attn.cu's for a
    /// head dim the family lacks; of a family's kernels for the head dim, the one whose
    /// query blocks suit the launch ([`by_waves`]).
    pub(super) fn attention_kernel<T: AttentionType>(
        &self,
        a: &FlashArgs<T>,
    ) -> Option<&'static FlashKernel> {
        let asked = *self.inner.attention_family.lock().expect("no panics while held");
        let family = match asked.unwrap_or_else(|| default_family(self.inner.hopper, a.offsets)) {
            family if family.uses_tma() && !tma_can_read(a) => KernelFamily::Wgmma,
            family => family,
        };
        let first = kernel_for::<T>(a.head_dim, family)?;
        let siblings = FLASH_KERNELS
            .iter()
            .filter(|k| k.head_dim == first.head_dim && k.bf16 == first.bf16 && k.family == first.family);
        by_waves(siblings, a.offsets, a.heads, self.inner.multiprocessors)
    }

    /// Whether the GPU is a Hopper (sm_90a), where the wgmma attention kernels run.
    pub fn is_hopper(&self) -> bool {
        self.inner.hopper
    }
}

/// The 16-bit float type of an attention's inputs.
pub trait AttentionType: DeviceRepr + DeviceElem {
    /// bf16 (else fp16): which of flash_attn.cu's kernels reads it.
    const BF16: bool;
    /// Its name, for reports.
    const NAME: &'static str;
}
impl AttentionType for bf16 {
    const BF16: bool = true;
    const NAME: &'static str = "bf16";
}
impl AttentionType for half::f16 {
    const BF16: bool = false;
    const NAME: &'static str = "f16";
}

/// One attention launch: q, k, v views with their token strides (in elements), the packed
/// batch's offsets, and where the output goes (`[tokens, heads·head_dim]`).
pub struct FlashArgs<'a, T> {
    pub q: CudaView<'a, T>,
    pub k: CudaView<'a, T>,
    pub v: CudaView<'a, T>,
    pub q_stride: usize,
    pub kv_stride: usize,
    pub offsets: &'a [usize],
    pub heads: usize,
    pub head_dim: usize,
    /// Grid positions `[tokens, 2]` and per-head slopes × log2 e, for the ALiBi bias.
    pub alibi: Option<(&'a CudaSlice<f32>, &'a CudaSlice<f32>)>,
}

/// Recent block tables by their offsets and query rows per block, newest last.
pub(super) type BlockTables = std::sync::Mutex<Vec<((Vec<usize>, usize), Arc<CudaSlice<i64>>)>>;
const CACHED_TABLES: usize = 8;

impl CudaBackend {
    /// The block table of a packed batch (`[offsets | each block's first row | each block's
    /// sequence]`) and its number of query blocks: uploaded once per distinct batch layout
    /// and kept, so a forward pass's layers (and repeated calls) launch without a copy.
    pub(super) fn block_table(
        &self,
        offsets: &[usize],
        block_m: usize,
    ) -> Result<(Arc<CudaSlice<i64>>, usize), BackendError> {
        let blocks: usize = offsets.windows(2).map(|w| (w[1] - w[0]).div_ceil(block_m)).sum();
        if blocks > i32::MAX as usize {
            return Err(BackendError::Device(
                "too many query blocks for one launch".into(),
            ));
        }
        let mut cache = self.inner.block_tables.lock().expect("no panics while held");
        if let Some(i) = cache.iter().position(|((o, m), _)| o == offsets && *m == block_m) {
            let entry = cache.remove(i);
            let table = entry.1.clone();
            cache.push(entry);
            return Ok((table, blocks));
        }
        let mut table: Vec<i64> = offsets.iter().map(|&o| o as i64).collect();
        let starts = offsets
            .windows(2)
            .enumerate()
            .flat_map(|(s, w)| (w[0]..w[1]).step_by(block_m).map(move |q0| (s, q0)));
        table.extend(starts.clone().map(|(_, q0)| q0 as i64));
        table.extend(starts.map(|(s, _)| s as i64));
        let table = Arc::new(self.upload_raw(&table)?);
        if cache.len() == CACHED_TABLES {
            cache.remove(0);
        }
        cache.push(((offsets.to_vec(), block_m), table.clone()));
        Ok((table, blocks))
    }

    /// Runs the attention kernel, writing `out` (`[tokens, heads, head_dim]`).
    pub fn flash_attention<T: AttentionType>(
        &self,
        a: &FlashArgs<T>,
        out: &mut CudaSlice<T>,
    ) -> Result<(), BackendError> {
        self.run_attention(a, out, None).map(|_| ())
    }

    /// [`Self::flash_attention`], also writing each (token, head)'s log-sum-exp (`[tokens,
    /// heads]`, natural log) into `lse` for training's backward, where the kernel chosen
    /// writes it (the TMA kernels); `false`, and nothing launched, where it does not.
    pub(super) fn flash_attention_saving<T: AttentionType>(
        &self,
        a: &FlashArgs<T>,
        out: &mut CudaSlice<T>,
        lse: &mut CudaSlice<f32>,
    ) -> Result<bool, BackendError> {
        self.run_attention(a, out, Some(lse))
    }

    fn run_attention<T: AttentionType>(
        &self,
        a: &FlashArgs<T>,
        out: &mut CudaSlice<T>,
        lse: Option<&mut CudaSlice<f32>>,
    ) -> Result<bool, BackendError> {
        let (h, d) = (a.heads, a.head_dim);
        let Some(kernel) = self.attention_kernel(a) else {
            return Err(unsupported_head_dim::<T>(d));
        };
        if lse.is_some() && !kernel.family.uses_tma() {
            return Ok(false);
        }
        if h == 0 || h > 65_535 {
            return Err(BackendError::Device(format!(
                "{h} heads: the kernel takes 1 to 65,535"
            )));
        }
        let tokens = *a.offsets.last().unwrap_or(&0);
        if tokens == 0 {
            return Ok(true);
        }
        let (table, blocks) = self.block_table(a.offsets, kernel.block_m)?;
        // One block a tile (a query block of a head), or persistent blocks, one an SM, taking
        // the tiles in turn.
        let grid = match kernel.family {
            KernelFamily::WgmmaTmaPersistent => ((blocks * h).min(self.inner.multiprocessors) as u32, 1),
            _ => (blocks as u32, h as u32),
        };
        let cfg = LaunchConfig {
            grid_dim: (grid.0, grid.1, 1),
            block_dim: (kernel.threads as u32, 1, 1),
            shared_mem_bytes: smem_bytes(kernel) as u32,
        };
        let scale_log2 = std::f32::consts::LOG2_E / (d as f32).sqrt();
        let (q_stride, kv_stride, out_stride) = (a.q_stride as i64, a.kv_stride as i64, (h * d) as i64);
        // Without ALiBi the kernel gets null positions and slopes.
        let stream = self.stream();
        let (positions, slopes) = a
            .alibi
            .map_or((0, 0), |(p, s)| (p.device_ptr(stream).0, s.device_ptr(stream).0));
        // The table holds offsets (sequences + 1), then each block's first row, then its
        // sequence, all i64.
        let base = table.device_ptr(stream).0;
        let sequences = a.offsets.len() - 1;
        let offsets = base;
        let block_q0 = base + 8 * (sequences + 1) as u64;
        let block_seq = block_q0 + 8 * blocks as u64;
        if kernel.family.uses_tma() {
            let map = |view: &CudaView<T>, stride, rows| {
                tensor_map::<T>(view.device_ptr(stream).0, tokens, (h, d), stride, rows)
            };
            let q_map = map(&a.q, a.q_stride, kernel.block_m)?;
            let k_map = map(&a.k, a.kv_stride, kernel.block_n)?;
            let v_map = map(&a.v, a.kv_stride, kernel.block_n)?;
            let (query_blocks, heads) = (blocks as i64, h as i32);
            let lse = lse.map_or(0, |l| l.device_ptr(stream).0);
            return launch!(
                self,
                kernel.name,
                cfg,
                &q_map,
                &k_map,
                &v_map,
                out,
                &out_stride,
                &offsets,
                &block_seq,
                &block_q0,
                &positions,
                &slopes,
                &scale_log2,
                &query_blocks,
                &heads,
                &lse
            )
            .map(|_| true);
        }
        launch!(
            self,
            kernel.name,
            cfg,
            &a.q,
            &a.k,
            &a.v,
            &q_stride,
            &kv_stride,
            out,
            &out_stride,
            &offsets,
            &block_seq,
            &block_q0,
            &positions,
            &slopes,
            &scale_log2
        )
        .map(|_| true)
    }
}

/// Blocks of a launch an SM gets, at least, before the wider of two kernels is worth it: a
/// wider kernel has fewer blocks, and where they are few, the last wave leaves SMs idle
/// (H200, 132 SMs, d 64: three consumers' 192-row blocks 10% faster than 128-row ones at
/// 64k tokens × 8 heads, level at 16k, 22% slower at 4k: 176 blocks, 1.3 waves).
const WAVES_FOR_WIDER_BLOCKS: usize = 4;

/// Of `kernels` (one family, type and head dim, different query rows a block), the widest
/// whose launch over `offsets` × `heads` gives every one of `multiprocessors` SMs
/// [`WAVES_FOR_WIDER_BLOCKS`] blocks; else the narrowest.
fn by_waves<'k>(
    kernels: impl Iterator<Item = &'k FlashKernel> + Clone,
    offsets: &[usize],
    heads: usize,
    multiprocessors: usize,
) -> Option<&'k FlashKernel> {
    let blocks = |rows: usize| -> usize {
        offsets
            .windows(2)
            .map(|w| (w[1] - w[0]).div_ceil(rows))
            .sum::<usize>()
            * heads
    };
    kernels
        .clone()
        .filter(|k| blocks(k.block_m) >= WAVES_FOR_WIDER_BLOCKS * multiprocessors)
        .max_by_key(|k| k.block_m)
        .or_else(|| kernels.min_by_key(|k| k.block_m))
}

/// Whether the TMA can read `a`'s q, k and v: token rows addressed by int coordinates, and
/// heads and token strides in whole 16 bytes (the tensor maps' rules).
fn tma_can_read<T>(a: &FlashArgs<T>) -> bool {
    let tokens = *a.offsets.last().unwrap_or(&0);
    let elem = std::mem::size_of::<T>();
    tokens < i32::MAX as usize
        && (a.q_stride * elem) % 16 == 0
        && (a.kv_stride * elem) % 16 == 0
        && (a.head_dim * elem) % 16 == 0
}

/// The tensor map of `[rows, heads, head_dim]` values of `T` at device address `base` (rows
/// `stride` elements apart) read in boxes of 64 values of one head × `box_rows` rows,
/// 128-byte swizzled: the layout the wgmma kernels' shared-memory panels have. Rows past the
/// end and values past a head's `head_dim` read as zeros.
fn tensor_map<T: AttentionType>(
    base: u64,
    rows: usize,
    (heads, head_dim): (usize, usize),
    stride: usize,
    box_rows: usize,
) -> Result<TensorMap, BackendError> {
    use sys::{
        CUtensorMapDataType as Type, CUtensorMapFloatOOBfill as Fill, CUtensorMapInterleave as Interleave,
        CUtensorMapL2promotion as L2, CUtensorMapSwizzle as Swizzle,
    };
    let elem = std::mem::size_of::<T>() as u64;
    let dims = [head_dim as u64, heads as u64, rows as u64];
    let strides = [head_dim as u64 * elem, stride as u64 * elem];
    let boxes = [64u32, 1, box_rows as u32];
    let steps = [1u32; 3];
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    let kind = if T::BF16 {
        Type::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
    } else {
        Type::CU_TENSOR_MAP_DATA_TYPE_FLOAT16
    };
    // SAFETY: every pointer is to a live local array of the rank's length (3, 2 strides).
    let result = unsafe {
        sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            kind,
            3,
            base as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            steps.as_ptr(),
            Interleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            Swizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            L2::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            Fill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    if result != sys::CUresult::CUDA_SUCCESS {
        return Err(BackendError::Device(format!(
            "a TMA tensor map of [{rows}, {heads}, {head_dim}] (stride {stride}): {result:?}"
        )));
    }
    // SAFETY: written by the call that succeeded.
    Ok(TensorMap(unsafe { map.assume_init() }.opaque))
}

/// ALiBi's slopes for `heads` heads times log2 e: the kernel works in base 2.
pub(super) fn alibi_slopes_log2(heads: usize) -> Vec<f32> {
    crate::backend::cpu::attention::alibi_slopes(heads)
        .iter()
        .map(|s| s * std::f32::consts::LOG2_E)
        .collect()
}

/// The tokens of a packed batch (`offsets`' last), checked against the fused projection
/// `qkv`'s shape (`[tokens, 3·heads·head_dim]`).
pub(super) fn packed_tokens(
    qkv: &CudaTensor,
    offsets: &[usize],
    heads: usize,
    head_dim: usize,
) -> Result<usize, BackendError> {
    let tokens = *offsets.last().unwrap_or(&0);
    if qkv.cols != 3 * heads * head_dim || qkv.rows != tokens {
        return Err(BackendError::Input(format!(
            "attention over [{}, {}] for {tokens} tokens of {heads} × {head_dim}",
            qkv.rows, qkv.cols
        )));
    }
    Ok(tokens)
}

/// The backend's attention: q, k, v are views into the fused projection (`[tokens, 3, heads,
/// head_dim]`); with a rotary embedding, q and k are rotated in a copy first.
pub(super) fn packed_attention(
    be: &CudaBackend,
    qkv: &CudaTensor,
    offsets: &[usize],
    heads: usize,
    head_dim: usize,
    positions: Option<&CudaPositions>,
) -> Result<CudaTensor, BackendError> {
    let width = heads * head_dim;
    let tokens = packed_tokens(qkv, offsets, heads, head_dim)?;
    let source = attended_qkv(be, qkv, heads, head_dim, positions)?;
    let mut out = be.alloc::<bf16>(tokens * width)?;
    be.flash_attention(
        &fused_args(&source, offsets, heads, head_dim, positions),
        &mut out,
    )?;
    Ok(be.tensor(out, tokens, width))
}

/// The attention kernel's arguments for a fused projection's rows (`source`: `[tokens, 3,
/// heads, head_dim]`, q and k rotated where they need to be) and the ALiBi bias of `positions`.
pub(super) fn fused_args<'a>(
    source: &'a CudaSlice<bf16>,
    offsets: &'a [usize],
    heads: usize,
    head_dim: usize,
    positions: Option<&'a CudaPositions>,
) -> FlashArgs<'a, bf16> {
    let width = heads * head_dim;
    let (q, k, v) = fused_parts(source, width);
    FlashArgs {
        q,
        k,
        v,
        q_stride: 3 * width,
        kv_stride: 3 * width,
        offsets,
        heads,
        head_dim,
        alibi: alibi_of(positions),
    }
}

/// The ALiBi inputs of `positions` (grid positions, slopes × log2 e) where it has the bias.
pub(super) fn alibi_of(positions: Option<&CudaPositions>) -> Option<(&CudaSlice<f32>, &CudaSlice<f32>)> {
    positions.and_then(|p| p.slopes_log2.as_ref().map(|s| (&p.positions, s)))
}

/// q, k and v of a fused projection's rows (`[tokens, 3·width]`): views starting at columns
/// 0, `width` and 2·`width`, each row 3·`width` apart.
pub(super) fn fused_parts<T>(
    qkv: &CudaSlice<T>,
    width: usize,
) -> (CudaView<'_, T>, CudaView<'_, T>, CudaView<'_, T>) {
    (qkv.slice(0..), qkv.slice(width..), qkv.slice(2 * width..))
}

/// What attention reads of the fused projection `qkv`: a copy with q and k rotated where
/// `positions` has a rotary embedding, else `qkv`'s own values (bf16).
pub(super) fn attended_qkv(
    be: &CudaBackend,
    qkv: &CudaTensor,
    heads: usize,
    head_dim: usize,
    positions: Option<&CudaPositions>,
) -> Result<Arc<CudaSlice<bf16>>, BackendError> {
    match rotated_copy(be, qkv, heads, head_dim, positions, 1.0)? {
        Some(rotated) => Ok(Arc::new(rotated)),
        None => be.bf16_data(qkv),
    }
}

/// A copy of the fused projection `qkv` (`[tokens, 3, heads, head_dim]`, bf16) with q and k
/// rotated by the rotary embedding `positions` holds, turned by each angle times `direction`
/// (1; −1 turns a rotated tensor, or the gradient of one, back); none without one.
pub(super) fn rotated_copy(
    be: &CudaBackend,
    qkv: &CudaTensor,
    heads: usize,
    head_dim: usize,
    positions: Option<&CudaPositions>,
    direction: f32,
) -> Result<Option<CudaSlice<bf16>>, BackendError> {
    let Some((p, log2_base)) = positions.and_then(|p| p.rope_log2_base.map(|b| (p, b))) else {
        return Ok(None);
    };
    let mut copy = be
        .inner
        .stream
        .clone_dtod(&*be.bf16_data(qkv)?)
        .map_err(device_err)?;
    let tokens = qkv.rows;
    let (t, h, hd) = (tokens as i64, heads as i32, head_dim as i32);
    launch!(
        be,
        "rope_2d",
        CudaBackend::elementwise(tokens * heads * head_dim),
        &mut copy,
        &p.positions,
        &t,
        &h,
        &hd,
        &log2_base,
        &direction
    )?;
    Ok(Some(copy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_familys_head_dims_are_its_own_kernels() {
        use KernelFamily::*;
        assert_eq!(family_head_dims(MmaSync), head_dims::<bf16>());
        for family in [Wgmma, WgmmaPipelined, WgmmaTma, WgmmaTmaPersistent] {
            let own = family_head_dims(family);
            assert!(own.contains(&64) && own.contains(&128), "{family:?}: {own:?}");
            for d in head_dims::<bf16>() {
                let runs = kernel_for::<bf16>(d, family).map(|k| k.family);
                let want = if own.contains(&d) { family } else { MmaSync };
                assert_eq!(runs, Some(want), "{family:?} at d {d}");
            }
        }
        // So `bench attention --kernel wgmma-tma-persistent --head-dim 80` is refused
        // (bench.rs): flash_attn.cu's kernel would run.
        assert!(!family_head_dims(WgmmaTmaPersistent).contains(&80));
    }

    #[test]
    fn each_type_has_the_encoders_head_dims_and_an_unknown_one_is_refused_by_name() {
        for dims in [head_dims::<bf16>(), head_dims::<half::f16>()] {
            assert!([64, 80, 96, 128].iter().all(|d| dims.contains(d)), "{dims:?}");
        }
        assert!(
            kernel_for::<bf16>(80, KernelFamily::MmaSync).is_some_and(|k| k.bf16 && k.name.ends_with("_d80"))
        );
        assert!(kernel_for::<half::f16>(96, KernelFamily::MmaSync)
            .is_some_and(|k| !k.bf16 && k.name.ends_with("_d96")));
        assert!(kernel_for::<bf16>(72, KernelFamily::MmaSync).is_none());
        // Hopper's kernels where they take the head dim, the others elsewhere.
        let wgmma = |d, family| kernel_for::<bf16>(d, family).map(|k| (k.name, k.family));
        assert_eq!(
            wgmma(64, KernelFamily::Wgmma),
            Some(("flash_attn_sm90_bf16_d64", KernelFamily::Wgmma))
        );
        assert_eq!(
            wgmma(128, KernelFamily::WgmmaPipelined),
            Some((
                "flash_attn_sm90_pipelined_bf16_d128",
                KernelFamily::WgmmaPipelined
            ))
        );
        assert_eq!(
            wgmma(80, KernelFamily::Wgmma).map(|k| k.1),
            Some(KernelFamily::MmaSync)
        );
        assert!(kernel_for::<half::f16>(128, KernelFamily::Wgmma).is_some_and(|k| k.threads == 256));
        let message = unsupported_head_dim::<bf16>(72).to_string();
        assert!(
            message.contains("64, 80, 96") && message.contains("and 128, not 72"),
            "{message}"
        );
    }

    #[test]
    fn a_hopper_runs_one_tile_tma_blocks_on_long_sequences_and_persistent_ones_on_short() {
        let tiles: Vec<usize> = (0..=256).map(|s| s * 197).collect();
        assert_eq!(default_family(true, &tiles), KernelFamily::WgmmaTmaPersistent);
        assert_eq!(default_family(true, &[0, 1024]), KernelFamily::WgmmaTma);
        assert_eq!(default_family(true, &[0, 300, 1200]), KernelFamily::WgmmaTma);
        assert_eq!(default_family(true, &[0]), KernelFamily::WgmmaTmaPersistent);
        for offsets in [&tiles[..], &[0, 1 << 20]] {
            assert_eq!(default_family(false, offsets), KernelFamily::MmaSync);
        }
    }

    #[test]
    fn three_consumers_at_d64_only_where_every_sm_gets_blocks_enough() {
        let d64 = || {
            FLASH_KERNELS
                .iter()
                .filter(|k| k.head_dim == 64 && k.bf16 && k.family == KernelFamily::WgmmaTma)
        };
        assert_eq!(d64().count(), 2);
        let rows = |offsets: &[usize], heads| by_waves(d64(), offsets, heads, 132).map(|k| k.block_m);
        assert_eq!(rows(&[0, 65_536], 8), Some(192));
        assert_eq!(rows(&[0, 16_384], 8), Some(192));
        assert_eq!(rows(&[0, 4_096], 8), Some(128));
        assert_eq!(rows(&[0, 1 << 20], 1), Some(192));
        // One kernel: itself, whatever the launch.
        let d128 = FLASH_KERNELS
            .iter()
            .filter(|k| k.head_dim == 128 && k.bf16 && k.family == KernelFamily::WgmmaTma);
        assert_eq!(by_waves(d128, &[0, 1024], 1, 132).map(|k| k.block_m), Some(128));
    }

    #[test]
    fn shared_memory_fits_every_gpu_the_kernels_compile_for() {
        // 99 KiB: the most a block may have on sm_86, sm_89 and sm_120 (the least of sm_80
        // and newer).
        // The wgmma kernels run on Hopper only: 227 KiB a block there.
        for k in FLASH_KERNELS {
            let limit = if k.family == KernelFamily::MmaSync {
                99
            } else {
                227
            } * 1024;
            assert!(smem_bytes(k) <= limit, "{}: {} bytes", k.name, smem_bytes(k));
        }
    }
}
