#!/usr/bin/python3
"""Compares two ntkhpc output files completely: every group, dataset and attribute, bit for bit
(NaN equals NaN), except wall-clock fields (root attribute "created", /summary wall_seconds,
/instances seconds, the kernel runs' assembly_seconds) and the /deck lines of options that do not change results (output paths,
timing, checkpoint options, -restart, -ranks_per_run, -grad_overlap, -grad_bucket_mb, -grad_sum, -grad_node_ranks, -data_shared). With --rtol/--atol > 0
floating-point values
may differ by that much (a different number of ranks), and world_size is not compared. With
--ignore-schema the attributes that describe the measurements' schema (root "measurements", and
"units" and "description" anywhere) are not compared either. Dimension scales are compared by
their names (the reference attributes that implement them hold file addresses): that compares a file against one
written before the schema attributes existed.

  h5same.py a.h5 b.h5 [--rtol 0] [--atol 0] [--ignore-schema]
"""
import argparse
import sys

import h5py
import numpy as np

WALL_FIELDS = {"wall_seconds", "seconds"}
WALL_DATASETS = {"assembly_seconds"}  # the kernel runs' Gram assembly time: only its shape is compared
SCHEMA_ATTRS = {"measurements", "units", "description"}
# Dimension scales: object references, which point at addresses that differ between equal files;
# the dimensions are compared by their names instead.
REFERENCE_ATTRS = {"DIMENSION_LIST", "REFERENCE_LIST"}
IGNORED_DECK_KEYS = {"-output", "-overwrite", "-flush_seconds", "-progress_seconds", "-quiet", "-checkpoint_every",
                     "-checkpoint_minutes", "-checkpoint_dir", "-restart", "-ranks_per_run",
                     "-grad_overlap", "-grad_bucket_mb", "-grad_sum", "-grad_node_ranks", "-data_shared"}


def deck_lines(raw):
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return [l for l in text.splitlines() if l.split() and l.split()[0] not in IGNORED_DECK_KEYS]


def same_array(a, b, tol):
    if a.shape != b.shape or a.dtype != b.dtype:
        return False, f"shape/dtype {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
    if a.dtype.names:  # compound: field by field, wall-clock fields skipped
        for f in a.dtype.names:
            if f in WALL_FIELDS:
                continue
            ok, why = same_array(a[f], b[f], tol)
            if not ok:
                return False, f"field {f}: {why}"
        return True, ""
    if a.dtype.kind == "f":
        if tol == (0, 0):
            ok = np.array_equal(a, b, equal_nan=True)
        else:
            ok = np.allclose(a, b, rtol=tol[0], atol=tol[1], equal_nan=True)
        if not ok:
            d = np.abs(a - b)[np.isfinite(a) & np.isfinite(b)]
            return False, f"max abs difference {d.max() if d.size else 'nan-pattern'}"
        return True, ""
    return (np.array_equal(a, b), "values differ")


def compare(pa, pb, tol, ignore_schema=False):
    problems = []
    with h5py.File(pa, "r") as fa, h5py.File(pb, "r") as fb:
        def attrs(path, oa, ob):
            ka, kb = set(oa.attrs) - REFERENCE_ATTRS, set(ob.attrs) - REFERENCE_ATTRS
            if isinstance(oa, h5py.Dataset):
                la, lb = [d.label for d in oa.dims], [d.label for d in ob.dims]
                if la != lb:
                    problems.append(f"{path}: dimensions {la} vs {lb}")
            if ignore_schema:
                ka, kb = ka - SCHEMA_ATTRS, kb - SCHEMA_ATTRS
            if ka != kb:
                problems.append(f"{path}: attributes {sorted(ka ^ kb)} in one file only")
            for k in sorted(ka & kb):
                if path == "/" and (k == "created" or (tol != (0, 0) and k in ("world_size", "ranks_per_run"))):
                    continue
                ok, why = same_array(np.asarray(oa.attrs[k]), np.asarray(ob.attrs[k]), tol)
                if not ok:
                    problems.append(f"{path} attribute {k}: {why}")

        def walk(path, ga, gb):
            attrs(path, ga, gb)
            na, nb = set(ga), set(gb)
            if na != nb:
                problems.append(f"{path}: members {sorted(na ^ nb)} in one file only")
            for n in sorted(na & nb):
                oa, ob = ga[n], gb[n]
                p = path.rstrip("/") + "/" + n
                if isinstance(oa, h5py.Group):
                    walk(p, oa, ob)
                    continue
                attrs(p, oa, ob)
                if p == "/deck":
                    if deck_lines(oa[()]) != deck_lines(ob[()]):
                        problems.append("/deck differs")
                    continue
                if n in WALL_DATASETS:
                    if oa.shape != ob.shape:
                        problems.append(f"{p}: shape {oa.shape} vs {ob.shape}")
                    continue
                ok, why = same_array(oa[()], ob[()], tol)
                if not ok:
                    problems.append(f"{p}: {why}")

        walk("/", fa, fb)
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rtol", type=float, default=0.0)
    ap.add_argument("--atol", type=float, default=0.0)
    ap.add_argument("--ignore-schema", action="store_true")
    args = ap.parse_args()
    problems = compare(args.a, args.b, (args.rtol, args.atol), args.ignore_schema)
    for p in problems[:20]:
        print("FAIL:", p)
    print("identical" if not problems else f"{len(problems)} differences", "(rtol %g, atol %g)" % (args.rtol, args.atol))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
