#!/usr/bin/env bash
# A batch of slides on the GPU: `flashslide run` over a folder of five copies (not links:
# discovery takes a linked file once) of each slide of bench/run_gpu.sh, per model; the whole command's wall time (start-up
# included) and nvidia-smi's utilisation sampled every 20 ms over it. With a second binary,
# the same runs with it, interleaved (before/after comparisons in one job).
# Usage: OUT=dir bash bench/batch_gpu.sh BINARY [--against OTHER_BINARY] MODEL_DIR...
set -uo pipefail
bin=${1:?flashslide binary}
shift
other=""
if [ "${1:-}" = --against ]; then
    other=$2
    shift 2
fi
out=${OUT:?set OUT}
work=${WORK:-/tmp/flashslide-bench}
mkdir -p "$work" "$out"
source "$(dirname "$0")/slides.sh"
benchmark_slides
for set in s40k:synth-s40-000 peer:synth-s41-000; do
    name=${set%%:*}
    rm -rf "$work/batch-$name" && mkdir -p "$work/batch-$name"
    for i in 1 2 3 4 5; do cp "$work/$name/${set#*:}.svs" "$work/batch-$name/$i.svs"; done
done
for model in "$@"; do
    for name in s40k peer; do
        for b in "$bin" $other; do
            rm -rf "$work/batch-out"
            nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 20 >"$work/smi.csv" &
            smi=$!
            start=$(date +%s.%N)
            "$b" run "$work/batch-$name" --out "$work/batch-out" --model "$model" --device cuda --quiet \
                2>>"$out/batch-log.txt"
            rc=$?
            end=$(date +%s.%N)
            kill "$smi"
            wait "$smi" 2>/dev/null
            awk -v b="$b" -v m="$(basename "$model")" -v s="$name" -v rc="$rc" -v t="$(awk "BEGIN {print $end - $start}")" \
                '{u += $1; n++; if ($1 > 0) busy++} END {printf "%s %s %s rc=%d wall=%.2f s utilisation=%.1f%% busy samples=%.2f\n", b, m, s, rc, t, u / n, busy / n}' \
                "$work/smi.csv" | tee -a "$out/batch.txt"
        done
    done
done
