#!/usr/bin/env python3
"""Times the backward pass of PyTorch's scaled_dot_product_attention (flash and cuDNN
backends) and flashslide's training attention (`flashslide bench attention-backward`) on the
same shapes, on the same GPU, in one job, and prints one table with the ratios (issue 21).

    python3 bench/sdpa_backward_reference.py --flashslide target/release/flashslide \
        --seq 16384 65536 --head-dim 64 128 --heads 8 [--json OUT.json]

bf16, non-causal, batch 1; q, k, v random (flashslide's laid out as a fused QKV projection gives them); the
forward runs outside the timed region, then torch.autograd.grad of the output against a
random dO between CUDA events (PyTorch's q, k, v as separate contiguous tensors, its best case) (3 warm-ups, the median of --runs); FLOPs 2.5 · 4·B·H·N²·d.
"""
import argparse
import json
import subprocess
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention

BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}


def time_backward(backend, batch, n, heads, d, runs):
    gen = torch.Generator(device="cuda").manual_seed(n + d)
    # Separate contiguous q, k, v [B, H, N, d]: PyTorch's own best layout (no gather of the
    # three gradients into a fused one).
    q, k, v = (torch.randn(batch, heads, n, d, device="cuda", dtype=torch.bfloat16, generator=gen,
                           requires_grad=True) for _ in range(3))
    dout = torch.randn(batch, heads, n, d, device="cuda", dtype=torch.bfloat16, generator=gen)
    with sdpa_kernel(BACKENDS[backend]):
        times = []
        for i in range(3 + runs):
            out = scaled_dot_product_attention(q, k, v)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            grads = torch.autograd.grad(out, (q, k, v), dout)
            end.record()
            end.synchronize()
            if i >= 3:
                times.append(start.elapsed_time(end))
    assert all(torch.isfinite(g).all() for g in grads)
    times.sort()
    ms = times[len(times) // 2]
    return ms, 2.5 * 4 * batch * heads * n * n * d / (ms * 1e-3) / 1e12


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flashslide", default="target/release/flashslide")
    ap.add_argument("--seq", type=int, nargs="+", default=[16384, 65536])
    ap.add_argument("--head-dim", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()

    cmd = [args.flashslide, "bench", "attention-backward", "--json", "--heads", str(args.heads),
           "--runs", str(args.runs), "--seq", *map(str, args.seq), "--head-dim", *map(str, args.head_dim)]
    ours = {}
    for line in subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines():
        r = json.loads(line)
        ours[(r["tokens"], r["head_dim"])] = r

    rows = []
    for d in args.head_dim:
        for n in args.seq:
            row = {"tokens": n, "head_dim": d, "heads": args.heads,
                   "flashslide_tflops": ours[(n, d)]["backward_tflops"], "flashslide_ms": ours[(n, d)]["backward_ms"]}
            for b in BACKENDS:
                try:
                    row[f"{b}_ms"], row[f"{b}_tflops"] = time_backward(b, 1, n, args.heads, d, args.runs)
                except RuntimeError as e:  # a backend that does not take this shape
                    print(f"{b} N={n} d={d}: {e}", file=sys.stderr)
                    row[f"{b}_ms"] = row[f"{b}_tflops"] = None
            rows.append(row)

    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"{'N':>8} {'d':>4} {'flashslide':>11} {'torch flash':>12} {'cuDNN':>8} {'× flash':>8} {'× cuDNN':>8}"
          f"   (backward TFLOP/s, bf16, B=1, H={args.heads})")
    fmt = lambda x: f"{x:.1f}" if x else "-"
    for r in rows:
        ratio = lambda b: f"{r['flashslide_tflops'] / r[b]:.2f}" if r.get(b) else "-"
        print(f"{r['tokens']:>8} {r['head_dim']:>4} {fmt(r['flashslide_tflops']):>11} {fmt(r['flash_tflops']):>12} "
              f"{fmt(r['cudnn_tflops']):>8} {ratio('flash_tflops'):>8} {ratio('cudnn_tflops'):>8}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
