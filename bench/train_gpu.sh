#!/usr/bin/env bash
# Issue 21's end-to-end check on a GPU machine, one job: the bundled model's tile encoder
# frozen as a "foundation" encoder, a new head (the bundled slide encoder's architecture,
# seed 2, not the shipped model's 1) trained on the synthetic training cohort (seed 7, as
# the bundled model's card) on the GPU; it and the shipped model scored on the held-out
# cohort (seed 1000) by `bench baseline` (FROC; the goal: within 0.02 of the shipped
# model's); stage 2 timed again on the GPU from the kept tokens, then on the CPU from the
# same tokens (its time compared; the slowest step, so last: a limit on the job stops it
# after everything else is written, and times.txt then says how long it had run).
# Usage: OUT=dir bash bench/train_gpu.sh [BINARY]   (CPU_LIMIT=seconds caps the CPU run,
#   default 300: keep it under the job's own limit, so that its line is still written)
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
# Runs a training and appends "<label>: <seconds> s, exit <code>" to times.txt.
timed() {
    local label=$1 t0 code
    shift
    t0=$(date +%s.%N)
    "$@" 2>>"$out/train.log"
    code=$?
    echo "$label: $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }") s, exit $code" >>"$out/times.txt"
}
# The same kept tokens for another training (none: the GPU training failed, and stage 2
# alone cannot be timed).
kept_tokens() {
    [ -d "$work/gpu-head/tokens" ] || { echo "no kept tokens: see train.log" >>"$out/times.txt"; exit 1; }
    rm -rf "$work/$1" && mkdir -p "$work/$1" && cp -r "$work/gpu-head/tokens" "$work/$1/"
}
rm -rf "$work/gpu-head"
timed "gpu (tokens encoded, then stage 2)" "$bin" train --cohort "$work/train7" --out "$work/gpu-head" "${head[@]}" --device cuda
cp "$work/gpu-head/train_log_slide.json" "$out/gpu-head-log.json"
"$bin" bench baseline --cohort "$work/heldout" --out "$work/baseline" --model models/flashslide-synth-v1 \
    --model "$work/gpu-head" --device cuda >"$out/baseline.log" 2>&1
cp "$work/baseline/baseline.md" "$work/baseline/baseline.json" "$out/" 2>/dev/null
kept_tokens gpu-again
timed "gpu (kept tokens, stage 2)" "$bin" train --cohort "$work/train7" --out "$work/gpu-again" "${head[@]}" --device cuda
kept_tokens cpu-head
timed "cpu (kept tokens, stage 2)" timeout "${CPU_LIMIT:-300}" "$bin" train --cohort "$work/train7" \
    --out "$work/cpu-head" "${head[@]}" --device cpu
cp "$work/cpu-head/train_log_slide.json" "$out/cpu-head-log.json" 2>/dev/null
cat "$out/times.txt" "$out/baseline.md"
