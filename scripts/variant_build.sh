#!/usr/bin/env bash
# A compile-time variant of mlalora for an A/B run (scripts/bench_variants.sh
# EXE=build-NAME/harness/mlalora): the release preset with extra defines in
# CMAKE_CUDA_FLAGS, in build-NAME/ next to the release build.
#   scripts/variant_build.sh r128x3 "-DMLALORA_FAST_MIN_BLOCKS_R128=3 -DMLALORA_FAST_RING_STAGES_R128=2"
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
[ $# -eq 2 ] || { echo "usage: $0 NAME \"-DDEFINE=VALUE ...\"" >&2; exit 2; }
dir="build-$1"
cmake --preset release -B "$dir" -DCMAKE_CUDA_FLAGS="$2" > /dev/null
cmake --build "$dir" --target mlalora -j "${JOBS:-2}"
echo "variant build: $dir/harness/mlalora"
