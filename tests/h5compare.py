#!/usr/bin/python3
"""Compares the trajectories of two ntkhpc output files run by run.

Runs are matched by (width, seed, param, eta), not by index, so sweeps that list different
learning rates can be compared. Exit status 0 if every matched trajectory agrees to --rtol
relative over the first --steps steps; prints "N passed, N failed".

  h5compare.py a.h5 b.h5 [--rtol 1e-10] [--steps 20] [--require-all]
"""
import argparse
import sys

import h5py
import numpy as np

FIELDS = [("train", "loss"), ("train", "accuracy"), ("train", "param_norm"), ("train", "dist_init"),
          ("train", "lr"), ("test", "loss"), ("test", "accuracy")]


def runs_by_key(f):
    out = {}
    for name, g in f["runs"].items():
        a = g.attrs
        key = (int(a["width"]), int(a["seed"]), a["param"].decode() if isinstance(a["param"], bytes) else str(a["param"]),
               float(a["eta"]))
        out[key] = name
    return out


def compare(path_a, path_b, rtol, steps, require_all):
    passed = failed = 0
    with h5py.File(path_a, "r") as fa, h5py.File(path_b, "r") as fb:
        ka, kb = runs_by_key(fa), runs_by_key(fb)
        common = sorted(set(ka) & set(kb))
        if require_all and set(ka) != set(kb):
            print(f"FAIL: the files hold different runs: {sorted(set(ka) ^ set(kb))}")
            failed += 1
        if not common:
            print("FAIL: no run in common")
            return passed, failed + 1
        sa, sb = fa["summary"][:], fb["summary"][:]
        for key in common:
            ga, gb = fa["runs"][ka[key]], fb["runs"][kb[key]]
            ra, rb = sa[int(ga.attrs["run"])], sb[int(gb.attrs["run"])]
            if ra["status"] != rb["status"] or ra["status"] < 2:
                print(f"FAIL {key}: status {ra['status']} vs {rb['status']} (2 = done, 3 = diverged)")
                failed += 1
                continue
            for grp, field in FIELDS:
                step = ga[grp]["step"][:]
                n = int(np.sum((step >= 0) & (step <= steps)))
                xa, xb = ga[grp][field][:n], gb[grp][field][:n]
                if n == 0 or not np.array_equal(step[:n], gb[grp]["step"][:n]):
                    print(f"FAIL {key} {grp}/{field}: no rows or different steps")
                    failed += 1
                    continue
                if field != "accuracy" and not np.all(np.isfinite(xa)):
                    print(f"FAIL {key} {grp}/{field}: non-finite values")
                    failed += 1
                    continue
                ok = np.allclose(xa, xb, rtol=rtol, atol=0, equal_nan=True)
                err = np.max(np.abs(xa - xb) / np.maximum(np.abs(xa), 1e-300)) if n else 0
                if ok:
                    passed += 1
                else:
                    print(f"FAIL {key} {grp}/{field}: max relative difference {err:.3e} > {rtol:g}")
                    failed += 1
    return passed, failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rtol", type=float, default=1e-10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--require-all", action="store_true")
    args = ap.parse_args()
    p, f = compare(args.a, args.b, args.rtol, args.steps, args.require_all)
    print(f"{p} passed, {f} failed")
    sys.exit(1 if f else 0)


if __name__ == "__main__":
    main()
