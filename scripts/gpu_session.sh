#!/usr/bin/env bash
# One GPU session in one command (the device machine has no Eigen/Catch2/
# rapidcheck headers, so everything is built here and carried).
#   scripts/gpu_session.sh pack            # here: copy binaries into .gpu/ (git-ignored)
#   scripts/gpu_session.sh run [CASES] [SUITE]   # on the GPU machine: tests, sanitizer, verify, bench
# Outputs go to $OUT (default ./gpu-out); a short table is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
if [ "$mode" = pack ]; then
  rm -rf .gpu && mkdir -p .gpu/bin .gpu/lib
  cp build/property_tests/mlalora_gpu_tests build/property_tests/mlalora_tests build/harness/mlalora .gpu/bin/
  # Fallback copies of the HDF5 runtime chain, used only if the GPU host lacks them.
  for l in libhdf5_serial.so.103 libsz.so.2 libaec.so.0; do cp -L "/lib/x86_64-linux-gnu/$l" .gpu/lib/ 2>/dev/null; done
  du -sh .gpu
  exit 0
fi
CASES="${2:-2000}"
SUITE="${3:-smoke}"
STEPS="${4:-tests,sanitizer,verify,bench}"   # which steps to run, comma-separated
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
B=.gpu/bin
if ldd "$B/mlalora" | grep -q "not found"; then export LD_LIBRARY_PATH="$PWD/.gpu/lib:${LD_LIBRARY_PATH:-}"; fi
ldd "$B/mlalora" | grep "not found" && echo "missing libraries" >&2
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$OUT/gpu.txt"
declare -A rc
run() {  # name, timeout seconds, command...
  local name="$1" t="$2"; shift 2
  local s=$(date +%s)
  timeout "$t" "$@" > "$OUT/$name.log" 2>&1
  rc[$name]=$?
  echo "[$name] rc=${rc[$name]} $(( $(date +%s) - s ))s"
}
export MLALORA_SEED="${MLALORA_SEED:-$(date +%s)}"
export MLALORA_DUMP_DIR="$OUT/failures"
step() { [[ ",$STEPS," == *",$1,"* ]]; }
step tests && MLALORA_GPU_CASES="$CASES" run gpu_tests 240 "$B/mlalora_gpu_tests"
# Sanitizer: every GPU test but the large-tile sweep, on a reduced case count.
step sanitizer && run sanitizer 500 env MLALORA_GPU_CASES=4 MLALORA_GARBAGE_TRIALS=2 \
  bash scripts/compute_sanitizer.sh "$B/mlalora_gpu_tests" "$OUT" "~[tiles]"
step verify && run verify 120 "$B/mlalora" verify --impl cuda-fused,cuda-split,cublas-naive --config gpu --cases "$CASES" \
  --seed 1 --out "$OUT/verify-h200.h5" --dump-dir "$OUT/failures" --quiet
step bench && run bench 220 "$B/mlalora" bench --suite "$SUITE" --out "$OUT/bench-$SUITE.h5"
cuobjdump --dump-sass "$B/mlalora_gpu_tests" > /tmp/sass.txt 2>/dev/null &&
  echo "SASS: HMMA $(grep -c HMMA /tmp/sass.txt) LDSM $(grep -c LDSM /tmp/sass.txt) LDL $(grep -c 'LDL' /tmp/sass.txt) STL $(grep -c 'STL' /tmp/sass.txt)" | tee "$OUT/sass.txt"
step tests && { echo "== gpu tests (tail)"; tail -25 "$OUT/gpu_tests.log"; }
step sanitizer && { echo "== sanitizer"; tail -6 "$OUT/sanitizer.log"; }
step verify && { echo "== verify"; tail -6 "$OUT/verify.log"; }
step bench && { echo "== bench"; tail -75 "$OUT/bench.log" | cut -c1-118; }
for k in "${!rc[@]}"; do echo "$k rc=${rc[$k]}"; done
# At most 8 files come back from the device: pack the logs into one archive.
(cd "$OUT" && tar czf logs.tgz --remove-files $(ls | grep -v -E '\.h5$|^logs\.tgz$') 2>/dev/null)
ls "$OUT"
