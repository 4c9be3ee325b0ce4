#!/usr/bin/env bash
# Issue 26 on a GPU machine, one job:
#   1. `run --devices 0` against `run --device cuda` on the same slides: the same outputs but
#      for the device and timing fields (compared file by file, summary.json without those);
#   2. where 2 or more GPUs are visible, throughput on 8 generated 40,000² slides at
#      0.5 µm/px with one GPU (`--devices 0`) and with all (`--devices all`), with the
#      bundled model and with ViT-L/16 (random weights): slides a second, and the ratio.
# Usage: OUT=dir bash bench/devices_gpu.sh BINARY RANDOM_MODEL_BINARY
#   (RANDOM_MODEL_BINARY: `cargo build --release --example random_model`)
set -uo pipefail
bin=${1:?flashslide binary}
random_model=${2:?random_model example binary}
out=${OUT:?set OUT}
work=${WORK:-/tmp/flashslide-devices}
mkdir -p "$work" "$out"
nvidia-smi --query-gpu=index,name,driver_version --format=csv,noheader >"$out/machine.txt"
date -u +%FT%TZ >>"$out/machine.txt"
gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)

# 1. One GPU through --devices against --device cuda.
rm -rf "$work/one-a" "$work/one-b"
"$bin" run samples --out "$work/one-a" --device cuda --quiet 2>"$out/device-cuda.log"
"$bin" run samples --out "$work/one-b" --devices 0 --quiet 2>"$out/devices-0.log"
python3 - "$work/one-a" "$work/one-b" >"$out/same-outputs.txt" <<'PY'
import hashlib, json, os, sys
a, b = sys.argv[1:]
timing = {"device", "seconds", "export_seconds", "peak_rss_bytes", "run", "device_memory_bytes"}
bad = 0
for slide in sorted(d for d in os.listdir(a) if os.path.isdir(os.path.join(a, d))):
    for name in sorted(os.listdir(os.path.join(a, slide))):
        if name.startswith("."):
            continue
        pa, pb = os.path.join(a, slide, name), os.path.join(b, slide, name)
        if name == "summary.json":
            sa, sb = (json.load(open(p)) for p in (pa, pb))
            same = {k: v for k, v in sa.items() if k not in timing} == {k: v for k, v in sb.items() if k not in timing}
        else:
            same = os.path.exists(pb) and hashlib.sha256(open(pa, "rb").read()).digest() == hashlib.sha256(open(pb, "rb").read()).digest()
        bad += not same
        print(f"{slide}/{name}: {'same' if same else 'DIFFERENT'}")
print(f"{bad} different")
PY
tail -1 "$out/same-outputs.txt"

# 2. Throughput with one GPU and with all of them.
if [ "$gpus" -lt 2 ]; then
    echo "$gpus GPU visible: no scaling run" | tee "$out/scaling.txt"
    exit 0
fi
"$random_model" bench/configs/vit-l16-run.json "$work/vit-l16" >/dev/null
for i in 0 1 2 3 4 5 6 7; do
    [ -f "$work/cohort/synth-s$((60 + i))-000.svs" ] ||
        "$bin" synth --out "$work/cohort" --seed $((60 + i)) --width 40000 --height 40000 --mpp 0.5 --quiet
done
: >"$out/scaling.txt"
for model in bundled vit-l16; do
    args=()
    [ "$model" = vit-l16 ] && args=(--model "$work/vit-l16" --batch 256)
    for devices in 0 all; do
        rm -rf "$work/out"
        start=$(date +%s.%N)
        "$bin" run "$work/cohort" --out "$work/out" --devices "$devices" --quiet "${args[@]}" \
            2>"$out/run-$model-$devices.log"
        end=$(date +%s.%N)
        cp "$work/out/batch-report.json" "$out/report-$model-$devices.json"
        echo "$model --devices $devices: $(echo "$end - $start" | bc) s for 8 slides" | tee -a "$out/scaling.txt"
    done
done
