#!/usr/bin/python3
"""Compares two ntkhpc landscape files: every dataset bit for bit (NaN equals NaN), or to --rtol,
and every attribute except the root's "source" (the path of the sweep output).

  landscape_same.py a.h5 b.h5 [--rtol 0] [--skip hess_top]
"""
import argparse
import sys

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rtol", type=float, default=0.0)
    ap.add_argument("--skip", default="", help="comma-separated dataset names not compared (an eigensolver's tolerance-level values)")
    args = ap.parse_args()
    bad = []
    with h5py.File(args.a, "r") as A, h5py.File(args.b, "r") as B:
        names = []
        A.visit(names.append)
        other = []
        B.visit(other.append)
        if sorted(names) != sorted(other):
            bad.append("different objects: %s" % sorted(set(names) ^ set(other)))
        for n in ["/"] + names:
            if n not in B:
                continue
            for k, v in A[n].attrs.items():
                if n == "/" and k == "source":
                    continue
                w = B[n].attrs.get(k)
                if w is None or not np.array_equal(np.asarray(v), np.asarray(w)):
                    bad.append("%s attribute %s differs" % (n, k))
            if isinstance(A[n], h5py.Dataset) and n.split("/")[-1] not in args.skip.split(","):
                x, y = A[n][()], B[n][()]
                if x.shape != y.shape:
                    bad.append("%s: shapes %s %s" % (n, x.shape, y.shape))
                elif args.rtol == 0 or x.dtype.kind != "f":
                    if not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                        bad.append("%s differs (%d values)" % (n, int(np.sum(~((x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x != y)))))
                else:
                    s = max(np.nanmax(np.abs(x)) if x.size else 0, 1e-300)
                    e = np.nanmax(np.abs(x - y)) / s if x.size else 0
                    if not (e <= args.rtol) or not np.array_equal(np.isnan(x), np.isnan(y)):
                        bad.append("%s differs by %.3g relative" % (n, e))
    for b in bad[:10]:
        print(b)
    print("same" if not bad else "%d differences" % len(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
