#!/usr/bin/env bash
# Issue 20's figures in one job on a GPU machine (bench/RESULTS.md, "Foundation-model tile
# encoders on the GPU"):
#   1. `flashslide bench encoder --profile` on the five foundation shapes (batch 256), then
#      bench/encoder_reference.py (timm under torch.compile, and the forward's GEMMs alone);
#   2. `run` with ViT-L/16 (random weights) on five copies of the 40,960² slide at 0.25 µm/px,
#      at batch 64 and 256, against bench/peer_pipeline_gpu.py (nvJPEG + torch.compile) and
#      bench/peer_pipeline.py (CLAM/Trident style, OpenSlide), on the tiles `embed` lists;
#      `batch-span.txt` gives each run's time from the first slide opened to the last output.
# Usage: OUT=dir bash bench/encoders_gpu.sh BINARY RANDOM_MODEL_BINARY [REFERENCE_MODES...]
#   (RANDOM_MODEL_BINARY: `cargo build --release --example random_model`; modes default to
#   "default": add max-autotune where the time allows, minutes a model)
set -uo pipefail
bin=${1:?flashslide binary}
random_model=${2:?random_model example binary}
shift 2
modes=("${@:-default}")
out=${OUT:?set OUT}
work=${WORK:-/tmp/flashslide-bench}
mkdir -p "$work" "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/machine.txt"
date -u +%FT%TZ >>"$out/machine.txt"
source "$(dirname "$0")/slides.sh"
synth peer 41 40960 40960 0.25 &
slide_made=$!

configs=(bench/configs/vit-{s16,b16,l16,h14-virchow2,g14-uni2h}.json)
"$bin" bench encoder "${configs[@]}" --device cuda --batch 256 --batches 6 --profile >"$out/profile.txt" 2>&1
python3 bench/encoder_reference.py "${configs[@]}" --batch 256 --batches 6 --modes eager "${modes[@]}" \
    --gemms --json "$out/reference.json" >"$out/reference.txt" 2>&1

"$random_model" bench/configs/vit-l16-run.json "$work/vit-l16" >/dev/null
wait "$slide_made"
rm -rf "$work/five" && mkdir -p "$work/five"
for i in 1 2 3 4 5; do cp "$work/peer/synth-s41-000.svs" "$work/five/s$i.svs"; done
slides=("$work"/five/s*.svs)
for batch in 64 256; do
    rm -rf "$work/out-$batch"
    "$bin" run "$work/five" --out "$work/out-$batch" --model "$work/vit-l16" --device cuda --quiet \
        --batch "$batch" 2>"$out/run-$batch.log"
    mkdir -p "$out/run-$batch"
    for f in "$work/out-$batch"/*/summary.json; do cp "$f" "$out/run-$batch/$(basename "$(dirname "$f")").json"; done
    cp "$work/out-$batch/batch-report.json" "$out/run-$batch/"
    "$bin" bench encoder bench/configs/vit-l16.json --device cuda --batch "$batch" --batches 20 \
        >"$out/encoder-$batch.txt" 2>&1
done
"$bin" embed "${slides[0]}" --model "$work/vit-l16" -o "$work/coords.safetensors" --device cuda --batch 256 \
    >"$out/embed.log" 2>&1
python3 bench/peer_pipeline_gpu.py "${slides[@]}" --config bench/configs/vit-l16.json \
    --coords "$work/coords.safetensors" --json "$out/peer-gpu.json" >"$out/peer-gpu.log" 2>&1
python3 bench/peer_pipeline.py "${slides[@]}" --config bench/configs/vit-l16.json \
    --coords "$work/coords.safetensors" --json "$out/peer-clam.json" >"$out/peer-clam.log" 2>&1

python3 bench/batch_span.py "$out/run-64" "$out/run-256" >"$out/batch-span.txt"
cat "$out/batch-span.txt"
