#!/usr/bin/env bash
# Nsight Compute metrics of the fast-path kernels on a few bench shapes: the
# numbers PERF.md's diagnoses rest on (time, DRAM / L2 / L1 throughput,
# tensor-pipe use, occupancy limits, warp stall reasons per issued instruction).
#   scripts/profile_ncu.sh SUITE_FILE [LAUNCHES] [MLALORA_BIN]
# Each shape's first (verification) call is profiled: plan + q + v kernels.
set -uo pipefail
bash "$(dirname "$0")/gpu_session.sh" unpack  # packed binaries (.gpu/bin.tar.xz) -> .gpu/bin/
SUITE="${1:?suite file}"
COUNT="${2:-9}"
BIN="${3:-.gpu/bin/mlalora}"
OUT="${OUT:-.}"
NCU="${NCU:-$(command -v ncu || echo /usr/local/cuda/bin/ncu)}"
M=gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_bytes.sum,dram__bytes_read.sum,dram__bytes_write.sum
M=$M,lts__throughput.avg.pct_of_peak_sustained_elapsed,l1tex__throughput.avg.pct_of_peak_sustained_active
M=$M,sm__warps_active.avg.pct_of_peak_sustained_active,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
M=$M,launch__registers_per_thread,launch__occupancy_limit_registers,launch__occupancy_limit_shared_mem,launch__grid_size
M=$M,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum
for s in no_instruction branch_resolving long_scoreboard barrier lg_throttle mio_throttle short_scoreboard math_pipe_throttle wait not_selected tex_throttle; do
  M=$M,smsp__average_warps_issue_stalled_${s}_per_issue_active.ratio
done
timeout 500 "$NCU" --kernel-name regex:"fast_|plan_" --launch-count "$COUNT" --metrics "$M" \
  "$BIN" bench --suite "$SUITE" --impl cuda-fused --reps 3 --no-graphs --out "$OUT/profile.h5" > "$OUT/ncu.log" 2>&1
echo "ncu rc=$?"
grep -E "fast_|plan_k|duration|dram__|lts__|warps_active|hmma|l1tex__thr|registers|occupancy_limit|grid_size|stalled|issue_active|inst_exec" "$OUT/ncu.log" |
  sed -E 's/mlalora::optimized::detail::\(anonymous namespace\)::/ /; s/\(KParams.*//; s/smsp__average_warps_issue_stalled_/stall_/;
          s/_per_issue_active.ratio//; s/launch__occupancy_limit_/occ_/; s/ +/ /g' | cut -c1-60 | paste - - - -
