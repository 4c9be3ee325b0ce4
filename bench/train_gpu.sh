#!/usr/bin/env bash
# Issue 21's end-to-end check on a GPU machine, one job: the bundled model's tile encoder
# frozen as a "foundation" encoder, a new head (the bundled slide encoder's architecture,
# seed 2, not the shipped model's 1) trained on the synthetic training cohort (seed 7, as
# the bundled model's card) on the GPU, then the same head trained on the CPU from the same
# kept tokens (stage 2's time compared), both and the shipped model scored on the held-out
# cohort (seed 1000) by `bench baseline` (FROC; the goal: within 0.02 of the shipped model's).
# Usage: OUT=dir bash bench/train_gpu.sh [BINARY]
set -uo pipefail
bin=${1:-target/release/flashslide}
out=${OUT:?set OUT}
work=${WORK:-/tmp/flashslide-train}
mkdir -p "$work" "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/machine.txt"
date -u +%FT%TZ >>"$out/machine.txt"
[ -d "$work/train7" ] || "$bin" synth --out "$work/train7" --slides 24 --seed 7 --quiet
[ -d "$work/heldout" ] || "$bin" synth --out "$work/heldout" --slides 24 --seed 1000 --quiet
head=(--tile-encoder models/flashslide-synth-v1 --config bench/configs/flashslide-synth-v1.json --seed 2 --quiet)
seconds() { local t0; t0=$(date +%s.%N); "$@"; awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }"; }
rm -rf "$work/gpu-head"
echo "gpu (tokens encoded, then stage 2): $(seconds "$bin" train --cohort "$work/train7" --out "$work/gpu-head" "${head[@]}" --device cuda 2>>"$out/train.log") s" >>"$out/times.txt"
# The CPU from the same kept tokens: stage 2's own time.
rm -rf "$work/cpu-head" && mkdir -p "$work/cpu-head" && cp -r "$work/gpu-head/tokens" "$work/cpu-head/"
echo "cpu (kept tokens, stage 2): $(seconds "$bin" train --cohort "$work/train7" --out "$work/cpu-head" "${head[@]}" --device cpu 2>>"$out/train.log") s" >>"$out/times.txt"
rm -rf "$work/gpu-again" && mkdir -p "$work/gpu-again" && cp -r "$work/gpu-head/tokens" "$work/gpu-again/"
echo "gpu (kept tokens, stage 2): $(seconds "$bin" train --cohort "$work/train7" --out "$work/gpu-again" "${head[@]}" --device cuda 2>>"$out/train.log") s" >>"$out/times.txt"
for d in gpu-head cpu-head; do cp "$work/$d/train_log_slide.json" "$out/$d-log.json"; done
"$bin" bench baseline --cohort "$work/heldout" --out "$work/baseline" --model models/flashslide-synth-v1 \
    --model "$work/gpu-head" --model "$work/cpu-head" --device cuda >"$out/baseline.log" 2>&1
cp "$work/baseline/baseline.md" "$work/baseline/baseline.json" "$out/" 2>/dev/null
cat "$out/times.txt" "$out/baseline.md"
