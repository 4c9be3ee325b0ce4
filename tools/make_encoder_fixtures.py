#!/usr/bin/env python3
"""Conversion fixtures for the pathology foundation encoders: each built as its model card
builds it (timm, or transformers for Phikon), at real widths, head dims and token layouts
(depth 2 unless --full-depth), with weights from a generator that tests/convert.rs repeats
exactly, so no checkpoint needs to be committed: only the recipe and timm's output.

    python3 tools/make_encoder_fixtures.py OUT_DIR [--checkpoints DIR] [--full-depth] [NAME...]
    python3 tools/make_encoder_fixtures.py --pytorch-sample FILE

Writes OUT_DIR/NAME.json: the checkpoint's tensors (names as the vendor's file has them,
shapes, value ranges, dtype), the config files and `flashslide convert` arguments the README
gives for the model, and `expected`: the reference's pooled tile features (float64) for the
generated images. With --checkpoints, also writes DIR/NAME/ (checkpoint, config files) for
`flashslide convert` on the GPU machine.

The generator: value i (from 0) of tensor NAME in [lo, hi) is lo + (hi - lo) * u with
u = (splitmix64(fnv1a64(NAME) + (i + 1) * 0x9E3779B97F4A7C15) >> 40) / 2^24, in float32
arithmetic, then rounded to the checkpoint's dtype (round to nearest even). Image bytes are
the top 8 bits of the same sequence for the name "images", [B, H, W, 3].
Needs torch, timm, transformers, numpy, safetensors.
"""

import json
import math
import os
import re
import sys

import numpy as np
import torch

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def sequence(name, n):
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a64(name)) + np.arange(1, n + 1, dtype=np.uint64) * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def values(name, n, lo, hi):
    u = (sequence(name, n) >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24)
    lo32, hi32 = np.float32(lo), np.float32(hi)
    return lo32 + (hi32 - lo32) * u


def images(count, side):
    return (sequence("images", count * side * side * 3) >> np.uint64(56)).astype(np.uint8).reshape(count, side, side, 3)


def value_range(name, shape):
    """Ranges with some spread everywhere (timm initialises some tensors to 0 or 1)."""
    last = name.rsplit(".", 1)[-1]
    if "norm" in name and last == "weight":
        return 0.8, 1.2
    if last in ("gamma", "lambda1"):
        return 0.1, 0.5
    if last == "bias":
        return -0.1, 0.1
    if len(shape) >= 2 and not any(k in name for k in ("cls_token", "reg_token", "pos_embed", "position_embeddings", "mask_token")):
        a = math.sqrt(3.0 / math.prod(shape[1:]))
        return -a, a
    return -0.5, 0.5


def fill(state, dtype, vendor_name):
    """The generated checkpoint for `state`'s shapes: specs and tensors under the names of the
    vendor's file (`vendor_name` of the model's), and the tensors under the model's names."""
    specs, saved, loaded = [], {}, {}
    for name, t in state.items():
        shape, vname = list(t.shape), vendor_name(name)
        lo, hi = value_range(vname, shape)
        v = torch.from_numpy(values(vname, max(1, math.prod(shape)), lo, hi).reshape(shape)).to(dtype)
        saved[vname], loaded[name] = v, v
        specs.append([vname, shape, lo, hi])
    return specs, saved, loaded


def transformers4_name(name):
    """A transformers 5 ViT tensor name as transformers 4 saved it (Phikon's file on the hub)."""
    m = re.match(r"layers\.(\d+)\.(.*)", name)
    if not m:
        return name
    layer, rest = m.groups()
    for new, old in [("attention.q_proj.", "attention.attention.query."), ("attention.k_proj.", "attention.attention.key."),
                     ("attention.v_proj.", "attention.attention.value."), ("attention.o_proj.", "attention.output.dense."),
                     ("mlp.fc1.", "intermediate.dense."), ("mlp.fc2.", "output.dense."),
                     ("layernorm_before.", "layernorm_before."), ("layernorm_after.", "layernorm_after.")]:
        if rest.startswith(new):
            return f"encoder.layer.{layer}.{old}{rest[len(new):]}"
    raise KeyError(name)


def timm_model(arch, kwargs, depth):
    import timm
    from timm.layers import SwiGLUPacked

    layers = {"swiglu_packed": SwiGLUPacked, "silu": torch.nn.SiLU}
    built = {k: layers.get(v, v) if k in ("mlp_layer", "act_layer") else v for k, v in kwargs.items()}
    return timm.create_model(arch, pretrained=False, **dict(built, depth=depth))


# Each model as its card builds it. `hub` is the model hub's config.json where the vendor ships
# one (its architecture + model_args + pretrained_cfg); `card_kwargs` what the card passes to
# timm.create_model beside it; `convert` the README's flashslide convert arguments ({dir} is
# where the config files are). Depth is set to 2 for the fixtures.
MODELS = {
    "uni": dict(
        card="UNI (MahmoodLab/UNI): ViT-L/16, layer scale",
        hub={"architecture": "vit_large_patch16_224", "num_classes": 0,
             "model_args": {"img_size": 224, "patch_size": 16, "init_values": 1e-5, "num_classes": 0, "dynamic_img_size": True},
             "pretrained_cfg": {"mean": IMAGENET[0], "std": IMAGENET[1]}},
        card_kwargs={}, side=224, dtype=torch.float32, feature="token",
        convert=["--config", "{dir}/config.json", "--mpp", "0.5"],
    ),
    "uni2-h": dict(
        card="UNI2-h (MahmoodLab/UNI2-h): 1536 wide, 24 heads, SwiGLU, 8 registers, no_embed_class",
        arch="vit_giant_patch14_224",
        card_kwargs={"img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24, "init_values": 1e-5, "embed_dim": 1536,
                     "mlp_ratio": 2.66667 * 2, "num_classes": 0, "no_embed_class": True, "mlp_layer": "swiglu_packed",
                     "act_layer": "silu", "reg_tokens": 8, "dynamic_img_size": True},
        side=224, dtype=torch.bfloat16, feature="token",
        convert=["--arch", "vit_giant_patch14_224", "--arg", "img_size=224", "--arg", "patch_size=14", "--arg", "depth={depth}",
                 "--arg", "num_heads=24", "--arg", "init_values=1e-5", "--arg", "embed_dim=1536", "--arg", "mlp_ratio=5.33334",
                 "--arg", "no_embed_class=true", "--arg", "mlp_layer=swiglu_packed", "--arg", "act_layer=silu",
                 "--arg", "reg_tokens=8", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--mpp", "0.5"],
    ),
    "virchow2": dict(
        card="Virchow2 (paige-ai/Virchow2): ViT-H/14, head dim 80, SwiGLU, 4 registers, class token ⊕ mean of patch tokens",
        hub={"architecture": "vit_huge_patch14_224", "num_classes": 0,
             "model_args": {"img_size": 224, "init_values": 1e-5, "num_classes": 0, "reg_tokens": 4, "mlp_ratio": 5.3375,
                            "global_pool": "", "dynamic_img_size": True},
             "pretrained_cfg": {"mean": IMAGENET[0], "std": IMAGENET[1]}},
        card_kwargs={"mlp_layer": "swiglu_packed", "act_layer": "silu"}, side=224, dtype=torch.bfloat16, feature="token_and_avg",
        convert=["--config", "{dir}/config.json", "--arg", "mlp_layer=swiglu_packed", "--arg", "act_layer=silu",
                 "--pool", "token_and_avg", "--mpp", "0.5"],
    ),
    "h-optimus-0": dict(
        card="H-optimus-0 (bioptimus/H-optimus-0): ViT-g/14, 4 registers, no_embed_class",
        hub={"architecture": "vit_giant_patch14_reg4_dinov2", "num_classes": 0,
             "model_args": {"img_size": 224, "init_values": 1e-5, "num_classes": 0, "dynamic_img_size": False},
             "pretrained_cfg": {"mean": [0.707223, 0.578729, 0.703617], "std": [0.211883, 0.230117, 0.177517]}},
        card_kwargs={}, side=224, dtype=torch.float16, feature="token",
        convert=["--config", "{dir}/config.json", "--mpp", "0.5"],
    ),
    "prov-gigapath": dict(
        card="Prov-GigaPath tile encoder (prov-gigapath/prov-gigapath): ViT-g with 16-px patches; checkpoint saved from DataParallel (module.)",
        hub={"architecture": "vit_giant_patch14_dinov2", "num_classes": 0,
             "model_args": {"img_size": 224, "in_chans": 3, "patch_size": 16, "embed_dim": 1536, "num_heads": 24,
                            "init_values": 1e-5, "mlp_ratio": 5.33334, "num_classes": 0},
             "pretrained_cfg": {"mean": IMAGENET[0], "std": IMAGENET[1]}},
        card_kwargs={}, side=224, dtype=torch.bfloat16, feature="token", prefix="module.",
        convert=["--config", "{dir}/config.json", "--mpp", "0.5"],
    ),
    "conch": dict(
        card="CONCH's vision trunk (MahmoodLab/CONCH): ViT-B/16 at 448 px inside an open_clip model (visual.trunk.)",
        arch="vit_base_patch16_224", card_kwargs={"img_size": 448, "num_classes": 0, "global_pool": ""},
        side=448, dtype=torch.float32, feature="token", prefix="visual.trunk.",
        # The rest of the CoCa model, left out by the conversion.
        extra={"visual.attn_pool_contrast.attn.in_proj_weight": [48, 16], "visual.proj_contrast": [16, 8],
               "text.token_embedding.weight": [32, 16], "logit_scale": []},
        convert=["--arch", "vit_base_patch16_224", "--arg", "img_size=448", "--arg", "depth={depth}",
                 "--mean", "0.48145466,0.4578275,0.40821073", "--std", "0.26862954,0.26130258,0.27577711", "--mpp", "0.5"],
    ),
    "phikon": dict(
        card="Phikon (owkin/phikon): transformers ViTModel, ViT-B/16, class token of the last hidden state",
        transformers=True, side=224, dtype=torch.float32, feature="token",
        convert=["--config", "{dir}/config.json", "--mpp", "0.5"],
    ),
}
FULL_DEPTH = {"uni": 24, "uni2-h": 24, "virchow2": 32, "h-optimus-0": 40, "prov-gigapath": 40, "conch": 12, "phikon": 12}
CONCH_MEAN_STD = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])


def build(name, m, depth):
    """The reference model, the checkpoint's state (vendor names) and the model's input mean/std."""
    if m.get("transformers"):
        from transformers import ViTConfig, ViTModel
        config = ViTConfig(hidden_size=768, num_hidden_layers=depth, num_attention_heads=12, intermediate_size=3072,
                           hidden_act="gelu", layer_norm_eps=1e-12, image_size=224, patch_size=16, qkv_bias=True)
        model = ViTModel(config)
        return model, IMAGENET
    if "hub" in m:
        hub = m["hub"]
        model = timm_model(hub["architecture"], dict(hub["model_args"], **m["card_kwargs"]), depth)
        return model, (hub["pretrained_cfg"]["mean"], hub["pretrained_cfg"]["std"])
    mean_std = CONCH_MEAN_STD if name == "conch" else IMAGENET
    return timm_model(m["arch"], m["card_kwargs"], depth), mean_std


def features(name, m, model, x):
    if m.get("transformers"):
        return model(pixel_values=x).last_hidden_state[:, 0]
    tokens = model.forward_features(x)
    if m["feature"] == "token_and_avg":
        return torch.cat([tokens[:, 0], tokens[:, model.num_prefix_tokens:].mean(1)], dim=-1)
    if name == "conch":
        return tokens[:, 0]
    return model.forward_head(tokens, pre_logits=True)


def make(name, out, checkpoints, full):
    from safetensors.torch import save_file

    m = MODELS[name]
    depth = FULL_DEPTH[name] if full else 2
    model, (mean, std) = build(name, m, depth)
    model = model.eval()
    state = {k: v for k, v in model.state_dict().items()}
    prefix = m.get("prefix", "")
    rename = transformers4_name if m.get("transformers") else (lambda k: k)
    specs, saved, loaded = fill(state, m["dtype"], lambda k: prefix + rename(k))
    # The reference computes in float64 from the checkpoint's (rounded) values.
    model.load_state_dict({k: v.to(torch.float32) for k, v in loaded.items()}, strict=True)
    model = model.double()
    imgs = images(2, m["side"])
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).double() / 255.0
    x = (x - torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    with torch.no_grad():
        pooled = features(name, m, model, x)
    extra = [[k, shape, -0.5, 0.5] for k, shape in m.get("extra", {}).items()]
    files = {}
    if "hub" in m:
        hub = json.loads(json.dumps(m["hub"]))
        hub["model_args"]["depth"] = depth
        files["config.json"] = hub
    if m.get("transformers"):
        files["config.json"] = model.config.to_dict()
        files["preprocessor_config.json"] = {"image_mean": mean, "image_std": std, "do_normalize": True, "do_rescale": True,
                                             "image_processor_type": "ViTImageProcessor", "size": {"height": 224, "width": 224}}
    convert = [a.replace("{depth}", str(depth)) for a in m["convert"]]
    import timm
    import transformers
    fixture = dict(
        name=name, card=m["card"], depth=depth, dtype=str(m["dtype"]).replace("torch.", ""), files=files, convert=convert,
        tensors=specs + extra, images=[2, m["side"]], feature_dim=pooled.shape[1],
        expected=pooled.tolist(),
        made_with=f"torch {torch.__version__}, timm {timm.__version__}, transformers {transformers.__version__}; reference in float64",
    )
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(fixture, f)
    if checkpoints:
        d = os.path.join(checkpoints, name)
        os.makedirs(d, exist_ok=True)
        all_tensors = {k: v.contiguous() for k, v in saved.items()}
        for k, shape, lo, hi in extra:
            all_tensors[k] = torch.from_numpy(values(k, max(1, math.prod(shape)), lo, hi).reshape(shape)).to(m["dtype"])
        save_file(all_tensors, os.path.join(d, "checkpoint.safetensors"))
        for fname, content in files.items():
            with open(os.path.join(d, fname), "w") as f:
                json.dump(content, f)
        with open(os.path.join(d, "convert.args"), "w") as f:
            f.write("\n".join(a.replace("{dir}", d) for a in convert))
    print(name, "depth", depth, "tensors", len(specs) + len(extra), "feature", tuple(pooled.shape),
          "max |f|", float(pooled.abs().max()), flush=True)


def pytorch_sample(path):
    """The small timm ViT of tests/fixtures/timm as a training script saves it: torch.save of
    {"state_dict": ...} from a DistributedDataParallel model (module.), plus an optimiser entry."""
    from safetensors.torch import load_file

    here = os.path.dirname(os.path.abspath(__file__))
    state = load_file(os.path.join(here, "..", "tests", "fixtures", "timm", "vit-s16-cls.model.safetensors"))
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 7}, path)


def main():
    args = sys.argv[1:]
    if args[:1] == ["--pytorch-sample"]:
        return pytorch_sample(args[1])
    full = "--full-depth" in args
    args = [a for a in args if a != "--full-depth"]
    checkpoints = None
    if "--checkpoints" in args:
        i = args.index("--checkpoints")
        checkpoints = args[i + 1]
        del args[i:i + 2]
    out, names = args[0], args[1:] or list(MODELS)
    os.makedirs(out, exist_ok=True)
    torch.set_grad_enabled(False)
    for name in names:
        make(name, out, checkpoints, full)


if __name__ == "__main__":
    main()
