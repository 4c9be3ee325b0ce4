//! The backend check itself checked: the CPU backend passes it against itself, and a backend
//! with any one operation broken (slightly: a shifted value, a dropped key, a swapped
//! channel) fails it, in the checks of that operation.

use flashslide::backend::check::{check_operations, Check, Scope};
use flashslide::backend::cpu::CpuBackend;
use flashslide::backend::{Backend, BackendError, PositionSpec};

type Tensor = candle_core::Tensor;

/// The one operation a [`Faulty`] backend gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// The bias added twice.
    LinearBias,
    /// GELU in tanh form with a wrong cubic coefficient (0.2, not 0.044715).
    GeluApproximation,
    /// The normalised values scaled by 1.02.
    LayerNormScale,
    /// silu(gate) · value with the halves swapped.
    SwigluHalves,
    /// The sum rounded to 1/8.
    AddRounding,
    /// Red and blue swapped before normalising.
    PatchifyChannels,
    /// The mean over one token too few.
    MeanRowsShort,
    /// Each sequence attends to all of its keys but the last.
    AttentionLastKey,
    /// Rotary positions ignored.
    AttentionNoRope,
}

/// The CPU backend with `fault`.
#[derive(Clone, Copy)]
struct Faulty {
    fault: Fault,
}

const CPU: CpuBackend = CpuBackend;

fn map(x: &Tensor, f: impl Fn(f32) -> f32) -> Result<Tensor, BackendError> {
    let (r, c) = x.dims2()?;
    let v: Vec<f32> = x.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f).collect();
    CPU.upload(&v, r, c)
}

impl Backend for Faulty {
    type Tensor = Tensor;
    type Positions = (
        <CpuBackend as Backend>::Positions,
        <CpuBackend as Backend>::Positions,
    );
    type Pixels = Vec<u8>;

    fn describe(&self) -> String {
        format!("cpu with {:?}", self.fault)
    }
    fn upload(&self, data: &[f32], rows: usize, cols: usize) -> Result<Tensor, BackendError> {
        CPU.upload(data, rows, cols)
    }
    fn download(&self, x: &Tensor) -> Result<Vec<f32>, BackendError> {
        CPU.download(x)
    }
    fn shape(&self, x: &Tensor) -> (usize, usize) {
        CPU.shape(x)
    }
    fn linear(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor, BackendError> {
        let y = CPU.linear(x, w, b)?;
        match (self.fault, b) {
            (Fault::LinearBias, Some(b)) => Ok(y.broadcast_add(b)?),
            _ => Ok(y),
        }
    }
    fn layer_norm(&self, x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor, BackendError> {
        let y = CPU.layer_norm(x, w, b, eps)?;
        match self.fault {
            Fault::LayerNormScale => map(&y, |v| v * 1.02),
            _ => Ok(y),
        }
    }
    fn gelu(&self, x: &Tensor) -> Result<Tensor, BackendError> {
        match self.fault {
            Fault::GeluApproximation => map(x, |v| {
                0.5 * v * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (v + 0.2 * v * v * v)).tanh())
            }),
            _ => CPU.gelu(x),
        }
    }
    fn swiglu(&self, x: &Tensor) -> Result<Tensor, BackendError> {
        match self.fault {
            Fault::SwigluHalves => {
                let half = x.dims2()?.1 / 2;
                let swapped = Tensor::cat(&[x.narrow(1, half, half)?, x.narrow(1, 0, half)?], 1)?;
                CPU.swiglu(&swapped)
            }
            _ => CPU.swiglu(x),
        }
    }
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, BackendError> {
        let y = CPU.add(a, b)?;
        match self.fault {
            Fault::AddRounding => map(&y, |v| (v * 8.0).round() / 8.0),
            _ => Ok(y),
        }
    }
    fn scale_columns(&self, x: &Tensor, gamma: &Tensor) -> Result<Tensor, BackendError> {
        CPU.scale_columns(x, gamma)
    }
    fn concat_rows(&self, parts: &[Tensor]) -> Result<Tensor, BackendError> {
        CPU.concat_rows(parts)
    }
    fn concat_cols(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, BackendError> {
        CPU.concat_cols(a, b)
    }
    fn upload_pixels(&self, rgb: &[u8]) -> Result<Vec<u8>, BackendError> {
        Ok(rgb.to_vec())
    }
    fn pixel_bytes(&self, pixels: &Vec<u8>) -> usize {
        pixels.len()
    }
    fn download_pixels(&self, pixels: &Vec<u8>) -> Result<Vec<u8>, BackendError> {
        Ok(pixels.clone())
    }
    fn patchify(
        &self,
        rgb: &Vec<u8>,
        batch: usize,
        side: usize,
        patch: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Tensor, BackendError> {
        let mut rgb = rgb.clone();
        if self.fault == Fault::PatchifyChannels {
            rgb.chunks_exact_mut(3).for_each(|p| p.swap(0, 2));
        }
        CPU.patchify(&rgb, batch, side, patch, mean, std)
    }
    fn prepend_and_position(
        &self,
        patches: &Tensor,
        batch: usize,
        prefix: Option<&Tensor>,
        position: &Tensor,
    ) -> Result<Tensor, BackendError> {
        CPU.prepend_and_position(patches, batch, prefix, position)
    }
    fn mean_rows(&self, x: &Tensor, seqs: usize, start: usize, count: usize) -> Result<Tensor, BackendError> {
        match self.fault {
            Fault::MeanRowsShort if count > 1 => CPU.mean_rows(x, seqs, start, count - 1),
            _ => CPU.mean_rows(x, seqs, start, count),
        }
    }
    fn group_tokens(
        &self,
        x: &Tensor,
        seqs: usize,
        prefix: usize,
        side: usize,
        k: usize,
    ) -> Result<Tensor, BackendError> {
        CPU.group_tokens(x, seqs, prefix, side, k)
    }
    fn prepare_positions(
        &self,
        spec: PositionSpec,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self::Positions, BackendError> {
        let without_rope = PositionSpec {
            rope_base: None,
            ..spec
        };
        Ok((
            CPU.prepare_positions(spec, heads, head_dim)?,
            CPU.prepare_positions(without_rope, heads, head_dim)?,
        ))
    }
    fn attention(
        &self,
        qkv: &Tensor,
        offsets: &[usize],
        heads: usize,
        head_dim: usize,
        positions: Option<&Self::Positions>,
    ) -> Result<Tensor, BackendError> {
        let positions = positions.map(|(all, without_rope)| match self.fault {
            Fault::AttentionNoRope => without_rope,
            _ => all,
        });
        if self.fault != Fault::AttentionLastKey {
            return CPU.attention(qkv, offsets, heads, head_dim, positions);
        }
        // Each sequence of two or more tokens attends without its last key: its rows but the
        // last through attention over the shortened sequence, the last row as in the reference.
        let mut parts = Vec::new();
        for w in offsets.windows(2) {
            let (start, len) = (w[0], w[1] - w[0]);
            if len == 0 {
                continue;
            }
            let rows = qkv.narrow(0, start, len)?;
            let full = CPU.attention(&rows, &[0, len], heads, head_dim, None)?;
            if len < 2 {
                parts.push(full);
                continue;
            }
            let short = CPU.attention(&rows.narrow(0, 0, len - 1)?, &[0, len - 1], heads, head_dim, None)?;
            parts.push(Tensor::cat(&[short, full.narrow(0, len - 1, 1)?], 0)?);
        }
        CPU.concat_rows(&parts)
    }
}

fn failures(fault: Fault) -> Vec<Check> {
    let checks = check_operations(&Faulty { fault }, &CpuBackend, Scope::Quick, 0, &mut |_| {}).unwrap();
    assert!(checks.len() > 30, "{} checks", checks.len());
    checks.into_iter().filter(|c| !c.passed).collect()
}

#[test]
fn the_cpu_backend_passes_against_itself() {
    let failed = failures(Fault::None);
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn a_backend_with_one_broken_operation_fails_in_that_operations_checks() {
    let cases = [
        (Fault::LinearBias, "linear"),
        (Fault::GeluApproximation, "GELU"),
        (Fault::LayerNormScale, "layer norm"),
        (Fault::SwigluHalves, "SwiGLU"),
        (Fault::AddRounding, "add"),
        (Fault::PatchifyChannels, "patchify"),
        (Fault::MeanRowsShort, "mean of rows"),
        (Fault::AttentionLastKey, "attention"),
        (Fault::AttentionNoRope, "RoPE"),
    ];
    for (fault, operation) in cases {
        let failed = failures(fault);
        assert!(!failed.is_empty(), "{fault:?} passed every check");
        assert!(
            failed
                .iter()
                .all(|c| c.what.contains(operation) || fault == Fault::AddRounding),
            "{fault:?}: {:?}",
            failed.iter().map(|c| &c.what).collect::<Vec<_>>()
        );
    }
}
