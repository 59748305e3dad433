#!/usr/bin/env bash
# The README's main command: set up, build, then
#   1. verify every implementation this machine can run on generated problems
#      (CUDA ones too when a GPU is present) -> reports/local/verify-<host>.h5
#   2. the FMA-savings report for all model configs -> reports/local/fma.h5
# Usage: scripts/run.sh [--cases N] [--seed S]
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=500; SEED=1
while (($#)); do
  case "$1" in
    --cases) CASES="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
bash scripts/setup.sh
export PATH="/usr/local/cuda/bin:$PATH"
cmake --preset release >/dev/null
cmake --build --preset release
MLALORA=build/harness/mlalora
IMPLS=$("$MLALORA" verify --list | awk 'NR>1 && ($2=="no" || gpu) {print $1}' gpu="$(nvidia-smi -L >/dev/null 2>&1 && echo 1)" | paste -sd,)
mkdir -p reports/local
echo "== verify: $IMPLS, $CASES cases, seed $SEED"
"$MLALORA" verify --impl "$IMPLS" --cases "$CASES" --seed "$SEED" --config "$(nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)" \
  --out "reports/local/verify-$(hostname).h5" --dump-dir reports/local/failures
echo "== fma: FMA and byte savings versus naive materialisation"
"$MLALORA" fma --out reports/local/fma.h5
