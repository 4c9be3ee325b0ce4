#!/usr/bin/env bash
# Issue 21's GPU checks and timings in one job (bench/RESULTS.md, "Training on the GPU"):
#   1. `selftest --training --long`: every backward operation, AdamW and the slide encoder's
#      gradients against the CPU's, and attention's backward over 2^20 tokens on sampled rows
#      against f64 with the memory it keeps;
#   2. bench/sdpa_backward_reference.py: attention's backward against PyTorch's flash and
#      cuDNN backward (N = 4k-64k, d 64 and 128, 8 heads);
#   3. bench/slide_train_reference.py: a training step of the bundled head against the same
#      model in PyTorch (eager and torch.compile), crops of 4,096 and 65,536 tokens.
# The end-to-end training on the synthetic cohort is bench/train_gpu.sh.
# Usage: OUT=dir bash bench/training_gpu.sh [BINARY]
set -uo pipefail
bin=${1:-target/release/flashslide}
out=${OUT:?set OUT}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/machine.txt"
date -u +%FT%TZ >>"$out/machine.txt"
timeout 300 "$bin" selftest --training --long >"$out/selftest.txt" 2>&1
echo "selftest exit $?" >>"$out/selftest.txt"
timeout 200 python3 bench/sdpa_backward_reference.py --flashslide "$bin" --seq 4096 16384 65536 \
    --head-dim 64 128 --heads 8 --json "$out/backward.json" >"$out/backward.txt" 2>&1
timeout 200 python3 bench/slide_train_reference.py --flashslide "$bin" --tokens 4096 65536 --steps 8 \
    --json "$out/steps.json" >"$out/steps.txt" 2>&1
tail -1 "$out/selftest.txt"
cat "$out/backward.txt" "$out/steps.txt"
