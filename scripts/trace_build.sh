#!/usr/bin/env bash
# A build of mlalora whose fast-path kernels record per-block phase
# timestamps (optimized/fast_trace.hpp), in build-trace/ next to the release
# build. Not for timing: the marks add global stores to every block.
#   scripts/trace_build.sh            -> build-trace/harness/mlalora
#   TRACE=2 scripts/trace_build.sh    -> build-trace2/harness/mlalora: mark 2 is "stage 1's first
#                                        staged bytes landed" instead of "stage 1 done"
#   build-trace/harness/mlalora bench --suite small-batch --impl cuda-fused --trace-dir traces --out t.h5
#   python3 scripts/trace_summary.py traces
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
T="${TRACE:-1}"
case "$T" in 1) dir=build-trace ;; 2) dir=build-trace2 ;; *) echo "TRACE must be 1 or 2" >&2; exit 2 ;; esac
cmake --preset release -B "$dir" -DCMAKE_CUDA_FLAGS="-DMLALORA_FAST_TRACE=$T" > /dev/null
cmake --build "$dir" --target mlalora -j "${JOBS:-2}"
echo "trace build: $dir/harness/mlalora"
