#!/usr/bin/env python3
"""Converts a timm VisionTransformer into a flashslide model directory.

    python3 tools/convert_timm.py MODEL_NAME OUT_DIR --mpp 0.5 [--checkpoint FILE]

MODEL_NAME is a timm model name (for example vit_small_patch16_224, or a pathology
foundation model's timm name); its weights come from --checkpoint (a state dict saved with
torch.save or safetensors) or, where the machine can reach the hub, from timm itself. Writes
OUT_DIR/model.safetensors (timm's tensor names, float32) and OUT_DIR/config.json. --mpp is the
resolution the model was trained at (0.5 µm/px for most pathology encoders at 20x).
"""

import argparse
import json
import os

import torch
import timm
from safetensors.torch import load_file, save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--mpp", type=float, required=True)
    ap.add_argument("--checkpoint")
    args = ap.parse_args()
    model = timm.create_model(args.model, pretrained=args.checkpoint is None, num_classes=0)
    if args.checkpoint:
        state = load_file(args.checkpoint) if args.checkpoint.endswith(".safetensors") else torch.load(args.checkpoint, map_location="cpu")
        model.load_state_dict(state, strict=False)
    model.eval()
    mlp = model.blocks[0].mlp
    swiglu = type(mlp).__name__ == "GluMlp"
    hidden = mlp.fc1.out_features
    cfg = model.pretrained_cfg or {}
    config = dict(
        name=args.model, architecture="vit", mpp=args.mpp,
        image_size=model.patch_embed.img_size[0], patch_size=model.patch_embed.patch_size[0],
        width=model.embed_dim, depth=len(model.blocks), heads=model.blocks[0].attn.num_heads,
        mlp_ratio=hidden / model.embed_dim, mlp="swiglu" if swiglu else "gelu",
        norm_eps=model.blocks[0].norm1.eps, qkv_bias=model.blocks[0].attn.qkv.bias is not None,
        class_token=model.cls_token is not None, register_tokens=getattr(model, "num_reg_tokens", 0),
        layer_scale=hasattr(model.blocks[0].ls1, "gamma"), global_pool=model.global_pool or "token",
        fc_norm=not isinstance(model.fc_norm, torch.nn.Identity),
        mean=list(cfg.get("mean", (0.485, 0.456, 0.406))), std=list(cfg.get("std", (0.229, 0.224, 0.225))),
    )
    os.makedirs(args.out, exist_ok=True)
    save_file({k: v.float().contiguous() for k, v in model.state_dict().items()}, os.path.join(args.out, "model.safetensors"))
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    print(json.dumps(config))


if __name__ == "__main__":
    main()
