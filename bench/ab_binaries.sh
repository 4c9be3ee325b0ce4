#!/usr/bin/env bash
# Two flashslide binaries in one job, interleaved (A, B, A, B), for a change that must not
# move the GPU figures (a refactor): attention (bf16, 8 heads, d 64 and
# 128, 16k and 64k tokens), the tile encoder (ViT-S/16 and the bundled model's, batch 256,
# random weights) and `run` on the 40,000² slide of bench/slides.sh (steady state: the slide
# twice in one process, the second run reported), then the self-test of each. Logs and
# summaries land in $OUT.
# Usage: OUT=dir bash bench/ab_binaries.sh BINARY_A BINARY_B
set -uo pipefail
a=${1:?first binary}
b=${2:?second binary}
out=${OUT:?set OUT}
work=${WORK:-/tmp/flashslide-bench}
mkdir -p "$work" "$out"
bin=$b
source "$(dirname "$0")/slides.sh"
synth s40k 40 40000 40000 0.5
rm -rf "$work/twice" && mkdir -p "$work/twice"
for name in a b; do cp "$work/s40k/synth-s40-000.svs" "$work/twice/$name.svs"; done
configs=(models/flashslide-synth-v1/config.json bench/configs/vit-s16.json)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/gpu.txt"
for round in 1 2; do
    for label in A B; do
        binary=$a
        [ "$label" = B ] && binary=$b
        {
            echo "== $label round $round"
            "$binary" bench attention --device cuda --seq 16384 65536 --head-dim 64 128 --heads 8
            "$binary" bench encoder --device cuda --batch 256 --batches 20 "${configs[@]}"
        } >>"$out/bench.txt" 2>&1
        rm -rf "$work/twice-out"
        "$binary" run "$work/twice" --out "$work/twice-out" --device cuda --quiet 2>>"$out/run-log.txt"
        cp "$work/twice-out/b.svs/summary.json" "$out/run-$label-$round.json"
    done
done
for label in A B; do
    binary=$a
    [ "$label" = B ] && binary=$b
    "$binary" selftest --long --configs "${configs[@]}" >"$out/selftest-$label.txt" 2>&1
    echo "selftest $label exit $?" >>"$out/selftest-$label.txt"
done
