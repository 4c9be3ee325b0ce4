//! A model's tensors: read from safetensors (memory-mapped, any float type, as f32), checked
//! against the shapes a configuration needs, and placed on a backend as matrices.

use super::ModelError;
use crate::backend::Backend;
use candle_core::{DType, Device};
use std::collections::HashMap;
use std::path::Path;

/// Most parameters a random-weight model (benchmarks) may have: 2^34, beyond ViT-22B.
pub(crate) const MAX_RANDOM_PARAMETERS: usize = 1 << 34;

/// A tensor on the host: f32 values and the shape the file gives.
#[derive(Clone, Debug)]
pub struct HostTensor {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
}

/// Every tensor of a safetensors file, by name.
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, HostTensor>, ModelError> {
    let bad = |e: candle_core::Error| ModelError::Weights {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    // SAFETY: the file is mapped read-only; flashslide never writes model files while
    // reading them (a file changed underneath by another program is the caller's risk, as
    // with any memory-mapped read).
    let mmap = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }.map_err(bad)?;
    let names: Vec<String> = mmap.tensors().into_iter().map(|(name, _)| name).collect();
    host_tensors(names, |name| mmap.load(name, &Device::Cpu), path)
}

/// Every tensor of a safetensors file held in memory (a model built into the binary), by
/// name; `source` names it in errors.
pub fn parse_safetensors(bytes: &[u8], source: &Path) -> Result<HashMap<String, HostTensor>, ModelError> {
    let file = candle_core::safetensors::SliceSafetensors::new(bytes).map_err(|e| ModelError::Weights {
        path: source.to_path_buf(),
        msg: e.to_string(),
    })?;
    let names: Vec<String> = file.tensors().into_iter().map(|(name, _)| name).collect();
    host_tensors(names, |name| file.load(name, &Device::Cpu), source)
}

/// SHA-256 (hex) of the tensors `names` of a safetensors file's `bytes`, as stored: for each,
/// in name order, its name, dtype, shape and data (a name absent from the file is skipped).
/// It names a tile encoder's weights whatever else the file holds (a slide head, another
/// head), so features made by two models that share the encoder are known to be the same
/// features. `source` names the file in errors.
pub fn tensors_sha256(bytes: &[u8], names: &[String], source: &Path) -> Result<String, ModelError> {
    use sha2::{Digest, Sha256};
    let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| ModelError::Weights {
        path: source.to_path_buf(),
        msg: e.to_string(),
    })?;
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    for name in sorted {
        let Ok(t) = file.tensor(name) else { continue };
        let shape: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
        hasher.update(format!("{name}\0{:?}\0{}\0", t.dtype(), shape.join(",")).as_bytes());
        hasher.update((t.data().len() as u64).to_le_bytes());
        hasher.update(t.data());
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// [`tensors_sha256`] of the safetensors file at `path` (memory-mapped).
pub fn file_tensors_sha256(path: &Path, names: &[String]) -> Result<String, ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: mapped read-only; as in read_safetensors, flashslide never writes a model file
    // while reading it.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    tensors_sha256(&map, names, path)
}

/// The tensors `load` gives for `names`, as f32 on the host, each checked to be finite.
fn host_tensors(
    names: Vec<String>,
    load: impl Fn(&str) -> candle_core::Result<candle_core::Tensor>,
    source: &Path,
) -> Result<HashMap<String, HostTensor>, ModelError> {
    let bad = |msg: String| ModelError::Weights {
        path: source.to_path_buf(),
        msg,
    };
    let mut map = HashMap::new();
    for name in names {
        let t = load(&name)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| bad(format!("tensor {name}: {e}")))?;
        let shape = t.dims().to_vec();
        let data = t
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| bad(format!("tensor {name}: {e}")))?;
        // A NaN or infinite weight makes every output NaN: refused here, once, rather than
        // discovered as null probabilities.
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "tensor {name} holds a non-finite value ({}) at element {i}",
                data[i]
            )));
        }
        map.insert(name, HostTensor { data, shape });
    }
    Ok(map)
}

/// The tensors a model uses, on its backend, each as a matrix.
pub struct Weights<B: Backend> {
    pub backend: B,
    tensors: HashMap<String, B::Tensor>,
}

impl<B: Backend> Weights<B> {
    /// Takes the `expected` tensors (name, shape) from `host`, checking each is present with
    /// that shape; `source` names the file in errors. Other tensors in `host` are ignored
    /// (a timm checkpoint's classifier head, the other stage's weights).
    pub fn from_host(
        backend: &B,
        host: &HashMap<String, HostTensor>,
        expected: &[(String, Vec<usize>)],
        source: &Path,
    ) -> Result<Weights<B>, ModelError> {
        Weights::from_host_replacing(backend, host, &HashMap::new(), expected, source)
    }

    /// [`Weights::from_host`], with the tensors of `replaced` (checked as `host`'s are)
    /// taken in place of `host`'s of the same names.
    pub fn from_host_replacing(
        backend: &B,
        host: &HashMap<String, HostTensor>,
        replaced: &HashMap<String, HostTensor>,
        expected: &[(String, Vec<usize>)],
        source: &Path,
    ) -> Result<Weights<B>, ModelError> {
        let mut tensors = HashMap::new();
        for (name, shape) in expected {
            let bad = |msg: String| ModelError::Weights {
                path: source.to_path_buf(),
                msg,
            };
            let t = replaced
                .get(name)
                .or_else(|| host.get(name))
                .ok_or_else(|| bad(format!("tensor {name} is missing")))?;
            if &t.shape != shape {
                return Err(bad(format!(
                    "tensor {name} has shape {:?}, expected {shape:?}",
                    t.shape
                )));
            }
            let (rows, cols) = as_matrix(shape);
            tensors.insert(name.clone(), backend.upload_weight(&t.data, rows, cols)?);
        }
        Ok(Weights {
            backend: backend.clone(),
            tensors,
        })
    }

    /// Random weights of the `expected` shapes (normal, std 0.02; norm weights 1): for
    /// benchmarks, whose speed does not depend on the values.
    pub fn random(
        backend: &B,
        expected: &[(String, Vec<usize>)],
        seed: u64,
    ) -> Result<Weights<B>, ModelError> {
        let host = random_host(expected, seed)?;
        Weights::from_host(backend, &host, expected, Path::new("random weights"))
    }

    /// Every tensor with its name, in name order.
    pub fn named(&self) -> Vec<(&str, &B::Tensor)> {
        let mut all: Vec<_> = self.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        all.sort_by_key(|(n, _)| *n);
        all
    }

    /// A tensor whose presence was checked when the weights were taken.
    pub fn get(&self, name: &str) -> &B::Tensor {
        &self.tensors[name]
    }

    /// The linear layer `prefix` (`prefix.weight`, and `prefix.bias` when present).
    pub fn dense(&self, x: &B::Tensor, prefix: &str) -> Result<B::Tensor, ModelError> {
        Ok(self.backend.linear(
            x,
            self.get(&format!("{prefix}.weight")),
            self.tensors.get(&format!("{prefix}.bias")),
        )?)
    }

    /// The residual stream `residual` plus the linear layer `prefix` of `x`.
    pub fn dense_residual(
        &self,
        x: &B::Tensor,
        prefix: &str,
        residual: &B::Tensor,
    ) -> Result<B::Tensor, ModelError> {
        Ok(self.backend.linear_residual(
            x,
            self.get(&format!("{prefix}.weight")),
            self.tensors.get(&format!("{prefix}.bias")),
            residual,
        )?)
    }

    /// The linear layer `prefix` (with its bias) then GELU.
    pub fn dense_gelu(&self, x: &B::Tensor, prefix: &str) -> Result<B::Tensor, ModelError> {
        Ok(self.backend.linear_gelu(
            x,
            self.get(&format!("{prefix}.weight")),
            self.get(&format!("{prefix}.bias")),
        )?)
    }

    /// `x + y · diag(gamma)` (the layer scale `gamma`, when named) and its layer norm
    /// `norm`: a pre-norm block's residual add and the norm that follows it.
    pub fn add_norm(
        &self,
        x: &B::Tensor,
        y: &B::Tensor,
        gamma: Option<&str>,
        norm: &str,
        eps: f64,
    ) -> Result<(B::Tensor, B::Tensor), ModelError> {
        Ok(self.backend.add_layer_norm(
            x,
            y,
            gamma.map(|g| self.get(g)),
            self.get(&format!("{norm}.weight")),
            self.get(&format!("{norm}.bias")),
            eps,
        )?)
    }

    /// The layer norm `prefix`.
    pub fn norm(&self, x: &B::Tensor, prefix: &str, eps: f64) -> Result<B::Tensor, ModelError> {
        Ok(self.backend.layer_norm(
            x,
            self.get(&format!("{prefix}.weight")),
            self.get(&format!("{prefix}.bias")),
            eps,
        )?)
    }
}

/// Random host tensors of the `expected` shapes (normal, std 0.02; norm weights 1), from
/// `seed`.
pub fn random_host(
    expected: &[(String, Vec<usize>)],
    seed: u64,
) -> Result<HashMap<String, HostTensor>, ModelError> {
    let parameters: usize = expected.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    if parameters > MAX_RANDOM_PARAMETERS {
        return Err(ModelError::TooManyRandomParameters(parameters));
    }
    let mut state = seed | 1;
    let mut normal = move || {
        // Box–Muller over xorshift uniforms.
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (u, v) = (uniform(), uniform());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    };
    let mut tensors = HashMap::new();
    for (name, shape) in expected {
        let n = shape.iter().product();
        let data: Vec<f32> = if name.contains("norm") && name.ends_with(".weight") {
            vec![1.0; n]
        } else {
            (0..n).map(|_| 0.02 * normal()).collect()
        };
        tensors.insert(
            name.clone(),
            HostTensor {
                data,
                shape: shape.clone(),
            },
        );
    }
    Ok(tensors)
}

/// The matrix a tensor is used as: a vector is one row; leading unit dimensions go (timm's
/// `[1, T, D]` position embedding is `[T, D]`); otherwise the first dimension is the rows (a
/// convolution's `[out, in, kh, kw]` is `[out, in·kh·kw]`).
pub fn as_matrix(shape: &[usize]) -> (usize, usize) {
    let mut dims = shape;
    while dims.len() > 2 && dims[0] == 1 {
        dims = &dims[1..];
    }
    match dims {
        [] => (1, 1),
        [n] => (1, *n),
        [rows, rest @ ..] => (*rows, rest.iter().product()),
    }
}
