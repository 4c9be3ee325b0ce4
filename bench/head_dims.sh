#!/usr/bin/env bash
# flashslide's CUDA attention against PyTorch SDPA (FlashAttention-2 and cuDNN backends;
# memory-efficient too) at head dims 64, 80, 96 and 128: bf16, batch 1, 8 heads, non-causal,
# 16k and 64k tokens, one job on one GPU. Ours alone first (its table), then
# bench/sdpa_reference.py, which times ours again and PyTorch's on the same shapes and prints
# the ratios. Logs land in OUT_DIR.
# Usage: bash bench/head_dims.sh OUT_DIR   (from anywhere; the binary is the repository's
#   target/release/flashslide, or $FLASHSLIDE; Python with torch for the reference)
set -uo pipefail
out=${1:?usage: bash bench/head_dims.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
bin=${FLASHSLIDE:-target/release/flashslide}
shape=(--seq 16384 65536 --head-dim 64 80 96 128 --heads 8)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
git rev-parse HEAD >"$out/commit.txt" 2>/dev/null
"$bin" bench attention --device cuda "${shape[@]}" >"$out/flashslide.txt" 2>&1
echo "flashslide exit $?" >>"$out/flashslide.txt"
python3 bench/sdpa_reference.py --flashslide "$bin" "${shape[@]}" --json "$out/sdpa.json" \
    >"$out/sdpa.txt" 2>&1
echo "sdpa_reference exit $?" >>"$out/sdpa.txt"
cat "$out/flashslide.txt" "$out/sdpa.txt"
