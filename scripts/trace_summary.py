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

The small-batch kernels (sgmm_small.cu; sides q1, v1 of stage 1 and q2, v2
of stage 2) have their own phases:

  rows        entry -> rows resolved (two dependent index loads)
  staging     stage 1: -> its weights and inputs have landed in shared memory
  wait        stage 2: -> griddepcontrol.wait returned (stage 1 complete)
  rest        -> the block's last warp is done (stage 2: Y load, compute, stores)

and per shape the chain between the two kernels: stage 1's span (first
entry -> last end), when stage 2's first and median blocks were released
from the wait, counted from stage 1's last end (the programmatic launch's
release latency), and stage 2's end.

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


SMALL_SIDES = ("q1", "v1", "q2", "v2")


def small_phases(rows, stage2):
    out = {"rows": [], "wait" if stage2 else "staging": [], "rest": [], "block": []}
    mid = "wait" if stage2 else "staging"
    for r in rows:
        n = [int(r[k]) for k in ("ns_entry", "ns_index", "ns_stage1", "ns_end")]
        if 0 in n:
            continue
        out["rows"].append((n[1] - n[0]) / 1e3)
        out[mid].append((n[2] - n[1]) / 1e3)
        out["rest"].append((n[3] - n[2]) / 1e3)
        out["block"].append((n[3] - n[0]) / 1e3)
    return out


def small_chain(rows, t0):
    """Stage 1 span, stage 2's release from the wait (after stage 1's last end), stage 2's end (us from t0)."""
    s1 = [r for r in rows if r["side"] in ("q1", "v1")]
    s2 = [r for r in rows if r["side"] in ("q2", "v2")]
    if not s1 or not s2:
        return None
    end1 = max(int(r["ns_end"]) for r in s1)
    rel = sorted(int(r["ns_stage1"]) for r in s2 if int(r["ns_stage1"]) > 0)
    if not rel:
        return None
    return {
        "stage1_end": (end1 - t0) / 1e3,
        "release_first": (rel[0] - end1) / 1e3,
        "release_median": (statistics.median(rel) - end1) / 1e3,
        "stage2_first_entry": (min(int(r["ns_entry"]) for r in s2) - t0) / 1e3,
        "stage2_end": (max(int(r["ns_end"]) for r in s2) - t0) / 1e3,
    }


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
        chain = small_chain(rows, t0)
        if chain is not None:
            if as_csv:
                for k, v in chain.items():
                    print(f"{shape},chain,0,{(t1 - t0) / 1e3:.3f},0.000,{k},{v:.3f},{v:.3f}")
            else:
                print(f"  small-batch chain: stage 1 ends at {chain['stage1_end']:.2f} us; stage 2 entered at "
                      f"{chain['stage2_first_entry']:.2f} us, released from the wait {chain['release_first']:.2f} us "
                      f"(first) / {chain['release_median']:.2f} us (median) after stage 1's end, "
                      f"ends at {chain['stage2_end']:.2f} us")
        for side in ("q", "v") + SMALL_SIDES:
            sr = [r for r in rows if r["side"] == side]
            if not sr:
                continue
            ph = small_phases(sr, side in ("q2", "v2")) if side in SMALL_SIDES else phases(sr)
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
