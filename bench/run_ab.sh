#!/usr/bin/env bash
# Two flashslide builds' `run` on one batch, alternated (A, B, A, B) in one job: ViT-L/16
# (random weights) over five copies of the 40,960² slide at 0.25 µm/px, batch 256 (issue
# 20's pipeline measurement); bench/batch_span.py's line for each run, and each run's
# summaries and batch report under OUT/<label>-<round>.
# Usage: OUT=dir bash bench/run_ab.sh BINARY_A BINARY_B RANDOM_MODEL_BINARY
#   (RANDOM_MODEL_BINARY: `cargo build --release --example random_model`)
set -uo pipefail
a=${1:?binary A} b=${2:?binary B} random_model=${3:?random_model example binary}
out=${OUT:?set OUT}
work=${WORK:-/tmp/flashslide-bench}
mkdir -p "$work" "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/machine.txt"
date -u +%FT%TZ >>"$out/machine.txt"
bin=$a
source bench/slides.sh
synth peer 41 40960 40960 0.25
[ -d "$work/vit-l16" ] || "$random_model" bench/configs/vit-l16-run.json "$work/vit-l16" >/dev/null
rm -rf "$work/five" && mkdir -p "$work/five"
for i in 1 2 3 4 5; do cp "$work/peer/synth-s41-000.svs" "$work/five/s$i.svs"; done
for round in 1 2; do
    for label in A B; do
        binary=$a
        [ "$label" = B ] && binary=$b
        run="$out/$label-$round"
        rm -rf "$work/out" "$run" && mkdir -p "$run"
        "$binary" run "$work/five" --out "$work/out" --model "$work/vit-l16" --device cuda --quiet \
            --batch 256 2>"$run/run.log"
        for f in "$work/out"/*/summary.json; do cp "$f" "$run/$(basename "$(dirname "$f")").json"; done
        cp "$work/out/batch-report.json" "$run/"
        python3 bench/batch_span.py "$run" | tee -a "$out/span.txt"
    done
done
