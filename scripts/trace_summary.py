#!/usr/bin/env python3
"""Summarise fast-path phase traces (mlalora bench --trace-dir DIR, from a
scripts/trace_build.sh build): per shape, the kernel's span, when blocks
started, and per side (q / v blocks) the median and maximum time of each
phase, in microseconds of %globaltimer:

  wait+index  entry -> index data resolved (programmatic-launch wait, the
              segment search, rank and scale)
  stage 1     -> Y = X @ W1 in registers (q: X @ B_kc; v: X @ A^T)
  stage 2     -> the last warp of the block is done (Y @ W2, epilogue, stores)

Traces of a TRACE=2 build (scripts/trace_build.sh) put mark 2 where stage 1's
first staged bytes have landed: there "stage 1" is index -> landed and
"stage 2" is landed -> end.

usage: trace_summary.py DIR [--csv]   (--csv: one machine-readable line per shape and side)
"""
import csv
import glob
import os
import statistics
import sys


def load(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def phases(rows):
    out = {"wait+index": [], "stage 1": [], "stage 2": [], "block": []}
    for r in rows:
        n = [int(r[k]) for k in ("ns_entry", "ns_index", "ns_stage1", "ns_end")]
        if r["resolved"] != "1" or 0 in n:
            continue
        out["wait+index"].append((n[1] - n[0]) / 1e3)
        out["stage 1"].append((n[2] - n[1]) / 1e3)
        out["stage 2"].append((n[3] - n[2]) / 1e3)
        out["block"].append((n[3] - n[0]) / 1e3)
    return out


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    as_csv = "--csv" in sys.argv[2:]
    files = sorted(glob.glob(os.path.join(sys.argv[1], "*.csv")))
    if not files:
        print(f"trace_summary.py: no .csv traces in {sys.argv[1]}", file=sys.stderr)
        return 1
    if as_csv:
        print("shape,side,blocks,span_us,start_spread_us,phase,median_us,max_us")
    for path in files:
        rows = load(path)
        shape = os.path.basename(path)[:-4]
        if not rows:
            print(f"{shape}: no records")
            continue
        t0 = min(int(r["ns_entry"]) for r in rows)
        t1 = max(int(r["ns_end"]) for r in rows)
        starts = [int(r["ns_entry"]) - t0 for r in rows]
        if not as_csv:
            print(f"== {shape}: {len(rows)} blocks, span {(t1 - t0) / 1e3:.2f} us, "
                  f"last block started at {max(starts) / 1e3:.2f} us")
        for side in ("q", "v"):
            sr = [r for r in rows if r["side"] == side]
            if not sr:
                continue
            ph = phases(sr)
            spread = (max(int(r["ns_entry"]) for r in sr) - min(int(r["ns_entry"]) for r in sr)) / 1e3
            for name, vals in ph.items():
                if not vals:
                    continue
                med, mx = statistics.median(vals), max(vals)
                if as_csv:
                    print(f"{shape},{side},{len(sr)},{(t1 - t0) / 1e3:.3f},{spread:.3f},{name},{med:.3f},{mx:.3f}")
                else:
                    print(f"  {side} ({len(sr):5d} blocks, {len(vals):5d} with a tile)  {name:10s}"
                          f" median {med:7.2f} us  max {mx:7.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
