#!/usr/bin/env python3
"""Fixtures for parity with timm's VisionTransformer: small random-weight ViTs, their
weights (timm's tensor names, safetensors), a flashslide config, input images and timm's
outputs.

    python3 tools/make_timm_fixtures.py OUT_DIR [NAME...]

(only the configs NAME..., when given; each config's weights and images come from its own
seed, so remaking one leaves the others as they are).

Needs torch, timm and safetensors (CPU is enough). For each config writes
OUT_DIR/NAME.model.safetensors, OUT_DIR/NAME.config.json and OUT_DIR/NAME.io.safetensors with
`images` (uint8, [B, H, W, 3]), `features` (timm's forward_features: every token after the
final norm, [B, T, D]) and `pooled` (forward_head with pre_logits=True, [B, D]); and
NAME.io-SIDE.safetensors for tiles of other sizes (timm resampling the position embedding).
"""

import json
import os
import sys

import torch
import timm
from safetensors.torch import save_file

CONFIGS = {
    # ViT-S/16-like wiring, narrow and shallow: class token, GELU MLP, qkv bias, token pooling.
    "vit-s16-cls": dict(
        img_size=64, patch_size=16, embed_dim=96, depth=2, num_heads=3, mlp_ratio=4.0, qkv_bias=True,
        class_token=True, reg_tokens=0, global_pool="token", init_values=None, mlp="gelu", fc_norm=False,
    ),
    # DINOv2/UNI-like: 14-px patches, 4 register tokens, layer scale, SwiGLU MLP, average pooling.
    "vit-14-reg-swiglu-avg": dict(
        img_size=56, patch_size=14, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2.6667, qkv_bias=True,
        class_token=True, reg_tokens=4, global_pool="avg", init_values=1e-2, mlp="swiglu", fc_norm=True,
    ),
    # UNI2-h / H-optimus-like: 8 registers and no position embedding for the class and register
    # tokens (no_embed_class), head dim 64, SwiGLU, layer scale, class-token pooling.
    "vit-14-noembed-reg8": dict(
        img_size=56, patch_size=14, embed_dim=128, depth=2, num_heads=2, mlp_ratio=5.3125, qkv_bias=True,
        class_token=True, reg_tokens=8, global_pool="token", init_values=1e-2, mlp="swiglu", fc_norm=False,
        no_embed_class=True, seed=1901,
    ),
    # Virchow2-like: head dim 80, 4 registers, SwiGLU, layer scale; the tile feature is the class
    # token then the mean of the patch tokens (2 × width).
    "vit-14-hd80-token-and-avg": dict(
        img_size=56, patch_size=14, embed_dim=160, depth=2, num_heads=2, mlp_ratio=5.3125, qkv_bias=True,
        class_token=True, reg_tokens=4, global_pool="token_and_avg", init_values=1e-2, mlp="swiglu",
        fc_norm=False, seed=1902,
    ),
}


def build(c):
    kwargs = dict(
        img_size=c["img_size"], patch_size=c["patch_size"], embed_dim=c["embed_dim"], depth=c["depth"],
        num_heads=c["num_heads"], mlp_ratio=c["mlp_ratio"], qkv_bias=c["qkv_bias"], class_token=c["class_token"],
        reg_tokens=c["reg_tokens"], init_values=c["init_values"], num_classes=0,
        # Virchow's pooling is its own (see `pooled`); the model is built with class-token pooling.
        global_pool="token" if c["global_pool"] == "token_and_avg" else c["global_pool"],
        fc_norm=c["fc_norm"], dynamic_img_size=c.get("dynamic", False), no_embed_class=c.get("no_embed_class", False),
    )
    if c["mlp"] == "swiglu":
        from timm.layers import SwiGLUPacked
        kwargs.update(mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU)
    return timm.models.vision_transformer.VisionTransformer(**kwargs)


def pooled_features(model, features, pool):
    """timm's pooled feature, or Virchow's: the class token then the mean of the patch tokens."""
    if pool == "token_and_avg":
        return torch.cat([features[:, 0], features[:, model.num_prefix_tokens:].mean(1)], dim=-1)
    return model.forward_head(features, pre_logits=True)


def run_and_save(model, pool, images, mean, std, path):
    """Normalises uint8 [B, H, W, 3] images as the model expects, runs timm, saves the I/O."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = pooled_features(model, features, pool)
    save_file({"images": images, "features": features.contiguous(), "pooled": pooled.contiguous()}, path)
    return features


def main():
    out, only = sys.argv[1], set(sys.argv[2:])
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(20261125)
    for name, c in CONFIGS.items():
        if only and name not in only:
            continue
        if "seed" in c:
            torch.manual_seed(c["seed"])
        model = build(c).eval()
        # Random weights with some spread everywhere (timm initialises some to zero or one).
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "norm" in n and n.endswith("weight"):
                    p.copy_(1.0 + torch.randn_like(p) * 0.1)
                else:
                    p.copy_(torch.randn_like(p) * 0.2)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, os.path.join(out, f"{name}.model.safetensors"))
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        config = dict(
            name=name, architecture="vit", mpp=0.5, image_size=c["img_size"], patch_size=c["patch_size"],
            width=c["embed_dim"], depth=c["depth"], heads=c["num_heads"], mlp_ratio=c["mlp_ratio"],
            mlp=c["mlp"], norm_eps=1e-6, qkv_bias=c["qkv_bias"], class_token=c["class_token"],
            register_tokens=c["reg_tokens"], layer_scale=c["init_values"] is not None, global_pool=c["global_pool"],
            fc_norm=c["fc_norm"], mean=list(mean), std=list(std),
        )
        if c.get("no_embed_class"):
            config["no_embed_class"] = True
        with open(os.path.join(out, f"{name}.config.json"), "w") as f:
            json.dump(config, f, indent=1)
        features = run_and_save(model, c["global_pool"], torch.randint(0, 256, (3, c["img_size"], c["img_size"], 3), dtype=torch.uint8),
                                mean, std, os.path.join(out, f"{name}.io.safetensors"))
        # Other tile sizes: timm resamples the position embedding (bicubic, antialiased).
        dynamic = build(dict(c, dynamic=True)).eval()
        dynamic.load_state_dict(state)
        for side in (c["img_size"] * 3 // 2, c["img_size"] * 3 // 4):
            side -= side % c["patch_size"]
            run_and_save(dynamic, c["global_pool"], torch.randint(0, 256, (2, side, side, 3), dtype=torch.uint8),
                         mean, std, os.path.join(out, f"{name}.io-{side}.safetensors"))
        print(name, "tokens", tuple(features.shape), "timm", timm.__version__)


if __name__ == "__main__":
    main()
