#!/usr/bin/env bash
# Issue 25's check of kernels/flash_attn_sm90.cu (wgmma) on a Hopper GPU, one job:
#   1. `selftest --attention`: the attention checks alone, through every kernel family (head
#      dims 64 and 128; the others fall back to flash_attn.cu);
#   2. the three kernel families timed on the issue's shapes (`bench attention --kernel mma|wgmma`):
#      N = 1k-128k, d = 64 and 128, 8 heads, and stage 1's packed batches;
#   3. bench/sdpa_reference.py: PyTorch's flash and cuDNN backends on the same shapes;
#   4. the SASS of the wgmma kernels checked for HGMMA (cuobjdump, from the cached cubin).
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
long=(--seq 1024 4096 16384 65536 131072 --head-dim 64 128 --heads 8 --runs 20)
# A kernel that hangs must not take the job with it: each timing run has a limit.
for kernel in mma wgmma wgmma-pipelined; do
    timeout 120 "$bin" bench attention --device cuda --kernel "$kernel" "${long[@]}" >"$out/attention-$kernel.txt" 2>&1
    timeout 60 "$bin" bench attention --device cuda --kernel "$kernel" --batch 256 --seq 197 --heads 16 \
        --head-dim 64 --runs 40 >>"$out/attention-$kernel.txt" 2>&1
done
timeout 240 python3 bench/sdpa_reference.py --seq 1024 4096 16384 65536 131072 --head-dim 64 128 --heads 8 \
    --json "$out/sdpa.json" >"$out/sdpa.txt" 2>&1
timeout 120 python3 bench/sdpa_reference.py --batch 256 --seq 197 --heads 16 --head-dim 64 >>"$out/sdpa.txt" 2>&1
for cubin in "$out"/cache/*; do
    cuobjdump -sass "$cubin" 2>/dev/null | grep -c HGMMA | sed "s|^|$(basename "$cubin") HGMMA: |"
done >"$out/sass.txt"
cat "$out/selftest.txt" | tail -3
cat "$out"/attention-*.txt "$out/sass.txt"
