#!/usr/bin/env bash
# Nsight Compute on the attention shapes where a flashslide kernel is below cuDNN (issue 25):
# stage 1's packed batches, each flashslide kernel family against cuDNN's (PyTorch 2.11's
# CUDNN_ATTENTION backend on the same dense batch), one launch each after warm-ups:
# speed of light, occupancy, warp stall reasons, tensor-pipe use. Needs a runtime where ncu
# reads the hardware counters (Firecracker, not gVisor: the device notes); `--clock-control
# none` leaves the clocks as they run.
# Usage: bash bench/attention_ncu.sh OUT_DIR [BATCH SEQ HEADS HEAD_DIM]   (default 256 197 16 64)
set -uo pipefail
out=${1:?usage: bash bench/attention_ncu.sh OUT_DIR [BATCH SEQ HEADS HEAD_DIM]}
batch=${2:-256} seq=${3:-197} heads=${4:-16} d=${5:-64}
mkdir -p "$out"
cd "$(dirname "$0")/.."
bin=${FLASHSLIDE:-target/release/flashslide}
shape="$batch x $seq tokens, $heads heads of $d"
source bench/ncu_profile.sh
kernels=(mma wgmma wgmma-tma)
[ "$d" = 64 ] || [ "$d" = 128 ] && kernels+=(wgmma-tma-persistent)
for kernel in "${kernels[@]}"; do
    profile "$kernel" flash_attn 3 "$bin" bench attention --device cuda --kernel "$kernel" \
        --batch "$batch" --seq "$seq" --heads "$heads" --head-dim "$d" --runs 3
done
profile cudnn "sdpa|fmha|cudnn" 3 python3 - "$batch" "$seq" "$heads" "$d" <<'PY'
import sys, torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention
b, n, h, d = map(int, sys.argv[1:])
qkv = torch.randn(b, n, 3, h, d, device="cuda", dtype=torch.bfloat16)
q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    for _ in range(6):
        scaled_dot_product_attention(q, k, v)
torch.cuda.synchronize()
PY
grep -h -E "^== |exit |stalled_|pipe_tensor|Duration|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Theoretical Occupancy|Block Limit|Executed Ipc|Issue Slots Busy|Warp Cycles Per Issued|Memory Throughput|^  [a-z_]+_kernel|flash_attn|sdpa" "$out"/ncu-*.txt
