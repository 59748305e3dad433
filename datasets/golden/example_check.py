#!/usr/bin/env python3
"""Check an "outside" implementation against the golden files, end to end.

The outside implementation here is plain numpy in float32, following SPEC
(absorbed-MLA kv_b_proj LoRA correction, factored form):

    q-side:  q_nope_out[t,h,:]   += s * (q_nope[t,h,:]      @ B_kc[h]) @ A
    v-side:  attn_bmm_out[t,h,:] += s * (attn_latent[t,h,:] @ A^T)     @ B_vc[h]^T

for every live segment g (rows seg_indptr[g]..seg_indptr[g+1], slot
l = weight_indices[g], rank r = lora_ranks[l], s = scalings[l]), physical row
t = permutation[i] when there is a permutation. Rank-0 slots and rows no
segment covers are left untouched. Like a GPU kernel, it rounds the rank-r
intermediate and the final output to the problem's dtype (bf16 by bit
manipulation, f16 through np.float16).

For each golden file it writes a candidate file (the two outputs) and runs
`mlalora check --model factored` on it. Files alternate between the two
candidate forms: the full strided storage buffer (1-D) and the logical
(S, H, N) arrays.

Why the "factored" model: numpy's float32 matmul goes to BLAS sgemm (or
numpy's own float32 loop for odd layouts); either way every product is
accumulated in float32 with round-to-nearest, in some order, possibly with
FMA. The factored model's bound (gamma(K) * |x| @ |W1| @ |W2| with
u = 2^-24) holds for any summation order and FMA only removes roundings, so no
looser model is needed. (numpy's pairwise summation applies to np.sum, which
is not used for the contractions here.)

Usage:
    example_check.py [MLALORA_BIN] [golden.h5 ...]
MLALORA_BIN defaults to $MLALORA_BIN; the golden files default to every
golden_*.h5 next to this script. Exit status: 0 if every check passed,
otherwise the first non-zero exit status of `mlalora check` (1: a check
failed, 2: bad input, 3: I/O error), or 2 for usage errors here.
"""
import glob
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np


def round_to(dtype, x):
    """Round float32 values to the dtype (round to nearest even), returned as float32."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "f32":
        return x
    if dtype == "f16":
        return x.astype(np.float16).astype(np.float32)
    if dtype == "bf16":
        bits = np.ascontiguousarray(x).view(np.uint32)
        lsb = (bits >> np.uint32(16)) & np.uint32(1)
        rounded = ((bits + np.uint32(0x7FFF) + lsb) & np.uint32(0xFFFF0000)).view(np.float32)
        return np.where(np.isnan(x), x, rounded)
    raise ValueError("unknown dtype " + dtype)


def strided(buf, shape, strides):
    """The logical (d0, d1, d2) view of a storage buffer with element strides."""
    item = buf.itemsize
    return np.lib.stride_tricks.as_strided(buf, shape=shape, strides=tuple(int(s) * item for s in strides))


def compute_candidate(f):
    """Return (q_nope_out storage, attn_bmm_out storage, dtype, logical shapes) for a golden file."""
    p = f["problem"]
    S, H, Dqk, Dv, Rkv, L, rmax = (int(p.attrs[k]) for k in ("S", "H", "D_qk", "D_v", "R_kv", "L", "r_max"))
    dtype = p.attrs["dtype"].decode()
    F = Dqk + Dv
    strides = f["problem/strides"][...]  # rows: q_nope, q_nope_out, attn_latent, attn_bmm_out, A, B
    shapes = [(S, H, Dqk), (S, H, Rkv), (S, H, Rkv), (S, H, Dv), (L, rmax, Rkv), (L, H * F, rmax)]
    names = ["q_nope", "q_nope_out", "attn_latent", "attn_bmm_out", "A", "B"]
    bufs = {n: f["tensors/" + n][...] for n in names}  # float32 storage buffers
    view = {n: strided(bufs[n], shapes[i], strides[i]) for i, n in enumerate(names)}

    # Outputs start as copies of the base storage (gaps included) and are
    # updated through strided views, so everything not written keeps its bits.
    q_out = bufs["q_nope_out"].copy()
    v_out = bufs["attn_bmm_out"].copy()
    q_out_v = strided(q_out, shapes[1], strides[1])
    v_out_v = strided(v_out, shapes[3], strides[3])

    ranks = f["problem/lora_ranks"][...]
    scalings = f["problem/scalings"][...]
    indptr = f["problem/seg_indptr"][...]
    widx = f["problem/weight_indices"][...]
    perm = f["problem/permutation"][...]
    has_perm = int(p.attrs["has_permutation"]) == 1
    for g in range(int(p.attrs["num_segments"])):  # entries past the live count are ignored
        l = int(widx[g])
        r = int(ranks[l])
        s = np.float32(scalings[l])
        logical = np.arange(indptr[g], indptr[g + 1])
        if r == 0 or logical.size == 0:
            continue  # rank 0 / empty segment: nothing changes
        t = perm[logical] if has_perm else logical
        A = np.ascontiguousarray(view["A"][l, :r, :])  # (r, R_kv)
        for h in range(H):
            B_kc = np.ascontiguousarray(view["B"][l, h * F:h * F + Dqk, :r])  # (D_qk, r)
            B_vc = np.ascontiguousarray(view["B"][l, h * F + Dqk:(h + 1) * F, :r])  # (D_v, r)
            x = np.ascontiguousarray(view["q_nope"][t, h, :])  # (n, D_qk)
            y = round_to(dtype, x @ B_kc)  # rank-r intermediate, rounded like a kernel's
            q_out_v[t, h, :] = round_to(dtype, q_out_v[t, h, :] + s * (y @ A))
            a = np.ascontiguousarray(view["attn_latent"][t, h, :])  # (n, R_kv)
            y = round_to(dtype, a @ A.T)
            v_out_v[t, h, :] = round_to(dtype, v_out_v[t, h, :] + s * (y @ B_vc.T))
    return q_out, v_out, q_out_v, v_out_v, dtype


def write_candidate(path, q_out, v_out, q_view, v_view, dtype, logical):
    with h5py.File(path, "w") as c:
        c.attrs["name"] = "numpy-example"  # a Python str: stored as UTF-8
        c.attrs["dtype"] = dtype
        if logical:  # the (S, H, N) arrays
            c["q_nope_out"] = np.ascontiguousarray(q_view, dtype=np.float32)
            c["attn_bmm_out"] = np.ascontiguousarray(v_view, dtype=np.float32)
        else:  # the full storage buffers, same strides as the golden file
            c["q_nope_out"] = q_out.astype(np.float32)
            c["attn_bmm_out"] = v_out.astype(np.float32)


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    goldens = [a for a in argv if a.endswith(".h5")]
    others = [a for a in argv if not a.endswith(".h5")]
    if len(others) > 1:
        print(__doc__)
        return 2
    binary = others[0] if others else os.environ.get("MLALORA_BIN", "")
    if not binary or not os.access(binary, os.X_OK):
        print("example_check.py: give the mlalora binary as an argument or in MLALORA_BIN (got %r)" % binary,
              file=sys.stderr)
        return 2
    if not goldens:
        goldens = sorted(glob.glob(os.path.join(here, "golden_*.h5")))
    if not goldens:
        print("example_check.py: no golden files found in " + here, file=sys.stderr)
        return 2
    status = 0
    with tempfile.TemporaryDirectory(prefix="mlalora_candidates_") as tmp:
        for k, golden in enumerate(goldens):
            with h5py.File(golden, "r") as f:
                q_out, v_out, q_view, v_view, dtype = compute_candidate(f)
            logical = k % 2 == 1
            cand = os.path.join(tmp, os.path.basename(golden).replace("golden_", "candidate_"))
            write_candidate(cand, q_out, v_out, q_view, v_view, dtype, logical)
            print("== %s (%s, candidate form: %s)" % (golden, dtype, "logical (S,H,N)" if logical else "storage"),
                  flush=True)
            rc = subprocess.call([binary, "check", "--golden", golden, "--candidate", cand, "--model", "factored"])
            if rc != 0 and status == 0:
                status = rc
    print("example_check.py: %s" % ("all passed" if status == 0 else "FAILED (exit %d)" % status))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
