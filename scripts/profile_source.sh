#!/usr/bin/env bash
# Nsight Compute warp-stall sampling per SASS instruction of one fast-path
# kernel launch: which instructions a block's warps wait on, and why.
#   scripts/profile_source.sh SUITE_FILE [KERNEL_REGEX] [MLALORA_BIN]
# Profiles the first launch of the matching kernel (the shape's verification
# call; caches flushed by ncu like the bench's L2 flush) and writes
# $OUT/source.ncu-rep, $OUT/source.csv (every instruction) and prints the 40
# instructions with the most stall samples plus the totals per stall reason.
set -uo pipefail
bash "$(dirname "$0")/gpu_session.sh" unpack
SUITE="${1:?suite file}"
KERNEL="${2:-fast_qv}"
BIN="${3:-.gpu/bin/mlalora}"
OUT="${OUT:-.}"
NCU="${NCU:-$(command -v ncu || echo /usr/local/cuda/bin/ncu)}"
timeout 400 "$NCU" --kernel-name regex:"$KERNEL" --launch-count 1 --section SourceCounters --section WarpStateStats \
  --warp-sampling-interval 0 -f -o "$OUT/source" \
  "$BIN" bench --suite "$SUITE" --impl cuda-fused --reps 1 --no-graphs --out "$OUT/profile-source.h5" \
  > "$OUT/ncu-source.log" 2>&1
echo "ncu rc=$?"
"$NCU" -i "$OUT/source.ncu-rep" --page source --csv --print-source sass > "$OUT/source.csv" 2>&1
echo "source page rc=$? ($(wc -l < "$OUT/source.csv") lines)"
python3 "$(dirname "$0")/source_stalls.py" "$OUT/source.csv"
