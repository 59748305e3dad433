#!/usr/bin/env python3
"""Summarise an Nsight Compute source page (ncu -i REP --page source --csv
--print-source sass): the instructions with the most warp-stall samples,
with their address and the stall reasons that dominate them, and the
totals per reason over the kernel.
usage: source_stalls.py SOURCE.csv [TOP]"""
import csv
import sys


def num(x):
    try:
        return float(str(x).replace(",", ""))
    except ValueError:
        return 0.0


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"#"') or l.startswith('"Address"')
                  or l.startswith('"Source"')), None)
    if start is None:
        print("source_stalls.py: no source table header found in", path)
        print("\n".join(lines[:10]))
        return 1
    rows = list(csv.DictReader(lines[start:]))
    if not rows:
        print("source_stalls.py: empty source table")
        return 1
    cols = list(rows[0].keys())
    total_col = next((c for c in cols if c.startswith("Warp Stall Sampling (All")), None)
    reason_cols = [c for c in cols if c.startswith("stall_") or (c.startswith("Warp Stall") and "All" not in c
                                                                 and "Not-issued" not in c)]
    if total_col is None:
        print("columns:", cols)
        return 1
    total = sum(num(r[total_col]) for r in rows)
    executed = sum(1 for r in rows if num(r.get("Instructions Executed", 0)) > 0)
    print(f"{len(rows)} SASS instructions ({executed} executed at least once), {total:.0f} stall samples ({total_col})")
    per_reason = {c: sum(num(r[c]) for r in rows) for c in cols if c.startswith("stall_") and "Not Issued" not in c}
    all_reasons = sum(per_reason.values())
    if all_reasons > 0:
        print("stall samples per reason, whole kernel:")
        for c, v in sorted(per_reason.items(), key=lambda kv: -kv[1])[:10]:
            print(f"  {c:24s} {v:8.0f} {100 * v / all_reasons:5.1f}%")
    print(f"the {top} instructions with the most samples (offset from the kernel's first instruction):")
    ranked = sorted(rows, key=lambda r: -num(r[total_col]))[:top]
    src_col = "Source" if "Source" in cols else cols[1]
    addr_col = "Address" if "Address" in cols else cols[0]

    def offset(r):
        try:
            return f"{int(r[addr_col], 16) - int(rows[0][addr_col], 16):#07x}"
        except (ValueError, KeyError):
            return str(r.get(addr_col, ""))[-8:]

    for r in ranked:
        reasons = sorted(((num(r[c]), c) for c in reason_cols if num(r[c]) > 0), reverse=True)[:2]
        why = ", ".join(f"{c.replace('Warp Stall Sampling ', '')}={v:.0f}" for v, c in reasons)
        print(f"{num(r[total_col]):7.0f} {100 * num(r[total_col]) / max(total, 1):5.1f}%  {offset(r):>8}  "
              f"{r.get(src_col, '')[:70]:<70} {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
