#!/usr/bin/env python3
"""The tile encoder in PyTorch, fed as `flashslide bench encoder` feeds flashslide: timm's
VisionTransformer built from a flashslide config (random weights, bf16), batches of u8 tiles
[B, S, S, 3] from host memory uploaded each pass, normalised on the GPU, the pooled feature
read back. Eager, and torch.compile (default and max-autotune: the faster counts), tiles/s.
With --gemms, the model's own GEMMs alone (nn.Linear's x·Wᵀ in bf16, cuBLAS at the forward's shapes, one
pass's worth): the floor a forward made only of GEMMs would reach on this card.

    python3 bench/encoder_reference.py CONFIG.json... [--batch 256] [--batches 10]
        [--modes eager default max-autotune] [--gemms] [--flashslide BIN] [--json OUT]

With --flashslide, runs `BIN bench encoder CONFIG --device cuda --batch B --batches K` in
the same job first and prints both side by side.
"""

import argparse
import json
import re
import subprocess
import sys
import time

import numpy as np
import torch


def build(config):
    import timm
    from timm.layers import SwiGLUPacked

    kwargs = dict(
        img_size=config["image_size"], patch_size=config["patch_size"], embed_dim=config["width"],
        depth=config["depth"], num_heads=config["heads"], mlp_ratio=config["mlp_ratio"],
        qkv_bias=config["qkv_bias"], class_token=config["class_token"], reg_tokens=config["register_tokens"],
        no_embed_class=config.get("no_embed_class", False), init_values=1e-5 if config["layer_scale"] else None,
        global_pool="token" if config["global_pool"] == "token_and_avg" else config["global_pool"],
        fc_norm=config["fc_norm"], num_classes=0,
    )
    if config["mlp"] == "swiglu":
        kwargs.update(mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU)
    return timm.models.vision_transformer.VisionTransformer(**kwargs)


class Fed(torch.nn.Module):
    """u8 tiles in, pooled feature out, as flashslide's encoder is fed."""

    def __init__(self, model, config):
        super().__init__()
        self.model, self.both = model, config["global_pool"] == "token_and_avg"
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(config["std"]).view(1, 3, 1, 1) * 255)

    def forward(self, u8):
        x = (u8.permute(0, 3, 1, 2).float() - self.mean) / self.std
        tokens = self.model.forward_features(x.to(torch.bfloat16))
        if self.both:
            return torch.cat([tokens[:, 0], tokens[:, self.model.num_prefix_tokens:].mean(1)], dim=-1)
        return self.model.forward_head(tokens, pre_logits=True)


def rate(fn, host, batches):
    for _ in range(2):
        fn(host.cuda(non_blocking=False)).float().cpu()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        fn(host.cuda(non_blocking=False)).float().cpu()
    return host.shape[0] * batches / (time.perf_counter() - start)


def gemm_floor_ms(config, batch):
    """One forward pass's GEMMs (patch embedding, qkv, proj, fc1, fc2), timed alone."""
    d, p, side = config["width"], config["patch_size"], config["image_size"]
    tokens = batch * ((side // p) ** 2 + config["class_token"] + config["register_tokens"])
    hidden = int(d * config["mlp_ratio"] + 1e-6)
    fc2_in = hidden // 2 if config["mlp"] == "swiglu" else hidden
    shapes = [(batch * (side // p) ** 2, 3 * p * p, d)] + config["depth"] * [
        (tokens, d, 3 * d), (tokens, d, d), (tokens, d, hidden), (tokens, fc2_in, d)]
    distinct = list(dict.fromkeys(shapes))
    # As nn.Linear multiplies: x [m, k] by its weight [n, k] transposed.
    pairs = [(torch.randn(m, k, device="cuda", dtype=torch.bfloat16), torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
             for m, k, n in distinct]
    index = {s: i for i, s in enumerate(distinct)}
    for _ in range(3):
        for a, b in pairs:
            torch.nn.functional.linear(a, b)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    runs = 5
    start.record()
    for _ in range(runs):
        for s in shapes:
            a, b = pairs[index[s]]
            torch.nn.functional.linear(a, b)
    end.record()
    torch.cuda.synchronize()
    flops = sum(2 * m * k * n for m, k, n in shapes)
    ms = start.elapsed_time(end) / runs
    return ms, flops / (ms * 1e-3) / 1e12


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--modes", nargs="+", default=["eager", "default", "max-autotune"])
    ap.add_argument("--gemms", action="store_true")
    ap.add_argument("--flashslide")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    rows = []
    for path in args.configs:
        config = json.load(open(path))
        row = {"config": config["name"], "batch": args.batch}
        if args.flashslide:
            out = subprocess.run([args.flashslide, "bench", "encoder", path, "--device", "cuda", "--batch", str(args.batch),
                                  "--batches", str(args.batches)], capture_output=True, text=True)
            m = re.search(r"([\d.]+) tiles/s", out.stdout)
            row["flashslide"] = float(m.group(1)) if m else None
            if not m:
                print(out.stdout, out.stderr, file=sys.stderr)
        s = config["image_size"]
        host = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (args.batch, s, s, 3), dtype=np.uint8))
        fed = Fed(build(config).to(torch.bfloat16), config).cuda().eval()
        with torch.inference_mode():
            for mode in args.modes:
                fn = fed if mode == "eager" else torch.compile(fed, mode=None if mode == "default" else mode)
                t0 = time.perf_counter()
                # Compiled at the timed batch size: a first call at another size would make
                # the timed calls recompile with dynamic shapes (and max-autotune tune the
                # GEMMs for the wrong rows).
                fn(host.cuda())
                row[f"{mode}_compile_s"] = round(time.perf_counter() - t0, 1)
                row[mode] = rate(fn, host, args.batches)
                print(f"  {config['name']}: {mode} {row[mode]:.1f} tiles/s", flush=True)
            if args.gemms:
                ms, tflops = gemm_floor_ms(config, args.batch)
                row["gemm_ms"], row["gemm_tflops"] = ms, tflops
        compiled = [row[m] for m in args.modes if m != "eager" and m in row]
        row["compile_best"] = max(compiled) if compiled else None
        rows.append(row)
        del fed
        torch.cuda.empty_cache()
    print(f"\n{'model':<44} {'flashslide':>10} {'eager':>9} {'compile':>9} {'÷compile':>8} {'GEMMs ms':>9} {'GEMM TF/s':>9}")
    for r in rows:
        fs, best = r.get("flashslide"), r.get("compile_best")
        print(f"{r['config'][:44]:<44} {fs or 0:>10.1f} {r.get('eager', 0):>9.1f} {best or 0:>9.1f} "
              f"{(fs / best) if fs and best else 0:>8.2f} {r.get('gemm_ms', 0):>9.2f} {r.get('gemm_tflops', 0):>9.1f}")
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
