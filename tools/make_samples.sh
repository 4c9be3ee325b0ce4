#!/usr/bin/env bash
# Regenerates samples/ (byte-identical on any machine): two small synthetic slides, one with a
# micrometastasis and an isolated-tumour-cell cluster, one without tumour.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
rm -f samples/synth-*
target/release/flashslide synth --out samples --seed 101 --width 5000 --height 4000 --jpeg-quality 80 --lesions 1,1,0
target/release/flashslide synth --out samples --seed 102 --width 5000 --height 4000 --jpeg-quality 80 --lesions 0,0,0
