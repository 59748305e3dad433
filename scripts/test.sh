#!/usr/bin/env bash
# The README's test command: set up a fresh machine, build, run the whole
# ctest suite. GPU tests (label gpu) skip visibly when no GPU is present.
#   MLALORA_CASES            rapidcheck cases per property (default here: 200)
#   MLALORA_MUTATION_CASES   case budget per mutant (default 300)
#   MLALORA_SEED             base seed (default: printed by each test binary)
#   PRESET                   CMake preset (default release)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="/usr/local/cuda/bin:$PATH"
PRESET="${PRESET:-release}"
export MLALORA_CASES="${MLALORA_CASES:-200}"
cmake --preset "$PRESET" >/dev/null
cmake --build --preset "$PRESET"
ctest --preset "$PRESET" "$@"
