#!/usr/bin/env bash
# One GPU session in one command (the device machine has no Eigen/Catch2/
# rapidcheck headers, so everything is built here and carried).
#   scripts/gpu_session.sh pack            # here: binaries into .gpu/bin.tar.xz (git-ignored; xz takes
#                                          #   the ~33 MB of binaries to ~4 MB of the 64 MiB carry)
#   scripts/gpu_session.sh unpack          # on the GPU machine: .gpu/bin.tar.xz -> .gpu/bin/ (run does it)
#   scripts/gpu_session.sh run [CASES] [SUITE] [STEPS]   # on the GPU machine (see STEPS below)
# Outputs go to $OUT (default ./gpu-out); a short table is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
if [ "$mode" = pack ]; then
  rm -rf .gpu && mkdir -p .gpu/bin .gpu/lib
  cp build/property_tests/mlalora_gpu_tests build/harness/mlalora .gpu/bin/
  # Fallback copies of the HDF5 runtime chain, used only if the GPU host lacks them.
  for l in libhdf5_serial.so.103 libsz.so.2 libaec.so.0; do cp -L "/lib/x86_64-linux-gnu/$l" .gpu/lib/ 2>/dev/null; done
  # Extra builds to A/B (scripts/bench_variants.sh EXE=...): PACK_EXTRA="name=path ...".
  for e in ${PACK_EXTRA:-}; do cp "${e#*=}" ".gpu/bin/${e%%=*}"; done
  strip .gpu/bin/* 2>/dev/null || true
  # xz with a dictionary larger than all binaries together: builds of the same
  # tree share most of their bytes, so each extra build adds about 1 MB
  # (gzip's 32 KB window cannot see that: about 5 MB each).
  tar cf - -C .gpu bin | xz -9 -T2 --lzma2=dict=192MiB > .gpu/bin.tar.xz && rm -rf .gpu/bin
  du -sh .gpu
  exit 0
fi
if [ "$mode" = unpack ] || [ "$mode" = run ]; then
  if [ -f .gpu/bin.tar.xz ] && [ ! -x .gpu/bin/mlalora ]; then xz -dc .gpu/bin.tar.xz | tar xf - -C .gpu; fi
  [ "$mode" = unpack ] && exit 0
fi
CASES="${2:-2000}"
SUITE="${3:-smoke}"
# Steps, comma-separated: tests, verify, bench, memcheck, sanitizer (racecheck +
# initcheck + synccheck over every test, one cap per tool), racecheck (split by
# test and graph configuration, longer caps: about 10 minutes), fastsan (the
# three tools on the fast-path tests only), or "all". One
# 10-minute device call holds about tests+verify+memcheck, another
# bench+sanitizer (h200 suite), a third racecheck.
STEPS="${4:-tests,verify,memcheck,sanitizer,bench}"
[ "$STEPS" = all ] && STEPS="tests,verify,memcheck,sanitizer,bench"
IMPLS="${MLALORA_BENCH_IMPLS:-cuda-fused,cuda-fused-planned,cublas-naive}"
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
step tests && MLALORA_GPU_CASES="$CASES" run gpu_tests 300 "$B/mlalora_gpu_tests"
step verify && run verify 150 "$B/mlalora" verify --impl cuda-fused,cuda-fused-planned,cuda-split,cublas-naive --config gpu --cases "$CASES" \
  --seed 1 --out "$OUT/verify-h200.h5" --dump-dir "$OUT/failures" --quiet
# Sanitizer: reduced case counts (4 generated problems per dtype, 2 garbage
# trials, 3 graph replays). memcheck skips the large-tile sweep; the other three
# tools run every GPU test, each capped at MLALORA_SANITIZER_TOOL_TIMEOUT.
export MLALORA_GRAPH_REPLAYS=3
step memcheck && run memcheck 200 env MLALORA_GPU_CASES=4 MLALORA_GARBAGE_TRIALS=2 MLALORA_SANITIZER_TOOLS=memcheck \
  bash scripts/compute_sanitizer.sh "$B/mlalora_gpu_tests" "$OUT" "~[tiles]"
step sanitizer && run sanitizer 420 env MLALORA_GPU_CASES=4 MLALORA_GARBAGE_TRIALS=2 \
  MLALORA_SANITIZER_TOOLS="racecheck initcheck synccheck" MLALORA_SANITIZER_TOOL_TIMEOUT="${MLALORA_SANITIZER_TOOL_TIMEOUT:-130}" \
  bash scripts/compute_sanitizer.sh "$B/mlalora_gpu_tests" "$OUT"
# racecheck split by test and graph configuration, each with its own cap: the
# graph-replay test under racecheck takes minutes on the generic kernels.
if step racecheck; then
  for sel in "rc-suites|120||GPU implementations*,[index],[fast],CUDA graph: launch geometry*" \
             "rc-tiles|120||[tiles]" \
             "rc-graph-a|300|odd dims,model dims,decode|CUDA graph: one capture*" \
             "rc-graph-b|300|large rank|CUDA graph: one capture*" \
             "rc-graph-c|240|prefill,many slots|CUDA graph: one capture*" \
             "rc-graph-d|240|small batch,small batch 200 slots,one token|CUDA graph: one capture*"; do
    IFS='|' read -r name cap configs filter <<<"$sel"
    mkdir -p "$OUT/$name"
    run "$name" $((cap + 30)) env MLALORA_GPU_CASES=4 MLALORA_GARBAGE_TRIALS=2 MLALORA_GRAPH_CONFIGS="$configs" \
      MLALORA_SANITIZER_TOOLS=racecheck MLALORA_SANITIZER_TOOL_TIMEOUT="$cap" \
      bash scripts/compute_sanitizer.sh "$B/mlalora_gpu_tests" "$OUT/$name" "$filter"
  done
fi
# fastsan: racecheck, initcheck and synccheck on the tests that run the fused
# fast path (its property suite, the index tests, graph replays of the
# fast-path configurations), each tool capped at 150 s: about 8 minutes.
# Graph replays only in the fast path's dtypes (f32 runs the generic kernels,
# slow under racecheck); the property suite with 30 cases per dtype.
step fastsan && run fastsan 480 env MLALORA_GPU_CASES=30 MLALORA_GARBAGE_TRIALS=2 \
  MLALORA_GRAPH_CONFIGS="model dims,decode,prefill,many slots,small batch,small batch 200 slots,one token" MLALORA_GRAPH_DTYPES="bf16,f16" \
  MLALORA_SANITIZER_TOOLS="racecheck initcheck synccheck" \
  MLALORA_SANITIZER_TOOL_TIMEOUT=150 bash scripts/compute_sanitizer.sh "$B/mlalora_gpu_tests" "$OUT/fastsan" \
  "[fast],[index],CUDA graph: one capture*"
unset MLALORA_GRAPH_REPLAYS
step bench && run bench 330 "$B/mlalora" bench --suite "$SUITE" --impl "$IMPLS" --out "$OUT/bench-$SUITE.h5"
cuobjdump --dump-sass "$B/mlalora_gpu_tests" > /tmp/sass.txt 2>/dev/null &&
  echo "SASS: HMMA $(grep -c HMMA /tmp/sass.txt) LDSM $(grep -c LDSM /tmp/sass.txt) LDL $(grep -c 'LDL' /tmp/sass.txt) STL $(grep -c 'STL' /tmp/sass.txt)" | tee "$OUT/sass.txt"
step tests && { echo "== gpu tests"; grep -E "passed .*/|FAILED|test cases|assertions|All tests" "$OUT/gpu_tests.log" | tail -25; }
step verify && { echo "== verify"; tail -6 "$OUT/verify.log"; }
step memcheck && { echo "== memcheck"; tail -3 "$OUT/memcheck.log"; }
step sanitizer && { echo "== sanitizer"; tail -5 "$OUT/sanitizer.log"; }
step fastsan && { echo "== fast-path sanitizers"; cat "$OUT/fastsan.log"; grep -h -E "SUMMARY|test cases" "$OUT"/fastsan/*.log; }
step racecheck && { echo "== racecheck (split)"; for d in rc-suites rc-tiles rc-graph-a rc-graph-b rc-graph-c rc-graph-d; do echo "$d: $(tail -1 "$OUT/$d.log")"; done; }
step bench && { echo "== bench"; grep -A80 "^copy bandwidth .* fraction" "$OUT/bench.log" | grep -v " stream " | cut -c1-118; }
for k in "${!rc[@]}"; do echo "$k rc=${rc[$k]}"; done
# At most 8 files come back from the device: pack the logs into one archive.
(cd "$OUT" && tar czf logs.tgz --remove-files $(ls | grep -v -E '\.h5$|^logs\.tgz$') 2>/dev/null)
ls "$OUT"
