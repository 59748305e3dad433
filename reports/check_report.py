#!/usr/bin/env python3
"""Read an mlalora error report with h5py and check it against the documented
schema (reports/README.md): provenance attributes, the /rows table, and that
every row passed. Used by the test suite; handy for CI jobs too.

usage: check_report.py REPORT.h5 [--allow-failures]
"""
import sys

import h5py
import numpy as np

REQUIRED_ATTRS = ["kind", "schema_version", "tool_version", "git_commit", "host", "device", "time_utc",
                  "command_line", "seed"]
REQUIRED_COLUMNS = ["case", "implementation", "side", "dtype", "S", "H", "D_qk", "D_v", "R_kv", "L", "r_max",
                    "disposition", "max_abs_error", "rel_frobenius_error", "max_error_bound_ratio",
                    "nonfinite_introduced", "written_outside", "message"]


def text(a):
    return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a])


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    path, allow = sys.argv[1], "--allow-failures" in sys.argv
    with h5py.File(path, "r") as f:
        missing = [a for a in REQUIRED_ATTRS if a not in f.attrs]
        if missing:
            print(f"{path}: missing provenance attributes {missing}")
            return 1
        kind = f.attrs["kind"]
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind != "error-report":
            print(f"{path}: kind is {kind!r}, expected 'error-report'")
            return 1
        rows = f["rows"]
        columns = rows.attrs["columns"]
        columns = (columns.decode() if isinstance(columns, bytes) else str(columns)).split(",")
        absent = [c for c in REQUIRED_COLUMNS if c not in columns or c not in rows]
        if absent:
            print(f"{path}: missing columns {absent}")
            return 1
        n = int(rows.attrs["num_rows"])
        lengths = {c: rows[c].shape[0] for c in columns}
        if any(v != n for v in lengths.values()):
            print(f"{path}: column lengths differ from num_rows={n}: {lengths}")
            return 1
        disp = text(rows["disposition"][:])
        ratio = rows["max_error_bound_ratio"][:]
        impls = text(rows["implementation"][:])
        for impl in sorted(set(impls)):
            m = impls == impl
            counts = {d: int(np.sum(disp[m] == d)) for d in ["passed", "incorrect", "failed", "not-supported"]}
            print(f"{impl:24s} {counts} max err/bound {ratio[m].max() if m.any() else 0:.3g}")
        bad = np.isin(disp, ["incorrect", "failed"])
        if bad.any() and not allow:
            print(f"{path}: {int(bad.sum())} incorrect/failed rows")
            return 1
        print(f"{path}: {n} rows, schema ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
