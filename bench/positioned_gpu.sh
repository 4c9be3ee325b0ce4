#!/usr/bin/env bash
# Issue 22's GPU check of tiles at their own positions: the device decoder (nvJPEG and
# assemble_tiles) on the DICOM series of tools/make_dicom_slides.py, frames off the tile grid
# included, against the CPU's reading (`selftest --slides`); `run` over the positioned series
# on cuda and cpu; then bench/ab_binaries.sh's A/B of `run` and the kernels against the binary
# before the change (a batch's placement lists must not slow the assembling kernel).
# Usage: OUT=dir bash bench/positioned_gpu.sh NEW_BINARY OLD_BINARY DICOM_DIR
#   (DICOM_DIR: python3 tools/make_dicom_slides.py --out DICOM_DIR --shared ../shared/slides,
#    made on the development machine and carried: the device has no pydicom)
set -uo pipefail
new=${1:?new binary}
old=${2:?binary before the change}
dicom=${3:?folder made by tools/make_dicom_slides.py}
out=${OUT:?set OUT}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/gpu.txt"
"$new" selftest --device cuda --slides "$dicom/positioned" "$dicom/sparse-jpeg" \
    >"$out/selftest.txt" 2>&1
echo "selftest exit $?" >>"$out/selftest.txt"
for device in cuda cpu; do
    rm -rf "/tmp/positioned-$device"
    "$new" run "$dicom/positioned" --out "/tmp/positioned-$device" --device "$device" --quiet \
        >"$out/run-positioned-$device.txt" 2>&1
    echo "exit $?" >>"$out/run-positioned-$device.txt"
    cp /tmp/positioned-"$device"/*/summary.json "$out/positioned-$device.json" 2>/dev/null
done
OUT="$out/ab" bash "$(dirname "$0")/ab_binaries.sh" "$old" "$new"
