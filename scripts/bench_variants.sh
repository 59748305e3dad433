#!/usr/bin/env bash
# A/B the fast path's launch options (or any MLALORA_* knob) in one device call:
#   scripts/bench_variants.sh SUITE "name:VAR=val,VAR=val" "name:..." ...
# Runs `mlalora bench --impl cuda-fused` once per variant (each in its own
# environment), writes $OUT/variant-<name>.h5 and .log, and prints one table:
# graph-mode median microseconds per shape, one column per variant, plus the
# byte floor. EXE=path in a variant runs another build of mlalora; ARG=--flag
# adds a bench option (e.g. ARG=--decoy). Example (the launch forms of the fused fast path):
#   scripts/bench_variants.sh datasets/suites/quick.txt "auto:" "fused:MLALORA_FAST_QV=fused" \
#     "separate:MLALORA_FAST_QV=separate" "plain:MLALORA_FAST_QV=separate,MLALORA_FAST_PDL=0"
set -uo pipefail
bash "$(dirname "$0")/gpu_session.sh" unpack  # packed binaries (.gpu/bin.tar.xz) -> .gpu/bin/
cd "$(dirname "$0")/.."
SUITE="$1"; shift
OUT="${OUT:-$PWD/gpu-out}"
B="${MLALORA_BIN:-.gpu/bin}"
mkdir -p "$OUT"
names=()
for v in "$@"; do
  name="${v%%:*}"; vars="${v#*:}"
  names+=("$name")
  envs=()
  args=()
  exe="$B/mlalora"
  IFS=',' read -ra kv <<<"$vars"
  for e in "${kv[@]}"; do
    case "$e" in
      EXE=*) exe="${e#EXE=}" ;;  # another build of mlalora (compile-time variants)
      ARG=*) args+=("${e#ARG=}") ;;  # an extra bench option
      ?*) envs+=("$e") ;;
    esac
  done
  s=$(date +%s)
  # --models explicitly: a build from another checkout (EXE=) defaults to its
  # own source tree's datasets/, which the device copy does not have.
  env "${envs[@]}" "$exe" bench --suite "$SUITE" --models datasets/models.txt --impl cuda-fused "${args[@]}" \
    --out "$OUT/variant-$name.h5" \
    > "$OUT/variant-$name.log" 2>&1
  echo "[variant $name: ${vars:-defaults}] rc=$? $(( $(date +%s) - s ))s"
done
# Table rows of the bench output: shape impl mode disp median_us floor_us fraction speedup.
for n in "${names[@]}"; do echo "== $n"; cat "$OUT/variant-$n.log"; done | awk '
  /^== / { n = $2; names[++nn] = n; next }
  NF >= 8 && $2 == "cuda-fused" && $3 == "graph" {
    if (!($1 in floor)) order[++ns] = $1
    floor[$1] = $6; med[$1, n] = ($4 == "passed") ? $5 : $4
  }
  END {
    printf "%-52s %8s", "shape (graph mode, median us)", "floor"
    for (i = 1; i <= nn; ++i) printf " %9s", substr(names[i], 1, 9)
    printf "\n"
    for (k = 1; k <= ns; ++k) {
      s = order[k]; printf "%-52s %8s", substr(s, 1, 52), floor[s]
      for (i = 1; i <= nn; ++i) printf " %9s", ((s, names[i]) in med) ? med[s, names[i]] : "-"
      printf "\n"
    }
  }'
