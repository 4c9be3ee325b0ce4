#!/usr/bin/env bash
# The pathology foundation encoders' layouts on the GPU, as a user gets them: checkpoints
# generated as each vendor's card builds the model (tools/make_encoder_fixtures.py: timm or
# transformers, real widths, random weights; depth 2 unless --full-depth), converted with
# `flashslide convert` and the README's arguments, then `flashslide selftest --device cuda
# --models …`: every operation and kernel, and each model's pooled features against the CPU
# (least cosine 0.9999). The fixtures' JSON (tests/fixtures/encoders) land in OUT_DIR/fixtures.
# Usage: bash bench/foundation_encoders.sh OUT_DIR [--full-depth] [NAME...]
#   (from anywhere; the binary is target/release/flashslide or $FLASHSLIDE; python3 with torch,
#   timm and transformers)
set -uo pipefail
out=${1:?usage: bash bench/foundation_encoders.sh OUT_DIR [--full-depth] [NAME...]}
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
bin=${FLASHSLIDE:-target/release/flashslide}
work=$(mktemp -d)
export PYTHONUNBUFFERED=1
python3 tools/make_encoder_fixtures.py "$out/fixtures" --checkpoints "$work/checkpoints" "$@" 2>&1 |
    tee "$out/fixtures.log"
models=()
for dir in "$work"/checkpoints/*/; do
    name=$(basename "$dir")
    mapfile -t args <"$dir/convert.args"
    if "$bin" convert "$dir/checkpoint.safetensors" "$work/models/$name" "${args[@]}" 2>&1 | tee -a "$out/convert.log"; then
        models+=("$work/models/$name")
    fi
done
"$bin" selftest --device cuda --configs tests/fixtures/timm/vit-14-hd80-token-and-avg.config.json \
    --models "${models[@]}" 2>&1 | tee "$out/selftest.log"
rm -rf "$work"
