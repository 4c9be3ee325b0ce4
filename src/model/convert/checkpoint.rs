//! A foundation model's checkpoint read as named tensors: safetensors, or a PyTorch zip
//! checkpoint (`torch.save`, `pytorch_model.bin`) through candle's restricted unpickler,
//! which builds tensors and nothing else (no code from the file runs). Sizes the file claims
//! are checked against its length before anything is allocated for them.

use candle_core::pickle::PthTensors;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Every tensor of a checkpoint and the file's SHA-256.
pub struct Checkpoint {
    pub tensors: Vec<(String, Tensor)>,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: neither safetensors nor a PyTorch zip checkpoint (a file from torch.save before torch 1.6? load it in PyTorch and save it again, or as safetensors)", path.display())]
    Format { path: PathBuf },
    #[error("{}: unreadable {format}: {msg}", path.display())]
    Unreadable {
        path: PathBuf,
        format: &'static str,
        msg: String,
    },
    #[error("{}: its tensors claim {claimed} bytes, but the file has {bytes}", path.display())]
    Oversized { path: PathBuf, claimed: u64, bytes: u64 },
    #[error("{}: no tensors found (looked at the top level and under {STATE_DICT_KEYS:?})", path.display())]
    Empty { path: PathBuf },
    #[error("{}: tensor {name} is {dtype:?}, not a floating-point weight", path.display())]
    NotFloat {
        path: PathBuf,
        name: String,
        dtype: DType,
    },
}

/// Where training scripts put the state dict inside a saved dictionary.
const STATE_DICT_KEYS: [&str; 4] = ["state_dict", "model", "module", "teacher"];

/// Reads `path`, choosing the format by its first bytes.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut head = [0u8; 9];
    let mut file = std::fs::File::open(path).map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len();
    let got = file.read(&mut head).map_err(io)?;
    let tensors = if got >= 4 && head.starts_with(b"PK\x03\x04") {
        read_pytorch(path, bytes)?
    } else if got == 9 && head[8] == b'{' {
        read_safetensors(path)?
    } else {
        return Err(CheckpointError::Format {
            path: path.to_path_buf(),
        });
    };
    if tensors.is_empty() {
        return Err(CheckpointError::Empty {
            path: path.to_path_buf(),
        });
    }
    for (name, t) in &tensors {
        if !matches!(t.dtype(), DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
            return Err(CheckpointError::NotFloat {
                path: path.to_path_buf(),
                name: name.clone(),
                dtype: t.dtype(),
            });
        }
    }
    Ok(Checkpoint {
        tensors,
        sha256: crate::model::file_sha256(path).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?,
    })
}

fn read_safetensors(path: &Path) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    let bad = |e: candle_core::Error| CheckpointError::Unreadable {
        path: path.to_path_buf(),
        format: "safetensors",
        msg: e.to_string(),
    };
    // SAFETY: mapped read-only; a file changed underneath by another program while it is
    // converted is that program's doing, as with any memory-mapped read. The safetensors
    // reader checks every tensor's offsets against the file's length.
    let file = unsafe { MmapedSafetensors::new(path) }.map_err(bad)?;
    let mut names: Vec<String> = file.tensors().into_iter().map(|(n, _)| n).collect();
    names.sort();
    names
        .into_iter()
        .map(|n| Ok((n.clone(), file.load(&n, &Device::Cpu).map_err(bad)?)))
        .collect()
}

/// A PyTorch zip checkpoint: the state dict at the top level or under one of
/// [`STATE_DICT_KEYS`].
fn read_pytorch(path: &Path, bytes: u64) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    let bad = |msg: String| CheckpointError::Unreadable {
        path: path.to_path_buf(),
        format: "PyTorch checkpoint",
        msg,
    };
    let mut found = None;
    for key in std::iter::once(None).chain(STATE_DICT_KEYS.iter().map(|k| Some(*k))) {
        match unpanicking(|| PthTensors::new(path, key)).map_err(&bad)? {
            Ok(p) if !p.tensor_infos().is_empty() => {
                found = Some(p);
                break;
            }
            Ok(_) => {}
            // Without a key, an error is the file's; with one, the key may just be absent.
            Err(e) if key.is_none() => return Err(bad(e.to_string())),
            Err(_) => {}
        }
    }
    let Some(pth) = found else {
        return Ok(Vec::new());
    };
    // Each storage is held once in the file: together they cannot be larger than it.
    let mut storages: std::collections::BTreeMap<&str, u64> = Default::default();
    for info in pth.tensor_infos().values() {
        let element = info.dtype.size_in_bytes() as u64;
        let extent = info.layout.start_offset() as u64 + info.layout.shape().elem_count() as u64;
        let storage = info.storage_size as u64;
        if extent > storage {
            return Err(bad(format!(
                "tensor {} reaches element {extent} of a storage of {storage}",
                info.name
            )));
        }
        storages.insert(&info.path, storage.saturating_mul(element));
    }
    let claimed = storages.values().fold(0u64, |a, b| a.saturating_add(*b));
    if claimed > bytes {
        return Err(CheckpointError::Oversized {
            path: path.to_path_buf(),
            claimed,
            bytes,
        });
    }
    let mut names: Vec<String> = pth.tensor_infos().keys().cloned().collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let t = unpanicking(|| pth.get(&n))
                .map_err(&bad)?
                .map_err(|e| bad(format!("tensor {n}: {e}")))?
                .ok_or_else(|| bad(format!("tensor {n} vanished")))?;
            Ok((n, t))
        })
        .collect()
}

/// Runs candle's unpickler, turning a panic on a malformed file (it indexes tuples the file
/// describes) into an error, without the panic's message on stderr.
fn unpanicking<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|p| {
        let why = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("malformed pickle ({why})")
    })
}
