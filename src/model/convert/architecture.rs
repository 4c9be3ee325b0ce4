//! The tile encoder's architecture as a foundation model states it: timm constructor
//! arguments (over the defaults of a timm architecture name), a model hub's timm config.json
//! (`architecture` + `model_args` + `pretrained_cfg`), or a transformers ViT config.json.
//! Every argument is understood or refused by name: nothing is guessed, nothing defaulted
//! from a timm tag's pretrained settings.

use crate::model::config::{GlobalPool, MlpKind, ModelConfig};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// Per-channel mean and std of 0–1 RGB.
pub type Normalisation = ([f32; 3], [f32; 3]);

/// What the architecture's sources say, ready to be completed by the caller (name, MPP,
/// and mean and std where the config gave none).
#[derive(Debug)]
pub struct Architecture {
    /// Every field but `name` and `mpp`; `mean` and `std` are placeholders when
    /// `normalisation` is `None`.
    pub config: ModelConfig,
    /// Mean and std from the config file (timm's `pretrained_cfg`, transformers'
    /// preprocessor_config.json).
    pub normalisation: Option<Normalisation>,
    /// The architecture pools nothing (timm's `global_pool: ""`): the feature must be chosen.
    pub pool_unstated: bool,
    /// The tensors are named as transformers names them (converted to timm's names).
    pub transformers_names: bool,
    /// What it was built from, recorded in the converted config.
    pub described: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchitectureError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: neither a timm config (an \"architecture\" name) nor a transformers ViT config (\"model_type\": \"vit\")", path.display())]
    UnknownConfig { path: PathBuf },
    #[error("transformers model_type {0:?} is not supported (only \"vit\": ViTModel, as Phikon)")]
    TransformersType(String),
    #[error("timm architecture {name:?} is not one flashslide knows; known: {known}. Give the architecture by its constructor arguments instead (--arg embed_dim=… --arg depth=… …)")]
    UnknownTimmName { name: String, known: String },
    #[error("unknown timm VisionTransformer argument(s): {0}")]
    UnknownArguments(String),
    #[error("argument {key}: {problem}")]
    Argument { key: String, problem: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("a timm config's arguments given on the command line do not apply to a transformers config")]
    ArgumentsForTransformers,
}

/// The timm architecture names flashslide knows, with the constructor arguments timm gives
/// them (timm 1.0's `vision_transformer.py`). A name's `.tag` is ignored: tags change
/// pretrained settings, never the architecture, and those settings are never used.
fn timm_defaults(name: &str) -> Option<Value> {
    let base = name.split('.').next().unwrap_or(name);
    // (name, patch, width, depth, heads, image)
    const PLAIN: &[(&str, usize, usize, usize, usize, usize)] = &[
        ("vit_tiny_patch16_224", 16, 192, 12, 3, 224),
        ("vit_tiny_patch16_384", 16, 192, 12, 3, 384),
        ("vit_small_patch16_224", 16, 384, 12, 6, 224),
        ("vit_small_patch16_384", 16, 384, 12, 6, 384),
        ("vit_small_patch8_224", 8, 384, 12, 6, 224),
        ("vit_small_patch32_224", 32, 384, 12, 6, 224),
        ("vit_base_patch16_224", 16, 768, 12, 12, 224),
        ("vit_base_patch16_384", 16, 768, 12, 12, 384),
        ("vit_base_patch8_224", 8, 768, 12, 12, 224),
        ("vit_base_patch32_224", 32, 768, 12, 12, 224),
        ("vit_base_patch32_384", 32, 768, 12, 12, 384),
        ("vit_large_patch16_224", 16, 1024, 24, 16, 224),
        ("vit_large_patch16_384", 16, 1024, 24, 16, 384),
        ("vit_large_patch32_384", 32, 1024, 24, 16, 384),
        ("vit_huge_patch14_224", 14, 1280, 32, 16, 224),
    ];
    // DINOv2's ViTs: layer scale, trained at 518 px; the giant with a packed SwiGLU MLP.
    const DINOV2: &[(&str, usize, usize, usize)] = &[
        ("small", 384, 12, 6),
        ("base", 768, 12, 12),
        ("large", 1024, 24, 16),
        ("giant", 1536, 40, 24),
    ];
    if let Some(&(_, patch, width, depth, heads, image)) = PLAIN.iter().find(|p| p.0 == base) {
        return Some(
            json!({"patch_size": patch, "embed_dim": width, "depth": depth, "num_heads": heads, "img_size": image}),
        );
    }
    if base == "vit_giant_patch14_224" {
        return Some(
            json!({"patch_size": 14, "embed_dim": 1408, "mlp_ratio": 48.0 / 11.0, "depth": 40, "num_heads": 16, "img_size": 224}),
        );
    }
    for &(size, width, depth, heads) in DINOV2 {
        for (suffix, registers) in [("dinov2", false), ("reg4_dinov2", true)] {
            if base != format!("vit_{size}_patch14_{suffix}") {
                continue;
            }
            let mut args = json!({"patch_size": 14, "embed_dim": width, "depth": depth, "num_heads": heads, "init_values": 1e-5, "img_size": 518});
            if size == "giant" {
                args["mlp_ratio"] = json!(2.66667 * 2.0);
                args["mlp_layer"] = json!("swiglu_packed");
                args["act_layer"] = json!("silu");
            }
            if registers {
                args["reg_tokens"] = json!(4);
                args["no_embed_class"] = json!(true);
            }
            return Some(args);
        }
    }
    None
}

fn known_timm_names() -> String {
    let mut names: Vec<String> = [
        "vit_tiny_patch16_224",
        "vit_tiny_patch16_384",
        "vit_small_patch16_224",
        "vit_small_patch16_384",
        "vit_small_patch8_224",
        "vit_small_patch32_224",
        "vit_base_patch16_224",
        "vit_base_patch16_384",
        "vit_base_patch8_224",
        "vit_base_patch32_224",
        "vit_base_patch32_384",
        "vit_large_patch16_224",
        "vit_large_patch16_384",
        "vit_large_patch32_384",
        "vit_huge_patch14_224",
        "vit_giant_patch14_224",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for size in ["small", "base", "large", "giant"] {
        names.push(format!("vit_{size}_patch14_dinov2"));
        names.push(format!("vit_{size}_patch14_reg4_dinov2"));
    }
    names.join(", ")
}

/// The architecture from a timm name (its defaults) and constructor arguments over them
/// (`args` win, as keyword arguments to `timm.create_model` do).
pub fn from_timm(name: Option<&str>, args: &Map<String, Value>) -> Result<Architecture, ArchitectureError> {
    let mut merged = match name {
        Some(n) => match timm_defaults(n) {
            Some(Value::Object(m)) => m,
            _ => {
                return Err(ArchitectureError::UnknownTimmName {
                    name: n.to_string(),
                    known: known_timm_names(),
                })
            }
        },
        None => Map::new(),
    };
    merged.extend(args.clone());
    let mut arch = TimmArgs(merged).into_architecture()?;
    arch.described = match name {
        Some(n) => format!("timm {n} {}", Value::Object(args.clone())),
        None => format!("timm VisionTransformer {}", Value::Object(args.clone())),
    };
    Ok(arch)
}

/// The architecture from a config.json: a model hub's timm config, or a transformers ViT
/// config (mean and std then from preprocessor_config.json beside it, when there). `args`
/// override a timm config's `model_args` (what a model card passes to `create_model`).
pub fn from_config_file(path: &Path, args: &Map<String, Value>) -> Result<Architecture, ArchitectureError> {
    let value = read_json(path)?;
    if let Some(name) = value.get("architecture").and_then(Value::as_str) {
        let mut model_args = value
            .get("model_args")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        model_args.extend(args.clone());
        let mut arch = from_timm(Some(name), &model_args)?;
        arch.normalisation = normalisation(value.get("pretrained_cfg"), "mean", "std", path)?;
        arch.described = format!("{} ({})", arch.described, path.display());
        return Ok(arch);
    }
    match value.get("model_type").and_then(Value::as_str) {
        Some("vit") => {
            if !args.is_empty() {
                return Err(ArchitectureError::ArgumentsForTransformers);
            }
            let mut arch = from_transformers(&value)?;
            let preprocessor = path.with_file_name("preprocessor_config.json");
            if preprocessor.is_file() {
                let p = read_json(&preprocessor)?;
                arch.normalisation = normalisation(Some(&p), "image_mean", "image_std", &preprocessor)?;
            }
            arch.described = format!("transformers ViTModel ({})", path.display());
            Ok(arch)
        }
        Some(other) => Err(ArchitectureError::TransformersType(other.to_string())),
        None => Err(ArchitectureError::UnknownConfig {
            path: path.to_path_buf(),
        }),
    }
}

fn read_json(path: &Path) -> Result<Value, ArchitectureError> {
    let text = std::fs::read_to_string(path).map_err(|source| ArchitectureError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ArchitectureError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Mean and std under `mean_key` and `std_key` of `section`, when both are there.
fn normalisation(
    section: Option<&Value>,
    mean_key: &str,
    std_key: &str,
    path: &Path,
) -> Result<Option<Normalisation>, ArchitectureError> {
    let Some(section) = section else {
        return Ok(None);
    };
    let triple = |key: &str| -> Result<Option<[f32; 3]>, ArchitectureError> {
        let Some(v) = section.get(key) else {
            return Ok(None);
        };
        let bad = || ArchitectureError::Argument {
            key: format!("{key} in {}", path.display()),
            problem: format!("{v} is not three numbers"),
        };
        let list = v.as_array().filter(|a| a.len() == 3).ok_or_else(bad)?;
        let mut out = [0f32; 3];
        for (o, x) in out.iter_mut().zip(list) {
            *o = x.as_f64().ok_or_else(bad)? as f32;
        }
        Ok(Some(out))
    };
    Ok(match (triple(mean_key)?, triple(std_key)?) {
        (Some(m), Some(s)) => Some((m, s)),
        _ => None,
    })
}

impl Architecture {
    /// `config` as read from its sources, with the fields the caller completes (name, MPP,
    /// mean and std) as placeholders.
    fn read(config: ModelConfig, pool_unstated: bool, transformers_names: bool) -> Architecture {
        Architecture {
            config,
            normalisation: None,
            pool_unstated,
            transformers_names,
            described: String::new(),
        }
    }
}

/// A ViT configuration whose name, MPP, mean and std are placeholders, for the sources' own
/// fields to override.
fn placeholder_config() -> ModelConfig {
    ModelConfig {
        name: String::new(),
        architecture: "vit".into(),
        mpp: 0.5,
        image_size: 224,
        patch_size: 16,
        width: 768,
        depth: 12,
        heads: 12,
        mlp_ratio: 4.0,
        mlp: MlpKind::Gelu,
        norm_eps: 1e-6,
        qkv_bias: true,
        class_token: true,
        register_tokens: 0,
        no_embed_class: false,
        layer_scale: false,
        global_pool: GlobalPool::Token,
        fc_norm: false,
        mean: [0.0; 3],
        std: [1.0; 3],
        notice: None,
        slide_encoder: None,
        source: None,
    }
}

/// timm VisionTransformer keyword arguments, taken one by one; what is left is unknown.
struct TimmArgs(Map<String, Value>);

impl TimmArgs {
    fn take(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key).filter(|v| !v.is_null())
    }

    fn bad(key: &str, value: &Value, expected: &str) -> ArchitectureError {
        ArchitectureError::Argument {
            key: key.to_string(),
            problem: format!("{value} is not {expected}"),
        }
    }

    fn usize(&mut self, key: &str, default: usize) -> Result<usize, ArchitectureError> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| Self::bad(key, &v, "a whole number")),
        }
    }

    /// An image or patch size: a number, or a square `[h, w]` (its side).
    fn side(&mut self, key: &str, default: usize) -> Result<usize, ArchitectureError> {
        if let Some(Value::Array(a)) = self.0.get(key).cloned() {
            if a.len() == 2 && a[0] == a[1] {
                self.0.insert(key.to_string(), a[0].clone());
            }
        }
        self.usize(key, default)
    }

    fn f64(&mut self, key: &str, default: f64) -> Result<f64, ArchitectureError> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| Self::bad(key, &v, "a number")),
        }
    }

    fn bool(&mut self, key: &str, default: bool) -> Result<bool, ArchitectureError> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| Self::bad(key, &v, "true or false")),
        }
    }

    /// A layer given by name (`"silu"`, `"torch.nn.SiLU"`, `"timm.layers.SwiGLUPacked"`):
    /// its last dotted component, lower case, underscores dropped.
    fn layer(&mut self, key: &str) -> Result<Option<String>, ArchitectureError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(
                s.rsplit('.').next().unwrap_or(&s).to_lowercase().replace('_', ""),
            )),
            Some(v) => Err(Self::bad(key, &v, "a layer's name")),
        }
    }

    /// `key` must keep the value flashslide computes with.
    fn require(&mut self, key: &str, wanted: Value, why: &str) -> Result<(), ArchitectureError> {
        match self.take(key) {
            Some(v) if v != wanted => Err(ArchitectureError::Unsupported(format!("{key}={v}: {why}"))),
            _ => Ok(()),
        }
    }

    fn into_architecture(mut self) -> Result<Architecture, ArchitectureError> {
        let image_size = self.side("img_size", 224)?;
        let patch_size = self.side("patch_size", 16)?;
        let width = self.usize("embed_dim", 768)?;
        let depth = self.usize("depth", 12)?;
        let heads = self.usize("num_heads", 12)?;
        let mlp_ratio = self.f64("mlp_ratio", 4.0)?;
        let qkv_bias = self.bool("qkv_bias", true)?;
        let class_token = self.bool("class_token", true)?;
        let no_embed_class = self.bool("no_embed_class", false)?;
        let register_tokens = self.usize("reg_tokens", 0)?;
        // timm builds LayerScale only for a truthy init_values.
        let layer_scale = match self.take("init_values") {
            None => false,
            Some(v) => {
                v.as_f64()
                    .ok_or_else(|| Self::bad("init_values", &v, "a number or null"))?
                    != 0.0
            }
        };
        let pool_text = match self.take("global_pool") {
            None => "token".to_string(),
            Some(Value::String(s)) => s,
            Some(v) => return Err(Self::bad("global_pool", &v, "a string")),
        };
        let (global_pool, pool_unstated) = match pool_text.as_str() {
            "token" => (GlobalPool::Token, false),
            "avg" => (GlobalPool::Avg, false),
            "" => (GlobalPool::Token, true),
            other => {
                return Err(ArchitectureError::Unsupported(format!(
                    "global_pool={other:?}: flashslide pools by the class token, the mean of the patch tokens, or both (attention pooling, \"map\", is not supported)"
                )))
            }
        };
        // timm's default: fc_norm when pooling by the mean.
        let fc_norm = match self.take("fc_norm") {
            None => global_pool == GlobalPool::Avg,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| Self::bad("fc_norm", &v, "true, false or null"))?,
        };
        let act = self.layer("act_layer")?;
        let mlp_layer = self.layer("mlp_layer")?;
        let mlp = match mlp_layer.as_deref() {
            None | Some("mlp") => MlpKind::Gelu,
            Some("swiglupacked") => MlpKind::Swiglu,
            Some(other) => {
                return Err(ArchitectureError::Unsupported(format!(
                    "mlp_layer {other:?}: flashslide runs timm's Mlp and SwiGLUPacked"
                )))
            }
        };
        match (mlp, act.as_deref()) {
            (MlpKind::Gelu, None | Some("gelu")) | (MlpKind::Swiglu, Some("silu" | "swish")) => {}
            (MlpKind::Swiglu, None | Some("gelu")) => {
                return Err(ArchitectureError::Unsupported(
                    "SwiGLUPacked with a GELU activation (timm's default act_layer): the models that use SwiGLUPacked pass act_layer=silu (torch.nn.SiLU) too".into(),
                ))
            }
            (_, Some(a)) => {
                return Err(ArchitectureError::Unsupported(format!(
                    "act_layer {a:?} with mlp_layer {}: flashslide runs Mlp with exact GELU and SwiGLUPacked with SiLU",
                    mlp_layer.as_deref().unwrap_or("mlp")
                )))
            }
        }
        match self.layer("norm_layer")?.as_deref() {
            None | Some("layernorm") => {}
            Some(other) => {
                return Err(ArchitectureError::Unsupported(format!(
                    "norm_layer {other:?}: only LayerNorm"
                )))
            }
        }
        self.require("in_chans", json!(3), "flashslide encodes RGB tiles")?;
        self.require(
            "qk_norm",
            json!(false),
            "normalised queries and keys are not supported",
        )?;
        self.require(
            "proj_bias",
            json!(true),
            "projections without bias are not supported",
        )?;
        self.require(
            "pre_norm",
            json!(false),
            "a norm before the blocks (CLIP-style) is not supported",
        )?;
        self.require(
            "final_norm",
            json!(true),
            "a ViT without its final norm is not supported",
        )?;
        self.require(
            "pos_embed",
            json!("learn"),
            "only learned position embeddings are supported",
        )?;
        self.require(
            "dynamic_img_pad",
            json!(false),
            "padding tiles to the patch size is not supported",
        )?;
        // What does not change inference, or is flashslide's way anyway (any tile size).
        for ignored in [
            "num_classes",
            "dynamic_img_size",
            "drop_rate",
            "pos_drop_rate",
            "patch_drop_rate",
            "proj_drop_rate",
            "attn_drop_rate",
            "drop_path_rate",
            "weight_init",
            "fix_init",
            "pretrained_strict",
        ] {
            self.0.remove(ignored);
        }
        if !self.0.is_empty() {
            let names: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return Err(ArchitectureError::UnknownArguments(names.join(", ")));
        }
        let config = ModelConfig {
            image_size,
            patch_size,
            width,
            depth,
            heads,
            mlp_ratio,
            mlp,
            qkv_bias,
            class_token,
            register_tokens,
            no_embed_class,
            layer_scale,
            global_pool,
            fc_norm,
            ..placeholder_config()
        };
        Ok(Architecture::read(config, pool_unstated, false))
    }
}

/// A transformers `ViTConfig` (Phikon): class token, exact GELU MLP, class-token feature.
fn from_transformers(value: &Value) -> Result<Architecture, ArchitectureError> {
    let get = |key: &str, default: Option<u64>| -> Result<usize, ArchitectureError> {
        match value.get(key) {
            None => default
                .map(|d| d as usize)
                .ok_or_else(|| ArchitectureError::Argument {
                    key: key.into(),
                    problem: "missing".into(),
                }),
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| TimmArgs::bad(key, v, "a whole number")),
        }
    };
    let width = get("hidden_size", Some(768))?;
    let intermediate = get("intermediate_size", Some(3072))?;
    match value.get("hidden_act").and_then(Value::as_str).unwrap_or("gelu") {
        "gelu" => {}
        other => {
            return Err(ArchitectureError::Unsupported(format!(
                "hidden_act {other:?}: only exact GELU (\"gelu\")"
            )))
        }
    }
    if get("num_channels", Some(3))? != 3 {
        return Err(ArchitectureError::Unsupported(
            "num_channels: flashslide encodes RGB tiles".into(),
        ));
    }
    let norm_eps = value
        .get("layer_norm_eps")
        .and_then(Value::as_f64)
        .unwrap_or(1e-12);
    let config = ModelConfig {
        image_size: get("image_size", Some(224))?,
        patch_size: get("patch_size", Some(16))?,
        width,
        depth: get("num_hidden_layers", Some(12))?,
        heads: get("num_attention_heads", Some(12))?,
        mlp_ratio: intermediate as f64 / width.max(1) as f64,
        norm_eps,
        qkv_bias: value.get("qkv_bias").and_then(Value::as_bool).unwrap_or(true),
        ..placeholder_config()
    };
    Ok(Architecture::read(config, false, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn uni2h_by_its_model_card_arguments() {
        let a = from_timm(
            Some("vit_giant_patch14_224"),
            &args(json!({"img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24, "init_values": 1e-5,
                "embed_dim": 1536, "mlp_ratio": 5.33334, "num_classes": 0, "no_embed_class": true,
                "mlp_layer": "timm.layers.SwiGLUPacked", "act_layer": "torch.nn.SiLU", "reg_tokens": 8, "dynamic_img_size": true})),
        )
        .unwrap();
        let c = a.config;
        assert_eq!(
            (c.width, c.depth, c.heads, c.patch_size, c.register_tokens),
            (1536, 24, 24, 14, 8)
        );
        assert!(c.no_embed_class && c.layer_scale && c.mlp == MlpKind::Swiglu);
        assert_eq!(c.mlp_hidden(), 8192);
    }

    #[test]
    fn dinov2_giant_defaults() {
        let c = from_timm(
            Some("vit_giant_patch14_reg4_dinov2.lvd142m"),
            &args(json!({"img_size": 224})),
        )
        .unwrap()
        .config;
        assert_eq!(
            (c.width, c.depth, c.register_tokens, c.image_size, c.mlp_hidden()),
            (1536, 40, 4, 224, 8192)
        );
        assert!(c.no_embed_class && c.mlp == MlpKind::Swiglu);
    }

    #[test]
    fn refusals_name_the_argument() {
        let unknown = from_timm(Some("vit_base_patch16_224"), &args(json!({"embed_dims": 768}))).unwrap_err();
        assert!(unknown.to_string().contains("embed_dims"), "{unknown}");
        let geglu = from_timm(None, &args(json!({"mlp_layer": "SwiGLUPacked"}))).unwrap_err();
        assert!(geglu.to_string().contains("act_layer"), "{geglu}");
        let name = from_timm(Some("vit_base_patch16_clip_224"), &Map::new()).unwrap_err();
        assert!(name.to_string().contains("vit_base_patch16_clip_224"), "{name}");
        let pool = from_timm(None, &args(json!({"global_pool": "map"}))).unwrap_err();
        assert!(pool.to_string().contains("map"), "{pool}");
        assert!(from_timm(None, &args(json!({"qk_norm": true}))).is_err());
        assert!(from_timm(None, &args(json!({"depth": "12"}))).is_err());
    }

    #[test]
    fn empty_global_pool_is_left_to_the_caller() {
        let a = from_timm(Some("vit_huge_patch14_224"), &args(json!({"global_pool": ""}))).unwrap();
        assert!(a.pool_unstated);
    }
}
