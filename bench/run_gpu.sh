#!/usr/bin/env bash
# The `flashslide run` figures of bench/RESULTS.md, in one job on a GPU machine:
#   1. a generated 40,000² slide at 0.5 µm/px through `run --device cuda`, with nvidia-smi
#      sampling how busy the GPU is, tiles decoded by the GPU's JPEG decoder and then, for
#      comparison, by the CPU (`--cpu-decoding`);
#   2. the peer comparison: a generated 40,960² slide at 0.25 µm/px through `run` and through
#      bench/peer_pipeline.py (CLAM/Trident style), one after the other on the same machine;
#   3. peak host RSS for a generated 100,000² slide at 0.25 µm/px.
# Usage: OUT=dir bash bench/run_gpu.sh BINARY MODEL_DIR   (every result lands in $OUT;
# SKIP_100K=1 leaves out part 3)
set -uo pipefail
bin=${1:?flashslide binary}
model=${2:?model directory}
out=${OUT:?set OUT}
work=${WORK:-/tmp/flashslide-bench}
mkdir -p "$work" "$out"

{
    date -u +%FT%TZ
    nproc
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
} >"$out/machine.txt"

source "$(dirname "$0")/slides.sh"

# One slide through `run` on the GPU, nvidia-smi sampling utilisation every 20 ms meanwhile.
ours() { # label slide [run options]
    nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits -lms 20 \
        >"$out/smi-$1.csv" &
    local smi=$!
    "$bin" run "$2" --out "$work/out-$1" --model "$model" --device cuda --quiet "${@:3}" 2>"$out/log-$1.txt"
    kill "$smi"
    cp "$work/out-$1"/*/summary.json "$out/summary-$1.json"
}

SECONDS=0
benchmark_slides
echo "synth of both: $SECONDS s" >>"$out/machine.txt"

ours s40k "$work/s40k/synth-s40-000.svs"
ours s40k-cpudec "$work/s40k/synth-s40-000.svs" --cpu-decoding
ours peer "$work/peer/synth-s41-000.svs"
ours peer-cpudec "$work/peer/synth-s41-000.svs" --cpu-decoding
python3 bench/peer_pipeline.py "$work/peer/synth-s41-000.svs" --json "$out/peer-pipeline.json" \
    >"$out/peer-pipeline.log" 2>&1

[ "${SKIP_100K:-0}" = 1 ] && exit 0
SECONDS=0
synth s100k 100 100000 100000 0.25
echo "synth of 100k: $SECONDS s" >>"$out/machine.txt"
ours s100k "$work/s100k/synth-s100-000.svs"
