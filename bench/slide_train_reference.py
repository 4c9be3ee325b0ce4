#!/usr/bin/env python3
"""The slide encoder's training step in PyTorch against flashslide's, on the same GPU, in one
job (issue 21): the same model (pre-norm blocks, 2D rotary embedding of q and k, exact GELU,
a token head and a slide head on the mean of the normed tokens), the same loss (the tokens'
binary cross-entropy plus a tenth of the slide logit's), AdamW (fused) with the gradients'
norm clipped to 1, bf16 autocast, attention through SDPA with PyTorch's choice of backend;
eager and torch.compile. One crop of N tokens a step (random features on a square grid, a
tenth labelled tumour); the median step of --steps after warm-ups, synchronised.

    python3 bench/slide_train_reference.py --flashslide target/release/flashslide \
        [--config models/flashslide-synth-v1/config.json] --tokens 4096 65536 [--json OUT]
"""
import argparse
import json
import math
import subprocess
import time

import torch
import torch.nn.functional as F
from torch import nn


def rope_2d(x, positions, base):
    """x [N, H, d]; the first half of each head turns with the row, the second with the
    column; pair (2i, 2i+1) of a half by coordinate · base^(−i / (d/4))."""
    n, h, d = x.shape
    quarter = d // 4
    freqs = base ** (-torch.arange(quarter, device=x.device, dtype=torch.float32) / quarter)
    angles = torch.cat([positions[:, :1] * freqs, positions[:, 1:] * freqs], dim=1)  # [N, d/2]
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]
    pairs = x.float().reshape(n, h, d // 2, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).reshape(n, h, d).to(x.dtype)


class Block(nn.Module):
    def __init__(self, width, heads, hidden, eps):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width, eps=eps), nn.LayerNorm(width, eps=eps)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x, positions, base):
        n, w = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(n, 3, self.heads, w // self.heads)
        q, k, v = rope_2d(qkv[:, 0], positions, base), rope_2d(qkv[:, 1], positions, base), qkv[:, 2]
        a = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None])
        x = x + self.proj(a[0].transpose(0, 1).reshape(n, w))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class SlideEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.base = c["rope_base"]
        hidden = int(c["width"] * c["mlp_ratio"] + 1e-6)
        self.proj_in = nn.Linear(c["input_dim"], c["width"])
        self.blocks = nn.ModuleList(Block(c["width"], c["heads"], hidden, c["norm_eps"]) for _ in range(c["depth"]))
        self.norm = nn.LayerNorm(c["width"], eps=c["norm_eps"])
        self.token_head, self.slide_head = nn.Linear(c["width"], 1), nn.Linear(c["width"], 1)

    def forward(self, features, positions):
        x = self.proj_in(features)
        for b in self.blocks:
            x = b(x, positions, self.base)
        x = self.norm(x)
        return self.token_head(x)[:, 0], self.slide_head(x.mean(0))


def step_time(model, compiled, n, c, steps):
    torch.manual_seed(0)
    side = math.ceil(math.sqrt(n))
    features = torch.rand(n, c["input_dim"], device="cuda") * 2 - 1
    idx = torch.arange(n, device="cuda")
    positions = torch.stack([idx // side, idx % side], 1).float()
    labels = (torch.rand(n, device="cuda") < 0.1).float()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=True)
    run = torch.compile(model) if compiled else model

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            tokens, slide = run(features, positions)
        loss = F.binary_cross_entropy_with_logits(tokens.float(), labels) + 0.1 * F.binary_cross_entropy_with_logits(
            slide.float(), labels.max()[None])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        return loss

    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flashslide", default="target/release/flashslide")
    ap.add_argument("--config", default="models/flashslide-synth-v1/config.json")
    ap.add_argument("--tokens", type=int, nargs="+", default=[4096, 65536])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    c = json.load(open(args.config))["slide_encoder"]
    ours = {}
    out = subprocess.run([args.flashslide, "bench", "slide-train", "--device", "cuda", "--json", "--config",
                          args.config, "--steps", str(args.steps), "--tokens", *map(str, args.tokens)],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        r = json.loads(line)
        ours[r["tokens"]] = r["median_seconds"]
    rows = []
    for n in args.tokens:
        row = {"tokens": n, "flashslide_s": ours[n]}
        for compiled in (False, True):
            model = SlideEncoder(c).cuda()
            row["compile_s" if compiled else "eager_s"] = step_time(model, compiled, n, c, args.steps)
        rows.append(row)
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; slide encoder {c}")
    print(f"{'tokens':>8} {'flashslide s':>13} {'eager s':>9} {'compile s':>10} {'× best':>7}   (a training step)")
    for r in rows:
        best = min(r["eager_s"], r["compile_s"])
        print(f"{r['tokens']:>8} {r['flashslide_s']:>13.4f} {r['eager_s']:>9.4f} {r['compile_s']:>10.4f} "
              f"{best / r['flashslide_s']:>7.2f}")
    if args.json:
        json.dump({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows},
                  open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
