#!/usr/bin/env bash
# Nsight Compute on training's attention backward (issue 21): flashslide's kernel
# (kernels/attention_backward.cu) against PyTorch's flash and cuDNN backward on the same shape, one
# launch each after warm-ups: speed of light, occupancy, warp stall reasons (lg_throttle:
# the queue of global loads, stores and reductions), tensor-pipe use, and the L2's
# reduction traffic (dQ's f32 additions). Needs a runtime where ncu reads the hardware
# counters; `--clock-control none` leaves the clocks as they run.
# Usage: bash bench/attention_backward_ncu.sh OUT_DIR [SEQ HEADS HEAD_DIM]   (default 16384 8 64)
set -uo pipefail
out=${1:?usage: bash bench/attention_backward_ncu.sh OUT_DIR [SEQ HEADS HEAD_DIM]}
seq=${2:-16384} heads=${3:-8} d=${4:-64}
mkdir -p "$out"
cd "$(dirname "$0")/.."
bin=${FLASHSLIDE:-target/release/flashslide}
shape="N $seq, $heads heads of $d"
extra_metrics="lts__t_requests_op_red.sum,lts__t_sectors_op_red.sum,lts__t_requests_op_atom.sum,l1tex__t_requests_pipe_lsu_mem_global_op_red.sum"
source bench/ncu_profile.sh
profile flashslide "attention_backward_(sm90_)?bf16" 2 "$bin" bench attention-backward --seq "$seq" --heads "$heads" \
    --head-dim "$d" --runs 3
# Five backward passes of PyTorch's SDPA on the backend named first (FLASH_ATTENTION, CUDNN_ATTENTION).
sdpa_backward="$out/sdpa_backward.py"
cat >"$sdpa_backward" <<'PY'
import sys, torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention
backend, (n, h, d) = getattr(SDPBackend, sys.argv[1]), map(int, sys.argv[2:])
q, k, v = (torch.randn(1, h, n, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
with sdpa_kernel(backend):
    for _ in range(5):
        scaled_dot_product_attention(q, k, v).backward(torch.randn(1, h, n, d, device="cuda", dtype=torch.bfloat16))
torch.cuda.synchronize()
PY
profile torch-flash "flash_bwd_dq_dk_dv" 2 python3 "$sdpa_backward" FLASH_ATTENTION "$seq" "$heads" "$d"
profile torch-cudnn "flash_bprop" 2 python3 "$sdpa_backward" CUDNN_ATTENTION "$seq" "$heads" "$d"
grep -h -E "^== |exit |stalled_(lg_throttle|long_scoreboard|short_scoreboard|barrier|mio_throttle|math_pipe|wait|not_selected)|pipe_tensor|op_red|op_atom|Duration|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Theoretical Occupancy|Executed Ipc|Issue Slots Busy|Warp Cycles Per Issued|Memory Throughput|L2 Cache Throughput" "$out"/ncu-*.txt
