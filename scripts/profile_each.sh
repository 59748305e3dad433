#!/usr/bin/env bash
# Nsight Compute on each shape of a suite file separately (the first call of
# each: plan + fast kernels), so one profile covers one shape:
#   scripts/profile_each.sh SUITE_FILE [LAUNCHES=2]
# Writes $OUT/ncu-<n>.log per shape line and prints the metrics of each.
set -uo pipefail
cd "$(dirname "$0")/.."
SUITE="${1:?suite file}"
COUNT="${2:-2}"
OUT="${OUT:-.}"
n=0
grep -v -E '^\s*(#|$)' "$SUITE" | while read -r line; do
  n=$((n + 1))
  tmp="$(mktemp)"
  echo "$line" > "$tmp"
  mkdir -p "$OUT/p$n"
  echo "== shape $n: $line"
  OUT="$OUT/p$n" bash scripts/profile_ncu.sh "$tmp" "$COUNT" | tail -n +2
  rm -f "$tmp"
done
