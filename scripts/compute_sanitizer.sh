#!/usr/bin/env bash
# Runs the GPU test binary under the four compute-sanitizer tools (memcheck
# with leak checking, racecheck, initcheck, synccheck), one log per tool.
#
# usage: scripts/compute_sanitizer.sh [TEST_BINARY] [OUT_DIR] [extra test args...]
#   TEST_BINARY  default build/property_tests/mlalora_gpu_tests
#   OUT_DIR      default $OUT, else ./sanitizer-logs
#   extra args   passed to the test binary (e.g. a Catch2 tag filter)
# env: MLALORA_GPU_CASES (default 20) reduces the property-test case count;
#      COMPUTE_SANITIZER overrides the compute-sanitizer executable.
# Prints one line per tool: tool, exit code, errors (from "ERROR SUMMARY").
# Runs all four tools, then exits 1 if any tool failed or reported errors.
set -euo pipefail

BIN="${1:-build/property_tests/mlalora_gpu_tests}"
OUT_DIR="${2:-${OUT:-./sanitizer-logs}}"
shift $(( $# >= 2 ? 2 : $# ))
EXTRA_ARGS=("$@")
export MLALORA_GPU_CASES="${MLALORA_GPU_CASES:-20}"

SANITIZER="${COMPUTE_SANITIZER:-}"
if [[ -z "$SANITIZER" ]]; then
  if command -v compute-sanitizer >/dev/null 2>&1; then
    SANITIZER="$(command -v compute-sanitizer)"
  elif [[ -x /usr/local/cuda/bin/compute-sanitizer ]]; then
    SANITIZER=/usr/local/cuda/bin/compute-sanitizer
  else
    echo "compute_sanitizer.sh: compute-sanitizer not found (set COMPUTE_SANITIZER)" >&2
    exit 2
  fi
fi
if [[ ! -x "$BIN" ]]; then
  echo "compute_sanitizer.sh: test binary '$BIN' not found or not executable" >&2
  exit 2
fi
mkdir -p "$OUT_DIR"

failed=0
# MLALORA_SANITIZER_TOOLS picks tools (default all four); MLALORA_SANITIZER_TOOL_TIMEOUT
# bounds each tool's run in seconds (default none): racecheck is slow on large tiles.
TOOLS="${MLALORA_SANITIZER_TOOLS:-memcheck racecheck initcheck synccheck}"
TOOL_TIMEOUT="${MLALORA_SANITIZER_TOOL_TIMEOUT:-0}"
for tool in $TOOLS; do
  log="$OUT_DIR/sanitizer-$tool.log"
  args=(--tool "$tool" --error-exitcode 1)
  if [[ "$tool" == memcheck ]]; then
    args+=(--leak-check full)
  fi
  rc=0
  timeout "$TOOL_TIMEOUT" "$SANITIZER" "${args[@]}" "$BIN" "${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"}" >"$log" 2>&1 || rc=$?
  # "========= ERROR SUMMARY: 3 errors" (racecheck may add hazard counts on the same line).
  # racecheck prints "RACECHECK SUMMARY: N hazards displayed (E errors, W warnings)".
  summary="$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -n 1 || true)"
  if [[ "$summary" == *"RACECHECK SUMMARY"* ]]; then
    errors="$(sed -E 's/.*\(([0-9]+) errors.*/\1/' <<<"$summary")"
  elif [[ -n "$summary" ]]; then
    errors="$(sed -E 's/.*ERROR SUMMARY: *([0-9]+).*/\1/' <<<"$summary")"
  else
    errors="?"  # no summary: the tool or the program died before reporting
  fi
  printf '%-10s exit=%-4s errors=%-6s log=%s\n' "$tool" "$rc" "$errors" "$log"
  if [[ "$rc" -ne 0 || "$errors" != "0" ]]; then
    failed=1
  fi
done

if [[ "$failed" -ne 0 ]]; then
  echo "compute_sanitizer.sh: FAILED (see logs in $OUT_DIR)"
  exit 1
fi
echo "compute_sanitizer.sh: clean ($TOOLS)"
