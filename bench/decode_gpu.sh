#!/usr/bin/env bash
# Tiles decoded on the GPU against the CPU, steady state: each slide of bench/run_gpu.sh
# (40,000² at 0.5 µm/px, 40,960² at 0.25 µm/px) run twice in one process (copies: discovery
# takes a linked file once), so the second run of each finds nvJPEG started; `run --device cuda`, then the same with
# `--cpu-decoding`. Every summary.json lands in $OUT as MODE-MODEL-NAME.json (a, b: the 40k
# slide; c, d: the 40,960² one), with nvidia-smi's utilisation meanwhile.
# Usage: OUT=dir bash bench/decode_gpu.sh BINARY MODEL_DIR [MORE_MODEL_DIRS...]
#   (a ViT-S/16 with random weights: cargo run --release --example random_model
#    bench/configs/vit-s16-run.json DIR)
set -uo pipefail
bin=${1:?flashslide binary}
shift
out=${OUT:?set OUT}
work=${WORK:-/tmp/flashslide-bench}
mkdir -p "$work" "$out"
source "$(dirname "$0")/slides.sh"
benchmark_slides
rm -rf "$work/twice" && mkdir -p "$work/twice"
for name in a b; do cp "$work/s40k/synth-s40-000.svs" "$work/twice/$name.svs"; done
for name in c d; do cp "$work/peer/synth-s41-000.svs" "$work/twice/$name.svs"; done
for model in "$@"; do
    label=$(basename "$model")
    for mode in gpu cpu; do
        extra=()
        [ "$mode" = cpu ] && extra=(--cpu-decoding)
        nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits -lms 20 \
            >"$out/smi-$mode-$label.csv" &
        smi=$!
        rm -rf "$work/twice-out"
        "$bin" run "$work/twice" --out "$work/twice-out" --model "$model" --device cuda --quiet \
            "${extra[@]}" 2>>"$out/log.txt"
        kill "$smi"
        for f in "$work"/twice-out/*/summary.json; do
            cp "$f" "$out/$mode-$label-$(basename "$(dirname "$f")").json"
        done
    done
done
