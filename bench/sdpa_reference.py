#!/usr/bin/env python3
"""Times PyTorch's scaled_dot_product_attention (flash, cuDNN and memory-efficient
backends) and flashslide's CUDA attention on the same shapes, on the same GPU, in one job,
and prints one table with the ratios.

    python3 bench/sdpa_reference.py --flashslide target/release/flashslide \
        --seq 16384 65536 131072 --head-dim 64 80 96 128 --heads 8 [--batch B] [--json OUT.json]

Any head dim flashslide has a kernel for (`flashslide bench attention` names them when
refused; 64, 80, 96 and 128 among them; bench/head_dims.sh times those four). bf16,
non-causal, --batch sequences of each length (1 for a slide; a tile encoder's batch, e.g.
256 × 197 tokens, for stage 1: flashslide packs them into one launch, PyTorch takes them as
a dense batch); q, k, v drawn at random and laid out as a fused QKV projection gives them
([B, N, 3, H, d], the same layout flashslide reads); CUDA events around each call, 3 warm-up
calls, the median of --runs; FLOPs 4·B·H·N²·d.
"""
import argparse
import json
import subprocess
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention

BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
}


def time_sdpa(backend, batch, n, heads, d, runs):
    gen = torch.Generator(device="cuda").manual_seed(n + d)
    qkv = torch.randn(batch, n, 3, heads, d, device="cuda", dtype=torch.bfloat16, generator=gen)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # [B, H, N, d] views
    with sdpa_kernel(BACKENDS[backend]):
        for _ in range(3):
            out = scaled_dot_product_attention(q, k, v)
        times = []
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = scaled_dot_product_attention(q, k, v)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    assert torch.isfinite(out).all()
    times.sort()
    ms = times[len(times) // 2]
    return ms, 4 * batch * heads * n * n * d / (ms * 1e-3) / 1e12


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flashslide", default="target/release/flashslide")
    ap.add_argument("--seq", type=int, nargs="+", default=[16384, 65536, 131072])
    ap.add_argument("--head-dim", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()

    cmd = [args.flashslide, "bench", "attention", "--device", "cuda", "--json", "--heads", str(args.heads),
           "--batch", str(args.batch),
           "--runs", str(args.runs), "--seq", *map(str, args.seq), "--head-dim", *map(str, args.head_dim)]
    ours = {}
    for line in subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines():
        r = json.loads(line)
        ours[(r["tokens"], r["head_dim"])] = r

    rows = []
    for d in args.head_dim:
        for n in args.seq:
            row = {"batch": args.batch, "tokens": n, "head_dim": d, "heads": args.heads,
                   "flashslide_tflops": ours[(n, d)]["tflops"], "flashslide_ms": ours[(n, d)]["median_ms"]}
            for b in BACKENDS:
                try:
                    ms, tf = time_sdpa(b, args.batch, n, args.heads, d, args.runs)
                    row[f"{b}_ms"], row[f"{b}_tflops"] = ms, tf
                except RuntimeError as e:  # a backend that does not take this shape
                    print(f"{b} N={n} d={d}: {e}", file=sys.stderr)
                    row[f"{b}_ms"] = row[f"{b}_tflops"] = None
            rows.append(row)

    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"{'N':>8} {'d':>4} {'flashslide':>11} {'torch flash':>12} {'cuDNN':>8} {'mem-eff':>8} "
          f"{'× flash':>8} {'× cuDNN':>8}   (TFLOP/s, bf16, B={args.batch}, H={args.heads})")
    fmt = lambda x: f"{x:.1f}" if x else "-"
    for r in rows:
        ratio = lambda b: f"{r['flashslide_tflops'] / r[b]:.2f}" if r.get(b) else "-"
        print(f"{r['tokens']:>8} {r['head_dim']:>4} {fmt(r['flashslide_tflops']):>11} {fmt(r['flash_tflops']):>12} "
              f"{fmt(r['cudnn_tflops']):>8} {fmt(r['efficient_tflops']):>8} {ratio('flash_tflops'):>8} "
              f"{ratio('cudnn_tflops'):>8}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
