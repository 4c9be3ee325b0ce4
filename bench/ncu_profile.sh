# Nsight Compute's profile of one kernel launch, shared by the ncu scripts (sourced, not
# run). The sections and metrics: speed of light, occupancy, warp states, compute and
# memory workload, launch statistics, every stall reason (warps stalled per issued
# instruction, by reason) and the tensor pipes' use (wgmma's and mma.sync's), which the
# sections name neither of; a script adds its own with `extra_metrics`.
# Needs $out (the folder) and $shape (the launch's shape, for the header).
ncu_sections() {
    local metrics="regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"
    echo --section SpeedOfLight --section Occupancy --section WarpStateStats \
        --section ComputeWorkloadAnalysis --section LaunchStats --section MemoryWorkloadAnalysis \
        --metrics "$metrics${extra_metrics:+,$extra_metrics}"
}
# profile NAME KERNEL_REGEX SKIP COMMAND...: the launch after SKIP warm-up launches of the
# kernels matching KERNEL_REGEX, into $out/ncu-NAME.txt; `--clock-control none` leaves the
# clocks as they run.
profile() {
    local name=$1 regex=$2 skip=$3
    shift 3
    local sections
    read -ra sections <<<"$(ncu_sections)"
    echo "== $name, $shape" >"$out/ncu-$name.txt"
    timeout 150 ncu --clock-control none -k "regex:$regex" --launch-skip "$skip" --launch-count 1 \
        "${sections[@]}" "$@" >>"$out/ncu-$name.txt" 2>&1
    echo "exit $?" >>"$out/ncu-$name.txt"
}
