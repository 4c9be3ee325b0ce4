//! `flashslide convert`: a foundation model's checkpoint into a flashslide model directory,
//! offline and strictly. The architecture is what the user states (timm constructor
//! arguments, a model hub's config.json, or a transformers ViT config), never guessed from
//! the weights; every tensor the architecture needs must be in the checkpoint with its shape,
//! and every tensor of the checkpoint must be used or be a known part left out (a classifier
//! head, a CLIP model's text tower), each difference named. Mean, std and MPP are stated or
//! taken from the config, never defaulted.

pub mod architecture;
pub mod checkpoint;
pub mod names;

use super::config::{ConfigError, GlobalPool, ModelConfig, ModelSource};
use super::tile_encoder::expected_shapes;
use crate::util::atomic;
use architecture::{Architecture, ArchitectureError};
use candle_core::{DType, Tensor};
use checkpoint::{read_checkpoint, CheckpointError};
use names::{mismatch, to_timm_names, Mismatch};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the architecture comes from.
#[derive(Clone, Debug)]
pub enum ArchitectureSpec {
    /// A config.json (timm hub or transformers), with timm arguments over its own.
    ConfigFile { path: PathBuf, args: Map<String, Value> },
    /// A timm name's defaults (or none) with constructor arguments over them.
    Timm {
        name: Option<String>,
        args: Map<String, Value>,
    },
}

/// One conversion.
#[derive(Clone, Debug)]
pub struct ConvertRequest {
    pub checkpoint: PathBuf,
    pub out: PathBuf,
    pub architecture: ArchitectureSpec,
    /// Overrides the config's normalisation; needed when the config has none.
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    /// The resolution the encoder was trained at, µm/px: no checkpoint says it.
    pub mpp: f64,
    /// The tile feature, when the architecture pools nothing or another is wanted.
    pub pool: Option<GlobalPool>,
    /// Take only the tensors under this prefix (the rest left out).
    pub prefix: Option<String>,
    /// The model's name; default the output folder's.
    pub name: Option<String>,
}

/// What a conversion did.
#[derive(Debug)]
pub struct ConvertReport {
    pub config: ModelConfig,
    pub tensors: usize,
    pub parameters: usize,
    pub stripped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("architecture: {0}")]
    Architecture(#[from] ArchitectureError),
    #[error("the architecture pools nothing (timm's global_pool \"\"): say which tile feature to keep with --pool token, avg or token_and_avg")]
    PoolUnstated,
    #[error("no mean and std for the input normalisation: the config gives none, so give --mean and --std as the model's card states them (never a library's default)")]
    NoNormalisation,
    #[error("the converted configuration is not one flashslide can run: {0}")]
    Config(#[from] ConfigError),
    #[error("{}: does not match the architecture ({architecture}):{mismatch}", checkpoint.display())]
    Mismatch {
        checkpoint: PathBuf,
        architecture: String,
        mismatch: Box<Mismatch>,
    },
    #[error("{}: {msg}", checkpoint.display())]
    Tensors { checkpoint: PathBuf, msg: String },
    #[error("{}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{}: {why}; choose an output folder of its own", out.display())]
    Output { out: PathBuf, why: &'static str },
}

/// Converts `request.checkpoint` into `request.out` (model.safetensors under timm's names,
/// then config.json, each written atomically: a folder with a config.json is complete).
pub fn convert(request: &ConvertRequest) -> Result<ConvertReport, ConvertError> {
    check_output(request)?;
    let arch = match &request.architecture {
        ArchitectureSpec::ConfigFile { path, args } => architecture::from_config_file(path, args)?,
        ArchitectureSpec::Timm { name, args } => architecture::from_timm(name.as_deref(), args)?,
    };
    let config = complete(&arch, request)?;
    let checkpoint = read_checkpoint(&request.checkpoint)?;
    let tensor_error = |e: candle_core::Error| ConvertError::Tensors {
        checkpoint: request.checkpoint.clone(),
        msg: e.to_string(),
    };
    let renamed = to_timm_names(
        checkpoint.tensors,
        request.prefix.as_deref(),
        arch.transformers_names,
    )
    .map_err(tensor_error)?;
    let shapes: BTreeMap<String, Vec<usize>> = renamed
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.dims().to_vec()))
        .collect();
    let m = mismatch(&shapes, &expected_shapes(&config));
    if !m.is_empty() {
        return Err(ConvertError::Mismatch {
            checkpoint: request.checkpoint.clone(),
            architecture: arch.described.clone(),
            mismatch: Box::new(m),
        });
    }
    let config = ModelConfig {
        source: Some(ModelSource {
            checkpoint: request
                .checkpoint
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: checkpoint.sha256,
            architecture: arch.described.clone(),
            left_out: renamed.left_out.clone(),
        }),
        ..config
    };
    let parameters = renamed.tensors.values().map(|t| t.elem_count()).sum();
    let tensors = renamed.tensors.len();
    write_model(&request.out, renamed.tensors, &config)
        .map_err(|(path, source)| ConvertError::Write { path, source })?;
    Ok(ConvertReport {
        config,
        tensors,
        parameters,
        stripped: renamed.stripped,
    })
}

/// The output folder may hold only an earlier conversion: never the checkpoint, the config
/// files it was given, or another program's config.json (a model downloaded from a hub,
/// converted in place, keeps its files).
fn check_output(request: &ConvertRequest) -> Result<(), ConvertError> {
    let refuse = |why| {
        Err(ConvertError::Output {
            out: request.out.clone(),
            why,
        })
    };
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let (weights, config) = (
        request.out.join("model.safetensors"),
        request.out.join("config.json"),
    );
    if same(&weights, &request.checkpoint) {
        return refuse("its model.safetensors is the checkpoint being converted");
    }
    if let ArchitectureSpec::ConfigFile { path, .. } = &request.architecture {
        if same(&config, path) {
            return refuse("its config.json is the architecture's config file");
        }
    }
    if let Ok(text) = std::fs::read_to_string(&config) {
        let converted = serde_json::from_str::<ModelConfig>(&text).is_ok_and(|c| c.source.is_some());
        if !converted {
            return refuse("it holds a config.json that no conversion wrote");
        }
    }
    Ok(())
}

/// The architecture's config with the request's name, MPP, normalisation and pooling.
fn complete(arch: &Architecture, request: &ConvertRequest) -> Result<ModelConfig, ConvertError> {
    let mut config = arch.config.clone();
    config.name = request.name.clone().unwrap_or_else(|| {
        request
            .out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "converted".into())
    });
    config.mpp = request.mpp;
    let (mean, std) = match (request.mean, request.std, arch.normalisation) {
        (Some(m), Some(s), _) => (m, s),
        (m, s, Some((cm, cs))) => (m.unwrap_or(cm), s.unwrap_or(cs)),
        _ => return Err(ConvertError::NoNormalisation),
    };
    (config.mean, config.std) = (mean, std);
    match (request.pool, arch.pool_unstated) {
        (Some(p), _) => config.global_pool = p,
        (None, true) => return Err(ConvertError::PoolUnstated),
        (None, false) => {}
    }
    config.validate()?;
    Ok(config)
}

/// Writes the tensors (in the checkpoint's float type; f64 as f32) then config.json.
fn write_model(
    out: &Path,
    tensors: BTreeMap<String, Tensor>,
    config: &ModelConfig,
) -> Result<(), (PathBuf, std::io::Error)> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| (path, source)
    };
    std::fs::create_dir_all(out).map_err(at(out))?;
    let weights = out.join("model.safetensors");
    let config_path = out.join("config.json");
    // A config.json from an earlier conversion would vouch for the new weights while they
    // are written: it goes first.
    atomic::remove_durably(&config_path).map_err(at(&config_path))?;
    // What a killed conversion left half-written.
    atomic::remove_partials(out);
    let tensors: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(n, t)| {
            let t = if t.dtype() == DType::F64 {
                t.to_dtype(DType::F32)
            } else {
                Ok(t)
            };
            t.and_then(|t| t.contiguous()).map(|t| (n, t))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| (weights.clone(), std::io::Error::other(e)))?;
    atomic::write_atomically_to_path(&weights, |tmp| {
        safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n.as_str(), t)), None, tmp)
            .map_err(std::io::Error::other)
    })
    .map_err(at(&weights))?;
    let json =
        serde_json::to_string_pretty(config).map_err(|e| (config_path.clone(), std::io::Error::other(e)))?;
    atomic::write_bytes(&config_path, json.as_bytes()).map_err(at(&config_path))
}
