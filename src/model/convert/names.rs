//! From a checkpoint's tensor names to timm's: wrappers every tensor shares are stripped
//! (`module.` of DistributedDataParallel, `model.`, torch.compile's `_orig_mod.`…), a vision
//! trunk is taken out of a larger model (open_clip's `visual.trunk.`, as CONCH), and
//! transformers' ViT names are mapped (Phikon), separate query, key and value joined into
//! timm's `qkv`. Then every name is matched strictly against what the architecture needs.

use candle_core::Tensor;
use std::collections::{BTreeMap, BTreeSet};

/// Prefixes stripped when every tensor has them.
const WRAPPERS: [&str; 7] = [
    "module.",
    "_orig_mod.",
    "model.",
    "backbone.",
    "vit.",
    "trunk.",
    "encoder.",
];
/// The vision trunk of an open_clip model (CONCH): taken when present, the rest left out.
const TRUNK: &str = "visual.trunk.";

/// A checkpoint's tensors under timm's names, and what was done to get there.
pub struct Renamed {
    pub tensors: BTreeMap<String, Tensor>,
    /// Groups of tensors the tile encoder does not use, each `prefix* (count)`.
    pub left_out: Vec<String>,
    /// Prefixes stripped, in order.
    pub stripped: Vec<String>,
}

/// Renames `tensors`: wrappers stripped, the subtree under `prefix` (or open_clip's vision
/// trunk) taken, transformers names mapped when `transformers`, a classifier head or
/// transformers pooler left out.
pub fn to_timm_names(
    tensors: Vec<(String, Tensor)>,
    prefix: Option<&str>,
    transformers: bool,
) -> Result<Renamed, candle_core::Error> {
    let mut stripped = Vec::new();
    let mut left: BTreeMap<String, usize> = BTreeMap::new();
    let mut tensors = strip_wrappers(tensors, &mut stripped);
    let subtree = prefix.map(str::to_string).or_else(|| {
        tensors
            .iter()
            .any(|(n, _)| n.starts_with(TRUNK))
            .then(|| TRUNK.to_string())
    });
    if let Some(p) = subtree {
        let (inside, outside): (Vec<_>, Vec<_>) = tensors.into_iter().partition(|(n, _)| n.starts_with(&p));
        for (n, _) in outside {
            *left.entry(group(&n)).or_default() += 1;
        }
        tensors = inside
            .into_iter()
            .map(|(n, t)| (n[p.len()..].to_string(), t))
            .collect();
        stripped.push(p);
        tensors = strip_wrappers(tensors, &mut stripped);
    }
    if transformers {
        tensors = from_transformers(tensors)?;
    }
    let mut out = BTreeMap::new();
    for (name, t) in tensors {
        // Features are taken before a classifier head or transformers' pooler.
        if name.starts_with("head.") || name.starts_with("pooler.") {
            *left.entry(group(&name)).or_default() += 1;
        } else {
            out.insert(name, t);
        }
    }
    Ok(Renamed {
        tensors: out,
        left_out: left.into_iter().map(|(g, n)| format!("{g} ({n})")).collect(),
        stripped,
    })
}

/// The first two components of a name, as a group (`text.transformer.*`).
fn group(name: &str) -> String {
    let parts: Vec<&str> = name.splitn(3, '.').collect();
    if parts.len() <= 2 {
        name.to_string()
    } else {
        format!("{}.{}.*", parts[0], parts[1])
    }
}

fn strip_wrappers(mut tensors: Vec<(String, Tensor)>, stripped: &mut Vec<String>) -> Vec<(String, Tensor)> {
    while let Some(p) = WRAPPERS
        .iter()
        .find(|p| !tensors.is_empty() && tensors.iter().all(|(n, _)| n.starts_with(*p)))
    {
        stripped.push(p.to_string());
        tensors = tensors
            .into_iter()
            .map(|(n, t)| (n[p.len()..].to_string(), t))
            .collect();
    }
    tensors
}

/// transformers' ViTModel names to timm's, as transformers 4 saved them (Phikon's file:
/// `encoder.layer.N.attention.attention.query`…) or transformers 5 does (`layers.N.attention.
/// q_proj`…); names it does not know pass unchanged (and are then reported as unexpected).
fn from_transformers(tensors: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>, candle_core::Error> {
    const FIXED: [(&str, &str); 6] = [
        ("embeddings.cls_token", "cls_token"),
        ("embeddings.position_embeddings", "pos_embed"),
        (
            "embeddings.patch_embeddings.projection.weight",
            "patch_embed.proj.weight",
        ),
        (
            "embeddings.patch_embeddings.projection.bias",
            "patch_embed.proj.bias",
        ),
        ("layernorm.weight", "norm.weight"),
        ("layernorm.bias", "norm.bias"),
    ];
    const LAYERS: [&str; 2] = ["encoder.layer.", "layers."];
    // Within a layer: (transformers 4 or 5, timm).
    const IN_LAYER: [(&str, &str); 8] = [
        ("layernorm_before.", "norm1."),
        ("layernorm_after.", "norm2."),
        ("attention.output.dense.", "attn.proj."),
        ("attention.o_proj.", "attn.proj."),
        ("intermediate.dense.", "mlp.fc1."),
        ("output.dense.", "mlp.fc2."),
        ("mlp.fc1.", "mlp.fc1."),
        ("mlp.fc2.", "mlp.fc2."),
    ];
    const QKV: [[&str; 3]; 2] = [
        [
            "attention.attention.query.",
            "attention.attention.key.",
            "attention.attention.value.",
        ],
        ["attention.q_proj.", "attention.k_proj.", "attention.v_proj."],
    ];
    let mut out = Vec::new();
    // (layer, "weight" | "bias") → query, key, value, each under its own name.
    type Parts = [Option<(String, Tensor)>; 3];
    let mut qkv: BTreeMap<(String, String), Parts> = BTreeMap::new();
    for (name, t) in tensors {
        if let Some((_, to)) = FIXED.iter().find(|(from, _)| *from == name) {
            out.push((to.to_string(), t));
            continue;
        }
        let Some((layer, inner)) = LAYERS
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .and_then(|rest| rest.split_once('.'))
            .filter(|(l, _)| l.parse::<usize>().is_ok())
            .map(|(l, i)| (l.to_string(), i.to_string()))
        else {
            out.push((name, t));
            continue;
        };
        let part = QKV.iter().find_map(|names| {
            names
                .iter()
                .enumerate()
                .find_map(|(i, p)| Some((i, inner.strip_prefix(p)?)))
        });
        if let Some((i, kind)) = part {
            qkv.entry((layer, kind.to_string())).or_default()[i] = Some((name, t));
            continue;
        }
        match IN_LAYER.iter().find(|(from, _)| inner.starts_with(from)) {
            Some((from, to)) => out.push((format!("blocks.{layer}.{to}{}", &inner[from.len()..]), t)),
            None => out.push((name, t)),
        }
    }
    for ((layer, kind), parts) in qkv {
        match parts {
            [Some((_, q)), Some((_, k)), Some((_, v))] => out.push((
                format!("blocks.{layer}.attn.qkv.{kind}"),
                Tensor::cat(&[&q, &k, &v], 0)?,
            )),
            // Incomplete: left under their own names, so each is reported.
            parts => out.extend(parts.into_iter().flatten()),
        }
    }
    Ok(out)
}

/// How `got` (name → shape) differs from `expected`: missing, unexpected, and shapes that
/// differ, each named; with hints where a difference points at one architecture argument.
#[derive(Debug, Default)]
pub struct Mismatch {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub shapes: Vec<(String, Vec<usize>, Vec<usize>)>,
    pub hints: Vec<String>,
}

impl Mismatch {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.shapes.is_empty()
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |f: &mut std::fmt::Formatter<'_>, what: &str, items: Vec<String>| -> std::fmt::Result {
            if !items.is_empty() {
                write!(f, "\n  {} {what}:", items.len())?;
            }
            for i in by_block(&items) {
                write!(f, "\n    {i}")?;
            }
            Ok(())
        };
        list(
            f,
            "missing (the architecture needs them, the checkpoint lacks them)",
            self.missing.clone(),
        )?;
        list(
            f,
            "unexpected (in the checkpoint, not in the architecture)",
            self.unexpected.clone(),
        )?;
        for (n, got, want) in &self.shapes {
            write!(
                f,
                "\n    {n}: {got:?} in the checkpoint, {want:?} in the architecture"
            )?;
        }
        for h in &self.hints {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Every name, those that differ only by their block folded into one line
/// (`blocks.[2-5, 7].attn.qkv.weight`), so that a depth mismatch stays readable.
fn by_block(names: &[String]) -> Vec<String> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut lines = Vec::new();
    for n in names {
        let block = n
            .strip_prefix("blocks.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(b, rest)| Some((b.parse::<usize>().ok()?, rest)));
        match block {
            Some((b, rest)) => groups.entry(rest.to_string()).or_default().push(b),
            None => lines.push(n.clone()),
        }
    }
    for (rest, mut blocks) in groups {
        blocks.sort_unstable();
        if blocks.len() == 1 {
            lines.push(format!("blocks.{}.{rest}", blocks[0]));
            continue;
        }
        let mut runs: Vec<String> = Vec::new();
        let mut start = blocks[0];
        for (i, &b) in blocks.iter().enumerate() {
            if blocks.get(i + 1) != Some(&(b + 1)) {
                runs.push(if start == b {
                    b.to_string()
                } else {
                    format!("{start}-{b}")
                });
                if let Some(&next) = blocks.get(i + 1) {
                    start = next;
                }
            }
        }
        lines.push(format!("blocks.[{}].{rest}", runs.join(", ")));
    }
    lines
}

/// Compares the checkpoint's names and shapes with the architecture's.
pub fn mismatch(got: &BTreeMap<String, Vec<usize>>, expected: &[(String, Vec<usize>)]) -> Mismatch {
    let want: BTreeMap<&str, &Vec<usize>> = expected.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let mut m = Mismatch::default();
    for (name, shape) in &want {
        match got.get(*name) {
            None => m.missing.push(name.to_string()),
            Some(g) if g != *shape => m.shapes.push((name.to_string(), g.clone(), shape.to_vec())),
            Some(_) => {}
        }
    }
    m.unexpected = got
        .keys()
        .filter(|n| !want.contains_key(n.as_str()))
        .cloned()
        .collect();
    m.hints = hints(&m, got, &want);
    m
}

/// Architecture arguments that a mismatch points at.
fn hints(
    m: &Mismatch,
    got: &BTreeMap<String, Vec<usize>>,
    want: &BTreeMap<&str, &Vec<usize>>,
) -> Vec<String> {
    let mut hints = BTreeSet::new();
    let (missing, unexpected): (BTreeSet<&str>, BTreeSet<&str>) = (
        m.missing.iter().map(|s| s.as_str()).collect(),
        m.unexpected.iter().map(|s| s.as_str()).collect(),
    );
    // Block 0 says whether the checkpoint has layer scale at all (a deeper block may be
    // missing for its depth).
    if unexpected.contains("blocks.0.ls1.gamma") {
        hints.insert("the checkpoint has layer scale: init_values=1e-5 (any non-zero value)".to_string());
    }
    if missing.contains("blocks.0.ls1.gamma") {
        hints.insert("the checkpoint has no layer scale: leave init_values unset".to_string());
    }
    if let Some(r) = got.get("reg_token") {
        if !want.contains_key("reg_token") || want["reg_token"] != r {
            hints.insert(format!(
                "the checkpoint has {} register tokens: reg_tokens={}",
                r[1], r[1]
            ));
        }
    }
    if missing.contains("reg_token") {
        hints.insert("the checkpoint has no register tokens: reg_tokens=0".into());
    }
    if unexpected
        .iter()
        .chain(&missing)
        .any(|n| n.contains(".blocks.") || n.starts_with("blocks."))
    {
        let depth = |names: &mut dyn Iterator<Item = &str>| {
            names
                .filter_map(|n| {
                    n.strip_prefix("blocks.")?
                        .split('.')
                        .next()?
                        .parse::<usize>()
                        .ok()
                })
                .max()
                .map_or(0, |d| d + 1)
        };
        let (have, need) = (
            depth(&mut got.keys().map(|s| s.as_str())),
            depth(&mut want.keys().copied()),
        );
        if have != need {
            hints.insert(format!("the checkpoint has {have} blocks: depth={have}"));
        }
    }
    for (name, g, w) in &m.shapes {
        if name == "pos_embed" && g.len() == 3 && w.len() == 3 && g[2] == w[2] {
            hints.insert(format!(
                "the checkpoint's position embedding has {} rows, the architecture {}: img_size, patch_size, reg_tokens and no_embed_class decide it",
                g[1], w[1]
            ));
        }
        if name.ends_with("mlp.fc1.weight") && g.len() == 2 && w.len() == 2 && g[1] == w[1] {
            hints.insert(format!(
                "the checkpoint's MLP is {} wide, the architecture's {}: mlp_ratio={:.5} (for a packed SwiGLU MLP with mlp_layer=swiglu_packed act_layer=silu)",
                g[0],
                w[0],
                g[0] as f64 / g[1] as f64
            ));
        }
        if name == "patch_embed.proj.weight" && g.len() == 4 && w.len() == 4 && g[2] != w[2] {
            hints.insert(format!(
                "the checkpoint's patches are {} px: patch_size={}",
                g[2], g[2]
            ));
        }
        if name == "cls_token" || (name.ends_with("norm1.weight") && g != w) {
            hints.insert(format!(
                "the checkpoint is {} wide: embed_dim={}",
                g[g.len() - 1],
                g[g.len() - 1]
            ));
        }
    }
    if missing.contains("norm.weight") && unexpected.contains("fc_norm.weight") {
        hints
            .insert("the checkpoint normalises the pooled feature: fc_norm=true (or global_pool=avg)".into());
    }
    if missing.contains("fc_norm.weight") && unexpected.contains("norm.weight") {
        hints.insert("the checkpoint has a final norm, no fc_norm: fc_norm=false".into());
    }
    hints.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn t(n: usize) -> Tensor {
        Tensor::zeros(n, DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn wrappers_and_trunk() {
        let r = to_timm_names(
            vec![
                ("module.visual.trunk.cls_token".into(), t(1)),
                ("module.visual.attn_pool.q".into(), t(1)),
                ("module.text.transformer.w".into(), t(1)),
                ("module.visual.trunk.head.weight".into(), t(1)),
            ],
            None,
            false,
        )
        .unwrap();
        assert_eq!(r.tensors.keys().collect::<Vec<_>>(), ["cls_token"]);
        assert_eq!(r.stripped, ["module.", "visual.trunk."]);
        assert_eq!(
            r.left_out,
            [
                "head.weight (1)",
                "text.transformer.* (1)",
                "visual.attn_pool.* (1)"
            ]
        );
    }

    #[test]
    fn transformers_names() {
        let names = [
            "embeddings.cls_token",
            "encoder.layer.3.attention.attention.query.weight",
            "encoder.layer.3.attention.attention.key.weight",
            "encoder.layer.3.attention.attention.value.weight",
            "encoder.layer.3.attention.attention.query.bias",
            "encoder.layer.3.attention.output.dense.bias",
            "encoder.layer.3.output.dense.weight",
            "encoder.layer.3.intermediate.dense.weight",
            "pooler.dense.weight",
        ];
        let r = to_timm_names(names.iter().map(|n| (n.to_string(), t(2))).collect(), None, true).unwrap();
        let got: Vec<&str> = r.tensors.keys().map(|s| s.as_str()).collect();
        // The bias's key and value are missing: its query stays under its own name.
        assert_eq!(
            got,
            [
                "blocks.3.attn.proj.bias",
                "blocks.3.attn.qkv.weight",
                "blocks.3.mlp.fc1.weight",
                "blocks.3.mlp.fc2.weight",
                "cls_token",
                "encoder.layer.3.attention.attention.query.bias"
            ]
        );
        assert_eq!(r.tensors["blocks.3.attn.qkv.weight"].dims(), [6]);
    }

    #[test]
    fn transformers_5_names() {
        let names = [
            "layers.0.attention.q_proj.weight",
            "layers.0.attention.k_proj.weight",
            "layers.0.attention.v_proj.weight",
            "layers.0.attention.o_proj.bias",
            "layers.0.layernorm_after.weight",
            "layers.0.mlp.fc1.weight",
            "layers.0.mlp.fc2.bias",
            "layernorm.bias",
        ];
        let r = to_timm_names(names.iter().map(|n| (n.to_string(), t(2))).collect(), None, true).unwrap();
        let got: Vec<&str> = r.tensors.keys().map(|s| s.as_str()).collect();
        assert_eq!(
            got,
            [
                "blocks.0.attn.proj.bias",
                "blocks.0.attn.qkv.weight",
                "blocks.0.mlp.fc1.weight",
                "blocks.0.mlp.fc2.bias",
                "blocks.0.norm2.weight",
                "norm.bias"
            ]
        );
    }

    #[test]
    fn mismatch_names_each() {
        let got: BTreeMap<String, Vec<usize>> = [
            ("a".to_string(), vec![2]),
            ("b".to_string(), vec![3]),
            ("x".to_string(), vec![1]),
        ]
        .into();
        let m = mismatch(
            &got,
            &[
                ("a".into(), vec![2]),
                ("b".into(), vec![4]),
                ("c".into(), vec![1]),
            ],
        );
        assert_eq!(m.missing, ["c"]);
        assert_eq!(m.unexpected, ["x"]);
        assert_eq!(m.shapes, [("b".to_string(), vec![3], vec![4])]);
        let text = m.to_string();
        assert!(
            text.contains("c") && text.contains("x") && text.contains("[3]"),
            "{text}"
        );
    }

    #[test]
    fn block_names_fold() {
        let names: Vec<String> = [2, 3, 4, 7]
            .iter()
            .map(|b| format!("blocks.{b}.attn.qkv.weight"))
            .chain(["blocks.9.ls1.gamma".to_string(), "reg_token".to_string()])
            .collect();
        assert_eq!(
            by_block(&names),
            [
                "reg_token",
                "blocks.[2-4, 7].attn.qkv.weight",
                "blocks.9.ls1.gamma"
            ]
        );
    }
}
