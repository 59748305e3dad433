#!/usr/bin/env bash
# A build of mlalora whose fast-path kernels record per-block phase
# timestamps (optimized/fast_trace.hpp), in build-trace/ next to the release
# build. Not for timing: the marks add global stores to every block.
#   scripts/trace_build.sh            -> build-trace/harness/mlalora
#   build-trace/harness/mlalora bench --suite small-batch --impl cuda-fused --trace-dir traces --out t.h5
#   python3 scripts/trace_summary.py traces
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
cmake --preset release -B build-trace -DCMAKE_CUDA_FLAGS="-DMLALORA_FAST_TRACE=1" > /dev/null
cmake --build build-trace --target mlalora -j "${JOBS:-2}"
echo "trace build: build-trace/harness/mlalora"
