#!/usr/bin/env bash
# CLI contract: --help on every subcommand, exit codes (0 ok, 1 check failed,
# 2 usage / bad input, 3 I/O), clear messages naming the argument, and a
# verify report that h5py reads. usage: test_cli.sh path/to/mlalora
set -uo pipefail
BIN="$1"
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
fails=0
expect() {  # expected-exit, grep-pattern (or ""), command...
  local want="$1" pat="$2"; shift 2
  "$@" >"$TMP/out" 2>&1; local rc=$?
  if [[ $rc -ne $want ]] || { [[ -n "$pat" ]] && ! grep -qE -- "$pat" "$TMP/out"; }; then
    echo "FAIL: '$*' exited $rc (want $want), output:"; sed 's/^/  | /' "$TMP/out" | head -12; fails=$((fails+1))
  else
    echo "ok: $* -> $rc"
  fi
}
for sub in verify fma bench gate premerge golden check export; do
  if "$BIN" --help | grep -qE "^  $sub "; then expect 0 "Usage|Options" "$BIN" "$sub" --help; fi
done
expect 0 "reference-factored" "$BIN" verify --list
expect 2 "unknown implementation 'nope'" "$BIN" verify --impl nope --out "$TMP/x.h5"
expect 2 "--out" "$BIN" verify --impl reference-factored
expect 2 "dtype" "$BIN" verify --impl reference-factored --dtype f8 --out "$TMP/x.h5"
expect 2 "" "$BIN" verify --cases -3 --out "$TMP/x.h5"
expect 3 "writing" "$BIN" verify --impl reference-factored --cases 2 --out "$TMP/no/such/dir/x.h5" --quiet
expect 2 "" "$BIN" no-such-subcommand
expect 0 "report:" "$BIN" verify --impl reference-factored,reference-materialized --cases 60 --seed 3 --out "$TMP/v.h5" --quiet
expect 0 "schema ok" python3 "$SRC/reports/check_report.py" "$TMP/v.h5"
ls "$TMP" | grep -q '\.tmp\.' && { echo "FAIL: temporary report file left behind"; fails=$((fails+1)); }
expect 0 "268435456" "$BIN" fma --model DeepSeek-V3 --tp 1 --ranks 16 --workload 1:1
expect 2 "not in" "$BIN" fma --model NoSuchModel
expect 0 "time x" "$BIN" fma --bench "$SRC/reports/bench-h200-2026-11-28.h5"
expect 2 "not throughput-report" "$BIN" fma --bench "$TMP/v.h5"
expect 0 "self-test ok" python3 "$SRC/reports/test_targets.py" "$TMP/targets" "$SRC/reports/bench-h200-2026-11-29-s9.h5"
# Synthetic phase traces for trace_summary.py: trace_fixture DIR NAME writes
# DIR/NAME.csv, the header of `mlalora bench --trace-dir` and then stdin's rows.
trace_fixture() {
  mkdir -p "$1"
  { echo "block,side,smid,resolved,ns_entry,ns_index,ns_stage1,ns_end,cyc_entry,cyc_index,cyc_stage1,cyc_end"; cat; } \
    > "$1/$2.csv"
}
# q blocks of 1+2+3 us and 3+2+1 us phases, one v block, one unresolved block.
trace_fixture "$TMP/trace" S_tp1_r16 <<'CSV'
0,q,0,1,1000,2000,4000,7000,1,2,3,4
1,q,1,1,1000,4000,6000,7000,1,2,3,4
2,v,2,1,1500,2500,12500,13500,1,2,3,4
3,v,3,0,2000,0,0,2500,1,0,0,4
CSV
expect 0 "span 12.50 us, last block started at 1.00 us" python3 "$SRC/scripts/trace_summary.py" "$TMP/trace"
expect 0 "S_tp1_r16,v,2,12.500,0.500,stage 1,10.000,10.000" python3 "$SRC/scripts/trace_summary.py" "$TMP/trace" --csv
expect 0 "S_tp1_r16,q,2,12.500,0.000,wait\+index,2.000,3.000" python3 "$SRC/scripts/trace_summary.py" "$TMP/trace" --csv
# Small-batch kernels: stage 1 (q1, v1) ends at 6 us after its first entry; stage 2's
# blocks are released from the wait 1.0 / 1.5 us after that and end at 9.5 us.
trace_fixture "$TMP/trace2" T1 <<'CSV'
0,q1,0,1,1000,2000,4000,5000,1,2,3,4
1,v1,1,1,1000,2500,5000,7000,1,2,3,4
0,q2,2,1,2000,3000,8000,9500,1,2,3,4
1,v2,3,1,2500,3500,9000,10500,1,2,3,4
CSV
expect 0 "stage 1 ends at 6.00 us; stage 2 entered at 1.00 us, released from the wait 1.00 us \(first\) / 1.50 us \(median\)" \
  python3 "$SRC/scripts/trace_summary.py" "$TMP/trace2"
expect 0 "T1,v2,1,9.500,0.000,wait,5.500,5.500" python3 "$SRC/scripts/trace_summary.py" "$TMP/trace2" --csv
expect 0 "T1,q1,1,9.500,0.000,staging,2.000,2.000" python3 "$SRC/scripts/trace_summary.py" "$TMP/trace2" --csv
expect 1 "no .csv traces" python3 "$SRC/scripts/trace_summary.py" "$TMP"
expect 3 "no MLALORA_FAST_TRACE" "$BIN" bench --suite smoke --trace-dir "$TMP/tr" --out "$TMP/b.h5"
expect 2 "TOKENS:ADAPTERS" "$BIN" fma --workload 12
expect 2 "is not key=value" "$BIN" bench --suite "$SRC/harness/cli/test_cli.sh" --out "$TMP/b.h5"
expect 2 "--draw-by: 'suite' is not index or name" "$BIN" bench --suite smoke --out "$TMP/b.h5" --draw-by suite
# Every committed shape suite parses and names at least one shape of a known model.
for suite in "$SRC"/datasets/suites/*.txt; do
  expect 0 "^[A-Za-z0-9-]+/tp[0-9]+/r[0-9]+/" "$BIN" bench --suite "$suite" --models "$SRC/datasets/models.txt" --list
done
echo "$((fails)) failed"
[[ $fails -eq 0 ]]
