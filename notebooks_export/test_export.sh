#!/usr/bin/env bash
# CI check of the notebook export (no GPU needed).
#
#   bash notebooks_export/test_export.sh path/to/mlalora
#
# 1. makes fresh reports with the CLI into a temp dir: an error report from the
#    float64 reference implementations (mlalora verify) and an FMA report
#    (mlalora fma); the throughput report is the committed H200 one;
# 2. runs `mlalora export` on the three and checks that every HTML file exists,
#    embeds at least the expected number of PNG plots, and has no error output
#    (Traceback / error cells) and no "NOTE:" (skipped plot) lines;
# 3. checks the robustness paths: an empty table and missing columns still
#    export (with NOTE lines and no Traceback); a bad report is a usage error
#    (exit 2); a notebook that raises makes the export fail (exit 3).
# Knob: MLALORA_EXPORT_TEST_CASES (verify cases, default 50).
set -uo pipefail

die() { echo "test_export: FAIL: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 path/to/mlalora"
MLALORA=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
[ -x "$MLALORA" ] || die "mlalora binary '$1' is not executable"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(dirname "$HERE")
THROUGHPUT="$SRC/reports/bench-h200-2026-11-29-s6.h5"
[ -f "$THROUGHPUT" ] || die "committed throughput report $THROUGHPUT is missing"
CASES=${MLALORA_EXPORT_TEST_CASES:-50}
PY=${MLALORA_PYTHON:-python3}
command -v "$PY" >/dev/null || die "$PY not found (scripts/setup.sh installs Python and the notebook packages)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mlalora-export-test.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$TMP"' EXIT
echo "test_export: work dir $TMP"

# --- 0. the committed notebooks are what make_notebooks.py writes -----------------
"$PY" "$HERE/make_notebooks.py" --check ||
  die "notebooks_export/*.ipynb differ from make_notebooks.py (re-run it and commit both)"

# --- 1. fresh reports ---------------------------------------------------------
"$MLALORA" verify --impl reference-factored,reference-materialized --cases "$CASES" --seed 1 \
    --out "$TMP/verify.h5" --quiet >"$TMP/verify.log" 2>&1 ||
  { cat "$TMP/verify.log" >&2; die "mlalora verify failed"; }
"$MLALORA" fma --out "$TMP/fma.h5" --no-table >"$TMP/fma.log" 2>&1 ||
  { cat "$TMP/fma.log" >&2; die "mlalora fma failed"; }

# --- 2. the export ------------------------------------------------------------
"$MLALORA" export --error "$TMP/verify.h5" --throughput "$THROUGHPUT" --fma "$TMP/fma.h5" \
    --out "$TMP/html" --timeout 300 >"$TMP/export.log" 2>&1
rc=$?
cat "$TMP/export.log"
[ $rc -eq 0 ] || die "mlalora export exited $rc (see above)"

plots() { grep -o 'src="data:image/png;base64' "$1" | wc -l; }
# A cell's printed note is rendered as '<pre>NOTE: ...' or starts a line inside one.
notes() { grep -E '(^|<pre>)NOTE: ' "$1" | sed -e 's/<[^>]*>//g'; }
has_error_output() { grep -q -e 'Traceback' -e 'output_type.*error' -e 'jp-OutputArea-error' "$1"; }

check_html() {  # name, minimum plots, report path (printed only in the provenance output)
  local f="$TMP/html/$1.html"
  [ -s "$f" ] || die "$f was not written"
  grep -qF "$f" "$TMP/export.log" || die "export did not list $f among the written files"
  local n; n=$(plots "$f")
  [ "$n" -ge "$2" ] || die "$1.html embeds $n PNG plot(s), expected at least $2"
  ! has_error_output "$f" || die "$1.html contains an error output / Traceback"
  local nl; nl=$(notes "$f")
  [ -z "$nl" ] || die "$1.html skipped something:"$'\n'"$nl"
  grep -qF -- "report: $3" "$f" || die "$1.html does not show the provenance of $3"
  if grep -q 'data-mime-type="application/vnd.jupyter.stderr"' "$f"; then
    echo "test_export: warning: $1.html has stderr output (warnings) in some cell" >&2
  fi
  ls "$TMP/html" | grep -q "^\.$1\.html\.tmp" && die "temporary file left behind for $1.html"
  echo "test_export: ok: $1.html ($n plots)"
}
check_html errors 2 "$TMP/verify.h5"
check_html throughput 3 "$THROUGHPUT"
check_html fma 3 "$TMP/fma.h5"   # two ratio plots + the measured-vs-counted comparison

# --- 3. robustness ------------------------------------------------------------
# An empty error table and an FMA report without its ratio columns: export
# succeeds, the notebooks say what they skip, no Traceback.
"$PY" - "$TMP/verify.h5" "$TMP/empty.h5" "$TMP/fma.h5" "$TMP/fma-cut.h5" <<'EOF' ||
import sys, h5py, numpy as np
src, empty, fsrc, cut = sys.argv[1:]
with h5py.File(src, "r") as s, h5py.File(empty, "w") as d:
    for k, v in s.attrs.items(): d.attrs[k] = v
    g = d.create_group("rows")
    for k, v in s["rows"].attrs.items(): g.attrs[k] = v
    g.attrs["num_rows"] = 0
    for c in s["rows"]:
        g.create_dataset(c, shape=(0,), dtype=s["rows"][c].dtype)
with h5py.File(fsrc, "r") as s, h5py.File(cut, "w") as d:
    for k, v in s.attrs.items(): d.attrs[k] = v
    g = d.create_group("rows")
    for k, v in s["rows"].attrs.items(): g.attrs[k] = v
    g.attrs["columns"] = "model,tp"
    for c in ("model", "tp"): s.copy(s["rows"][c], g, c)
EOF
  die "could not write the robustness reports"
"$MLALORA" export --error "$TMP/empty.h5" --fma "$TMP/fma-cut.h5" --out "$TMP/html-robust" \
    >"$TMP/robust.log" 2>&1 || { cat "$TMP/robust.log" >&2; die "export of empty / cut reports failed"; }
for n in errors fma; do
  f="$TMP/html-robust/$n.html"
  [ -s "$f" ] || die "robustness: $f was not written"
  ! has_error_output "$f" || die "robustness: $n.html shows a Traceback"
  [ -n "$(notes "$f")" ] || die "robustness: $n.html has no NOTE explaining the skipped plots"
done
echo "test_export: ok: empty table and missing columns export with notes"

# A report of the wrong kind, and no report at all: usage errors.
"$MLALORA" export --fma "$TMP/verify.h5" --out "$TMP/x" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || die "export of a wrong-kind report exited $rc, expected 2"
"$MLALORA" export --out "$TMP/x" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || die "export without reports exited $rc, expected 2"

# A notebook that raises: the export fails with 3 and names the notebook.
mkdir "$TMP/broken" && cp "$HERE"/export.py "$HERE"/*.ipynb "$TMP/broken/" || die "copy failed"
"$PY" - "$TMP/broken/fma.ipynb" <<'EOF' || die "could not write the broken notebook"
import sys, nbformat
nb = nbformat.read(sys.argv[1], as_version=4)
nb.cells.insert(2, nbformat.v4.new_code_cell("raise RuntimeError('deliberately broken')"))
nbformat.write(nb, sys.argv[1])
EOF
"$MLALORA" export --script "$TMP/broken/export.py" --fma "$TMP/fma.h5" --out "$TMP/html-broken" \
    >"$TMP/broken.log" 2>&1; rc=$?
[ $rc -eq 3 ] || { cat "$TMP/broken.log" >&2; die "export of a failing notebook exited $rc, expected 3"; }
grep -q "fma.ipynb failed" "$TMP/broken.log" || { cat "$TMP/broken.log" >&2; die "failure message does not name fma.ipynb"; }
[ ! -e "$TMP/html-broken/fma.html" ] || die "a failing notebook still wrote fma.html"
echo "test_export: ok: bad input exits 2, a failing notebook exits 3"

echo "test_export: PASS"
