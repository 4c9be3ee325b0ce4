#!/usr/bin/env bash
# The pathology foundation encoders' layouts on the GPU, as a user gets them: checkpoints
# generated as each vendor's card builds the model (tools/make_encoder_fixtures.py: timm or
# transformers, real widths, random weights, depth 2; the models named also at full depth),
# converted with `flashslide convert` and the README's arguments, then one `flashslide
# selftest --device cuda --encoders --models …`: each model's pooled features against the CPU
# (least cosine 0.9999), and a config's encoder with head dim 80. The fixtures' JSON (tests/fixtures/encoders)
# land in OUT_DIR/fixtures.
# Usage: bash bench/foundation_encoders.sh OUT_DIR [FULL_DEPTH_NAME...]
#   (from anywhere; the binary is target/release/flashslide or $FLASHSLIDE; python3 with torch,
#   timm and transformers)
set -uo pipefail
out=${1:?usage: bash bench/foundation_encoders.sh OUT_DIR [FULL_DEPTH_NAME...]}
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
bin=${FLASHSLIDE:-target/release/flashslide}
work=$(mktemp -d)
export PYTHONUNBUFFERED=1
python3 tools/make_encoder_fixtures.py "$out/fixtures" --checkpoints "$work/depth2" 2>&1 | tee "$out/fixtures.log"
if [ $# -gt 0 ]; then
    python3 tools/make_encoder_fixtures.py "$out/full-depth" --checkpoints "$work/full" --full-depth "$@" 2>&1 |
        tee -a "$out/fixtures.log"
fi
models=()
for dir in "$work"/depth2/*/ "$work"/full/*/; do
    [ -f "$dir/convert.args" ] || continue
    name=$(basename "$dir")$([[ $dir == "$work"/full/* ]] && echo -full)
    mapfile -t args <"$dir/convert.args"
    if "$bin" convert "$dir/checkpoint.safetensors" "$work/models/$name" "${args[@]}" 2>&1 | tee -a "$out/convert.log"; then
        models+=("$work/models/$name")
    fi
done
"$bin" selftest --device cuda --encoders --configs tests/fixtures/timm/vit-14-hd80-token-and-avg.config.json \
    --models "${models[@]}" 2>&1 | tee "$out/selftest.log"
rm -rf "$work"
