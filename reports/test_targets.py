#!/usr/bin/env python3
"""Self-test of targets.py on a synthetic throughput report whose verdicts
are known by construction (one shape per target boundary), then on the
committed H200 report (every shape gets a row and a naive verdict).
usage: test_targets.py OUTDIR [COMMITTED_BENCH.h5]"""
import os
import re
import subprocess
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def write(path, rows):
    cols = ["shape", "implementation", "mode", "disposition", "workload", "median_us", "byte_floor_us", "frac_copy_bw"]
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "throughput-report"
        g = f.create_group("rows")
        for i, c in enumerate(cols):
            vals = [r[i] for r in rows]
            if isinstance(vals[0], str):
                g.create_dataset(c, data=np.array(vals, dtype=object), dtype=h5py.string_dtype())
            else:
                g.create_dataset(c, data=np.array(vals, dtype=np.float64))


def run(*args):
    p = subprocess.run([sys.executable, os.path.join(HERE, "targets.py"), *args], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def expect(args, want, what):
    """Runs targets.py on args; True when it exits 0 and prints every string of want."""
    rc, txt = run(*args)
    fails = [w for w in want if w not in txt]
    if rc != 0 or fails:
        print(txt)
        print(f"FAIL: {what}: missing", fails, "rc", rc)
        return False
    return True


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rep = os.path.join(out, "synthetic.h5")
    F, N, P = "cuda-fused", "cublas-naive", "cuda-fused-planned"
    write(rep, [
        # big shape at 71% (passes 70%), faster than naive only in stream mode
        ("big/ok", F, "graph", "passed", "prefill", 110.0, 78.1, 0.71),
        ("big/ok", F, "stream", "passed", "prefill", 100.0, 78.1, 0.70),
        ("big/ok", N, "stream", "passed", "prefill", 105.0, 78.1, 0.60),
        # big shape at 69% (fails 70%), slower than naive
        ("big/slow", F, "graph", "passed", "chunked", 120.0, 82.8, 0.69),
        ("big/slow", N, "stream", "passed", "chunked", 119.0, 82.8, 0.70),
        # decode exactly at the 2x+5 limit (passes), and just over it (fails)
        ("dec/at", F, "graph", "passed", "decode", 9.0, 2.0, 0.2),
        ("dec/at", N, "stream", "passed", "decode", 30.0, 2.0, 0.1),
        ("dec/over", F, "graph", "passed", "decode", 9.01, 2.0, 0.2),
        ("dec/over", N, "stream", "passed", "decode", 30.0, 2.0, 0.1),
        # an incorrect fused row is not timed and counts nowhere
        ("bad", F, "graph", "incorrect", "decode", 0.0, 1.0, 0.0),
        # the call with a prebuilt plan: its own count, not the target's
        # (dec/over meets 2x+5 only with the plan reused; dec/at's planned row is over)
        ("dec/at", P, "graph", "passed", "decode", 9.5, 2.0, 0.2),
        ("dec/over", P, "graph", "passed", "decode", 8.0, 2.0, 0.2),
    ])
    if not expect([rep], [">= 70% of copy bandwidth (floor >= 50 us): 1 of 2", "decode within 2x floor + 5 us: 1 of 2",
                          "faster than cublas-naive: 3 of 4", "| bad | 1.00 | incorrect |",
                          "(not a target) with the tile plan built once and reused (cuda-fused-planned): 1 of 2",
                          "plan reused: 8.00 us, 2x+5 yes", "plan reused: 9.50 us, 2x+5 NO"], "verdicts"):
        return 1
    # --shortfalls: one row per missed target, with what the target needs (big/slow:
    # 82.8 / 0.7 = 118.29 us for 70%, naive's 119 us; dec/over: 2 x 2 + 5 = 9 us)
    if not expect([rep, "--shortfalls"], ["| big/slow | 70% | 120.00 | 118.29 | 1.01 | bandwidth |",
                                          "| big/slow | vs naive | 120.00 | 119.00 | 1.01 | vs naive |",
                                          "| dec/over | 2x+5 | 9.01 | 9.00 | 1.00 | plan-tiled decode |",
                                          "3 missed targets on 2 shapes"], "shortfalls"):
        return 1
    # with the latency probe's attributes: round trips of the decode rows
    with h5py.File(rep, "a") as f:
        f.attrs["graph_launch_floor_us"] = 3.0
        f.attrs["dependent_load_us"] = 0.5
    if not expect([rep], ["graph launch 3.00 us + 0.500 us per dependent DRAM load",
                          "2x+5: yes (round trips: limit 12, fused 12)", "2x+5: NO (round trips: limit 12, fused 12)"],
                  "latency columns"):
        return 1
    # with percentiles: a naive margin inside the p10-p90 spread is flagged,
    # one outside it is not (big/ok: fused stream 100 vs naive 105, 5%;
    # big/slow: fused 120 vs naive 119, -0.8%)
    with h5py.File(rep, "r") as f:
        med = f["rows"]["median_us"][:]
        shapes = [x.decode() if isinstance(x, bytes) else x for x in f["rows"]["shape"][:]]
    p10, p90 = med * 0.99, med * 1.01  # 2% spread everywhere ...
    for i, sh in enumerate(shapes):
        if sh == "big/slow":
            p10[i], p90[i] = med[i] * 0.98, med[i] * 1.02  # ... 4% on big/slow
    with h5py.File(rep, "a") as f:
        f["rows"].create_dataset("p10_us", data=p10)
        f["rows"].create_dataset("p90_us", data=p90)
    if not expect([rep], ["vs naive: NO (within spread: margin -0.8%, p10-p90 4.0%)",
                          "on 1 shape(s) the margin, either way, is within the run's p10-p90 spread"], "spread flag"):
        return 1
    rc, txt = run(rep)
    if "big/ok" in txt and "within spread" in [l for l in txt.splitlines() if l.startswith("| big/ok")][0]:
        print(txt)
        print("FAIL: a 5% margin against a 2% spread must not be flagged")
        return 1
    # with the staging probe's table: printed, 0-byte baselines left out
    with h5py.File(rep, "a") as f:
        g = f.create_group("staging_probe")
        g.create_dataset("case", data=np.array(["b132.t128.0B", "b132.t128.4096B"], dtype=object),
                         dtype=h5py.string_dtype())
        g.create_dataset("bytes_per_block", data=np.array([0, 4096], dtype=np.int64))
        g.create_dataset("staging_us", data=np.array([0.0, 1.25]))
        g.create_dataset("gbps_per_block", data=np.array([0.0, 3.2768]))
    if not expect([rep], ["| b132.t128.4096B | 4096 | 1.25 | 3.3 |", "staging probe in this run"], "staging table"):
        return 1
    # the probe floor of decode rows: launch 3.0 + load 0.5 + stage(bytes / 132 SMs)
    with h5py.File(rep, "a") as f:
        del f["staging_probe"]
        g = f.create_group("staging_probe")
        g.create_dataset("case", data=np.array(["b132.t128.0B", "b132.t128.4096B", "b132.t128.16384B",
                                                "b132.t32.16384B", "b132.t128.16384B.clean"], dtype=object),
                         dtype=h5py.string_dtype())
        g.create_dataset("bytes_per_block", data=np.array([0, 4096, 16384, 16384, 16384], dtype=np.int64))
        g.create_dataset("staging_us", data=np.array([0.0, 1.25, 2.05, 9.0, 0.1]))
        g.create_dataset("gbps_per_block", data=np.array([0.0, 3.3, 8.0, 1.8, 160.0]))
        shapes = [x.decode() if isinstance(x, bytes) else x for x in f["rows"]["shape"][:]]
        nb = np.array([132 * (2000 if sh == "dec/at" else 12288 if sh == "dec/over" else 1 << 20) for sh in shapes],
                      dtype=np.int64)
        f["rows"].create_dataset("bytes", data=nb)
    # dec/at: 2000 B per SM, below the smallest size -> 1.25 -> 4.75 us; dec/over:
    # 12288 B per SM, between 4096 and 16384 -> 1.25 + 0.8 * 2/3 -> 5.28 us.
    if not expect([rep], ["2x+5: yes (round trips: limit 12, fused 12; probe floor 4.8 us)",
                          "2x+5: NO (round trips: limit 12, fused 12; probe floor 5.3 us)"], "probe floor"):
        return 1
    sys.path.insert(0, HERE)
    import targets  # the model's pieces, directly
    curve = targets.per_sm_curve([("b132.t128.4096B", 4096, 1.25, 0), ("b132.t128.16384B", 16384, 2.05, 0),
                                  ("b132.t32.16384B", 16384, 9.0, 0), ("b1.t128.16384B", 16384, 1.5, 0),
                                  ("b132.t128.16384B.s8", 16384, 0.5, 0)])
    checks = [(curve, (132, [(4096, 1.25), (16384, 2.05)])),
              (targets.stage_us(curve[1], 1), 1.25), (targets.stage_us(curve[1], 4096), 1.25),
              (round(targets.stage_us(curve[1], 10240), 6), 1.65),
              (round(targets.stage_us(curve[1], 28672), 6), 2.85),  # extrapolated from the two largest sizes
              (targets.per_sm_curve([("b132.t32.4096B", 4096, 1.0, 0)]), None)]
    for got, want in checks:
        if got != want:
            print(f"FAIL: probe-floor model: got {got}, want {want}")
            return 1
    for shape, target, want in [("M/tp8/r128/decode/T1/A8", "2x+5", "T=1"), ("M/tp1/r64/decode/T1/A8", "2x+5", "T=1"),
                                ("M/tp1/r128/chunked/T2048/A4/zipf", "70%", "rank 128"),
                                ("M/tp8/r128/decode/T64/A8", "2x+5", "rank 128"),
                                ("M/tp8/r64/decode/T64/A8", "2x+5", "plan-tiled decode"),
                                ("M/tp8/r64/prefill/T4096/A4/seg4", "70%", "bandwidth"),
                                ("M/tp1/r16/decode/T512/A64", "70%", "bandwidth")]:
        if targets.shape_class(shape, None, target) != want:
            print(f"FAIL: shape_class({shape}, {target}) = {targets.shape_class(shape, None, target)}, want {want}")
            return 1
    rc, txt = run(rep)
    if "b132.t128.0B" in txt:
        print(txt)
        print("FAIL: the 0-byte baseline case must not be printed as a staging row")
        return 1
    if not expect([rep, "--baseline", rep], ["| big/ok | 78.10 | 110.00 | 71.0 | 110.00 | 1.00 |"], "baseline column"):
        return 1
    bad = os.path.join(out, "not-throughput.h5")
    with h5py.File(bad, "w") as f:
        f.attrs["kind"] = "error-report"
    rc, txt = run(bad)
    if rc == 0 or "is not a throughput-report" not in txt:
        print(txt)
        print("FAIL: a non-throughput report must be refused")
        return 1
    if len(sys.argv) > 2:
        rc, txt = run(sys.argv[2])
        with h5py.File(sys.argv[2], "r") as f:
            impl = [x.decode() if isinstance(x, bytes) else x for x in f["rows"]["implementation"][:]]
            mode = [x.decode() if isinstance(x, bytes) else x for x in f["rows"]["mode"][:]]
        shapes = sum(1 for i, m in zip(impl, mode) if i == F and m == "graph")
        if rc != 0 or not re.search(rf"faster than cublas-naive: \d+ of {shapes}(\n|;)", txt):
            print(txt)
            print(f"FAIL: committed report ({shapes} fused graph rows)")
            return 1
    print("targets.py self-test ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
