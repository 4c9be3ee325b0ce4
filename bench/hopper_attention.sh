#!/usr/bin/env bash
# Issue 25's check of the Hopper attention kernels (kernels/flash_attn_sm90.cu and
# flash_attn_sm90_tma.cu) on a Hopper GPU, one job:
#   1. `selftest --attention`: the attention checks alone, through every kernel family;
#   2. every family timed on the issue's shapes (`bench attention --kernel`): N = 1k-128k at
#      d 64 and 128, 16k and 64k at d 80 and 96, 8 heads; stage 1's packed batches (256 × 197
#      tokens, 16 heads of 64: ViT-L/16; 256 × 261, 16 heads of 80: ViT-H/14);
#   3. bench/sdpa_reference.py: PyTorch's flash and cuDNN backends on the same shapes, beside
#      the backend's own choice of kernel;
#   4. the SASS of the wgmma kernels checked for HGMMA and UTMALDG (cuobjdump, cached cubins).
# `selftest --attention --long` (2^20 tokens, every family at the full scope) takes about
# 400 s more: run it on its own.
# Usage: bash bench/hopper_attention.sh OUT_DIR   (the binary is target/release/flashslide or
#   $FLASHSLIDE; Python with torch for the reference)
set -uo pipefail
out=${1:?usage: bash bench/hopper_attention.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
bin=${FLASHSLIDE:-target/release/flashslide}
export FLASHSLIDE_CACHE_DIR="$out/cache"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
timeout 200 "$bin" selftest --attention >"$out/selftest.txt" 2>&1
echo "selftest exit $?" >>"$out/selftest.txt"
# A kernel that hangs must not take the job with it: each timing run has a limit.
for kernel in mma wgmma wgmma-pipelined wgmma-tma wgmma-tma-persistent; do
    run() { timeout 60 "$bin" bench attention --device cuda --kernel "$kernel" "$@" >>"$out/attention-$kernel.txt" 2>&1; }
    run --seq 1024 4096 16384 65536 131072 --head-dim 64 128 --heads 8 --runs 10
    run --seq 16384 65536 --head-dim 80 96 --heads 8 --runs 10
    run --batch 256 --seq 197 --heads 16 --head-dim 64 --runs 40
    run --batch 256 --seq 261 --heads 16 --head-dim 80 --runs 40
done
sdpa() { timeout 150 python3 bench/sdpa_reference.py "$@" >>"$out/sdpa.txt" 2>&1; }
sdpa --seq 1024 4096 16384 65536 131072 --head-dim 64 128 --heads 8
sdpa --seq 16384 65536 --head-dim 80 96 --heads 8
sdpa --batch 256 --seq 197 --heads 16 --head-dim 64
sdpa --batch 256 --seq 261 --heads 16 --head-dim 80
for cubin in "$out"/cache/flash_attn_sm90*; do
    sass=$(cuobjdump -sass "$cubin" 2>/dev/null)
    echo "$(basename "$cubin"): HGMMA $(grep -c HGMMA <<<"$sass"), UTMALDG $(grep -c UTMALDG <<<"$sass")"
done >"$out/sass.txt"
tail -1 "$out/selftest.txt"
cat "$out"/attention-*.txt "$out/sdpa.txt" "$out/sass.txt"
