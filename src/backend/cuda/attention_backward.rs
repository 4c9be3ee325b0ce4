//! Training's attention on the GPU: the forward that also saves each row's log-sum-exp (on a
//! Hopper the TMA inference kernels, which write it where asked; elsewhere flash_attn.cu's
//! `FLASH_KERNEL_LSE` kernels, launched with the tile sizes of the mma.sync kernel of the
//! same head dim) and the backward (kernels/attention_backward.cu, on wgmma on a Hopper):
//! each row's log-sum-exp (in log2 units) and δ = rowsum(dO ∘ O) as pairs, then one block a
//! 128-key block computing dK and dV and adding dQ into f32, then dQ scaled into the fused
//! gradient and, with a rotary embedding, dQ and dK turned back. bf16, head dims 64 and 128.

use super::attention::{
    alibi_of, attended_qkv, fused_args, fused_parts, kernel_for, packed_tokens, rotated_copy, smem_bytes,
};
use super::kernels::{KernelFamily, KernelSignature};
use super::{device_err, CudaBackend, CudaPositions, CudaTensor};
use crate::backend::BackendError;
use cudarc::driver::{sys, CudaFunction, CudaSlice, DevicePtr, LaunchConfig, PushKernelArg};
use half::bf16;
use std::collections::HashMap;

/// Head dims the training kernels are instantiated for.
pub const HEAD_DIMS: [usize; 2] = [64, 128];
/// Keys a backward block owns (kernels/attention_backward.cu's BK) and its threads.
const BLOCK_KEYS: usize = 128;
const THREADS: u32 = 256;

/// Queries a backward step at head dim `d`, on wgmma or mma.sync, as the file's
/// `ATTENTION_BACKWARD` lines say (the test below reads them).
fn block_queries(d: usize, wgmma: bool) -> usize {
    if d == 128 && !wgmma {
        32
    } else {
        64
    }
}

/// The backward kernel's shared memory: K and V tiles, two stages of Q and dO tiles and of
/// their rows' (log-sum-exp, δ) pairs, and dZᵀ (rows padded below 64 columns). On wgmma dZᵀ
/// has two tiles (a step's dQ product reads one while the next step writes the other), each
/// warp stages 16 rows of half of dQ in f32, and the tiles start on a 1,024-byte boundary:
/// 1 KB more.
fn backward_smem(d: usize, wgmma: bool) -> usize {
    let queries = block_queries(d, wgmma);
    let ds_stride = if queries % 64 == 0 { queries } else { queries + 8 };
    let (ds_tiles, dq_staging, align) = if wgmma {
        (2, (THREADS as usize / 32) * 16 * (d / 2) * 4, 1024)
    } else {
        (1, 0, 0)
    };
    (2 * BLOCK_KEYS + 4 * queries) * d * 2
        + ds_tiles * BLOCK_KEYS * ds_stride * 2
        + 4 * queries * 4
        + dq_staging
        + align
}

/// Rows of the wgmma kernels' dQ accumulator: the tokens, and a step's 64 queries past the
/// last sequence's end (those rows add zeros).
fn dq_accumulator_rows(tokens: usize) -> usize {
    tokens + 64
}

/// The backward kernel and its shared memory: on a Hopper the wgmma kernel (the file's
/// `_sm90_` lines), elsewhere mma.sync's.
fn backward_kernel(d: usize, hopper: bool) -> (String, usize) {
    let name = if hopper {
        format!("attention_backward_sm90_bf16_d{d}")
    } else {
        format!("attention_backward_bf16_d{d}")
    };
    (name, backward_smem(d, hopper))
}

fn forward_name(d: usize) -> String {
    format!("flash_attn_lse_bf16_d{d}")
}

/// Lets the training kernels this GPU runs use the shared memory they need (the wgmma
/// kernels' is more than GPUs other than a Hopper or an A100 allow).
pub(super) fn configure(
    functions: &HashMap<&'static str, (CudaFunction, &'static KernelSignature)>,
    hopper: bool,
) -> Result<(), cudarc::driver::DriverError> {
    for d in HEAD_DIMS {
        let forward = kernel_for::<bf16>(d, KernelFamily::MmaSync)
            .expect("an mma.sync kernel for each training head dim");
        for (name, bytes) in [(forward_name(d), smem_bytes(forward)), backward_kernel(d, hopper)] {
            functions[name.as_str()].0.set_attribute(
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )?;
        }
    }
    Ok(())
}

fn check_shape(
    qkv: &CudaTensor,
    offsets: &[usize],
    heads: usize,
    head_dim: usize,
) -> Result<usize, BackendError> {
    let tokens = packed_tokens(qkv, offsets, heads, head_dim)?;
    if !HEAD_DIMS.contains(&head_dim) {
        return Err(BackendError::Device(format!(
            "training's attention on the GPU takes head dims 64 and 128, not {head_dim} (the CPU takes any)"
        )));
    }
    if heads == 0 || heads > 65_535 {
        return Err(BackendError::Device(format!(
            "{heads} heads: the kernels take 1 to 65,535"
        )));
    }
    Ok(tokens)
}

/// The ALiBi inputs a launch passes (null pointers without the bias).
fn alibi_pointers(be: &CudaBackend, positions: Option<&CudaPositions>) -> (u64, u64) {
    let stream = be.stream();
    alibi_of(positions).map_or((0, 0), |(p, s)| (p.device_ptr(stream).0, s.device_ptr(stream).0))
}

/// A packed batch's block table (`CudaBackend::block_table`), its three parts as the device
/// addresses a kernel takes.
struct BlockTable {
    /// Keeps the table alive while a launch reads it.
    _table: std::sync::Arc<CudaSlice<i64>>,
    offsets: u64,
    /// Each block's sequence and first row.
    sequences: u64,
    first_rows: u64,
    blocks: usize,
}

fn block_table(be: &CudaBackend, offsets: &[usize], rows_a_block: usize) -> Result<BlockTable, BackendError> {
    let (table, blocks) = be.block_table(offsets, rows_a_block)?;
    let base = table.device_ptr(be.stream()).0;
    let first_rows = base + 8 * offsets.len() as u64;
    Ok(BlockTable {
        _table: table,
        offsets: base,
        sequences: first_rows + 8 * blocks as u64,
        first_rows,
        blocks,
    })
}

/// Attention's output (`[tokens, heads·head_dim]`, bf16) and each (token, head)'s
/// log-sum-exp (natural log, f32).
pub(super) fn attention_with_lse(
    be: &CudaBackend,
    qkv: &CudaTensor,
    offsets: &[usize],
    heads: usize,
    head_dim: usize,
    positions: Option<&CudaPositions>,
) -> Result<(CudaTensor, CudaTensor), BackendError> {
    let tokens = check_shape(qkv, offsets, heads, head_dim)?;
    let width = heads * head_dim;
    let mut out = be.alloc::<bf16>(tokens * width)?;
    let mut lse = be.alloc::<f32>(tokens * heads)?;
    if tokens > 0 {
        let _span = be.span(
            "attention (saving)",
            4.0 * attention_pairs(offsets) * (width as f64),
        );
        let source = attended_qkv(be, qkv, heads, head_dim, positions)?;
        // Where the inference kernel writes the log-sum-exp too (a Hopper's TMA kernels), it
        // runs; else flash_attn.cu's LSE kernel.
        let args = fused_args(&source, offsets, heads, head_dim, positions);
        if be.flash_attention_saving(&args, &mut out, &mut lse)? {
            return Ok((be.tensor(out, tokens, width), be.tensor_f32(lse, tokens, heads)));
        }
        let kernel = kernel_for::<bf16>(head_dim, KernelFamily::MmaSync).expect("checked head dim");
        let table = block_table(be, offsets, kernel.block_m)?;
        let cfg = LaunchConfig {
            grid_dim: (table.blocks as u32, heads as u32, 1),
            block_dim: (kernel.threads as u32, 1, 1),
            shared_mem_bytes: smem_bytes(kernel) as u32,
        };
        let (stride, out_stride) = ((3 * width) as i64, width as i64);
        let (alibi_positions, slopes) = alibi_pointers(be, positions);
        let scale_log2 = std::f32::consts::LOG2_E / (head_dim as f32).sqrt();
        launch!(
            be,
            &forward_name(head_dim),
            cfg,
            &args.q,
            &args.k,
            &args.v,
            &stride,
            &stride,
            &mut out,
            &out_stride,
            &table.offsets,
            &table.sequences,
            &table.first_rows,
            &alibi_positions,
            &slopes,
            &scale_log2,
            &mut lse
        )?;
    }
    Ok((be.tensor(out, tokens, width), be.tensor_f32(lse, tokens, heads)))
}

/// Query-key pairs of a packed batch (a head's).
fn attention_pairs(offsets: &[usize]) -> f64 {
    offsets.windows(2).map(|w| ((w[1] - w[0]) as f64).powi(2)).sum()
}

/// The gradient of the fused projection `qkv` (`[tokens, 3·heads·head_dim]`, bf16, before
/// rotation) given attention's output `out`, its log-sum-exp and `dout`.
#[allow(clippy::too_many_arguments)]
pub(super) fn attention_backward(
    be: &CudaBackend,
    qkv: &CudaTensor,
    out: &CudaTensor,
    lse: &CudaTensor,
    dout: &CudaTensor,
    offsets: &[usize],
    heads: usize,
    head_dim: usize,
    positions: Option<&CudaPositions>,
) -> Result<CudaTensor, BackendError> {
    let tokens = check_shape(qkv, offsets, heads, head_dim)?;
    let width = heads * head_dim;
    for (what, t, cols) in [
        ("output", out, width),
        ("its gradient", dout, width),
        ("log-sum-exp", lse, heads),
    ] {
        if (t.rows, t.cols) != (tokens, cols) {
            return Err(BackendError::Input(format!(
                "attention backward: the {what} is [{}, {}], not [{tokens}, {cols}]",
                t.rows, t.cols
            )));
        }
    }
    let mut dqkv = be.alloc::<bf16>(tokens * 3 * width)?;
    if tokens == 0 {
        return Ok(be.tensor(dqkv, 0, 3 * width));
    }
    let _span = be.span(
        "attention backward",
        10.0 * attention_pairs(offsets) * (width as f64),
    );
    let source = attended_qkv(be, qkv, heads, head_dim, positions)?;
    let (out_b, dout_b, lse_f) = (be.bf16_data(out)?, be.bf16_data(dout)?, be.f32_data(lse)?);

    let rows = (tokens * heads) as i64;
    let (t64, h32, d32) = (tokens as i64, heads as i32, head_dim as i32);
    let mut row_terms = be.alloc::<f32>(2 * tokens * heads)?;
    launch!(
        be,
        "attention_row_terms",
        CudaBackend::elementwise(rows as usize),
        &*out_b,
        &*dout_b,
        &*lse_f,
        &mut row_terms,
        &t64,
        &h32,
        &d32
    )?;

    let hopper = be.inner.hopper;
    let dq_rows = if hopper {
        dq_accumulator_rows(tokens)
    } else {
        tokens
    };
    let (dq_rows64, w32) = (dq_rows as i64, width as i32);
    let mut dq = be
        .inner
        .stream
        .alloc_zeros::<f32>(dq_rows * width)
        .map_err(device_err)?;
    let table = block_table(be, offsets, BLOCK_KEYS)?;
    let (kernel, smem) = backward_kernel(head_dim, hopper);
    let cfg = LaunchConfig {
        grid_dim: (table.blocks as u32, heads as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    let (stride, dout_stride) = ((3 * width) as i64, width as i64);
    let (alibi_positions, slopes) = alibi_pointers(be, positions);
    let scale_log2 = std::f32::consts::LOG2_E / (head_dim as f32).sqrt();
    // dK and dV go straight into their columns of the fused gradient (rows 3·width apart).
    let dqkv_ptr = dqkv.device_ptr(be.stream()).0;
    let (dk_ptr, dv_ptr) = (dqkv_ptr + 2 * width as u64, dqkv_ptr + 4 * width as u64);
    let (q, k, v) = fused_parts(&source, width);
    launch!(
        be,
        &kernel,
        cfg,
        &q,
        &k,
        &v,
        &stride,
        &*dout_b,
        &dout_stride,
        &row_terms,
        &mut dq,
        &dk_ptr,
        &dv_ptr,
        &stride,
        &table.offsets,
        &table.sequences,
        &table.first_rows,
        &alibi_positions,
        &slopes,
        &scale_log2,
        &dq_rows64
    )?;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let elementwise = CudaBackend::elementwise(tokens * width);
    if hopper {
        launch!(
            be,
            "attention_dq_halves",
            elementwise,
            &dq,
            &mut dqkv,
            &t64,
            &dq_rows64,
            &h32,
            &d32,
            &scale
        )?;
    } else {
        launch!(
            be,
            "attention_dq",
            elementwise,
            &dq,
            &mut dqkv,
            &t64,
            &w32,
            &scale
        )?;
    }
    let dqkv = be.tensor(dqkv, tokens, 3 * width);
    // The scores saw rotated q and k: their gradients turn back.
    Ok(match rotated_copy(be, &dqkv, heads, head_dim, positions, -1.0)? {
        Some(turned) => be.tensor(turned, tokens, 3 * width),
        None => dqkv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_steps_are_the_kernel_files() {
        let source = include_str!("../../../kernels/attention_backward.cu");
        for d in HEAD_DIMS {
            for hopper in [false, true] {
                let (name, smem) = backward_kernel(d, hopper);
                let line = format!("ATTENTION_BACKWARD({name}, {d}, {},", block_queries(d, hopper));
                assert!(source.contains(&line), "{line} is not in attention_backward.cu");
                // Within the 227 KB a block may have (one block an SM: over 128 registers a
                // thread).
                assert!(smem <= 227 << 10);
            }
        }
    }
}
