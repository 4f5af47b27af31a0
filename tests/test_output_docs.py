#!/usr/bin/python3
"""docs/output.md and the output file agree: every group, dataset, compound member and attribute
of a real ntkhpc file (with every measurement on) is named in backticks in docs/output.md, and
every trajectory dataset the docs' table lists (`group/name` rows) is in the file, with the type
the table gives. The HDF5 dimension-scale internals (CLASS, NAME, DIMENSION_LIST, REFERENCE_LIST)
and the per-run numbering are not names to document.

  test_output_docs.py FILE.h5 DOCS.md
"""
import re
import sys

import h5py

SCALE_INTERNALS = {"CLASS", "NAME", "DIMENSION_LIST", "REFERENCE_LIST", "_Netcdf4Dimid"}


def main():
    path, docs_path = sys.argv[1], sys.argv[2]
    with open(docs_path) as f:
        docs = f.read()
    docs = re.sub(r"```.*?```", "", docs, flags=re.S)  # code blocks are examples, not documentation
    quoted = set()
    for line in docs.splitlines():  # backticks pair within a line
        quoted.update(re.findall(r"`([^`]+)`", line))
    words = set()
    for q in quoted:  # `train/loss`, `hessian/topk`, `hessian/resid`: every piece counts
        words.add(q)
        words.update(re.split(r"[/, ]+", q))
    missing, seen = [], 0

    def need(name, where):
        nonlocal seen
        seen += 1
        if name not in words:
            missing.append(f"{where}: `{name}` is not in {docs_path}")

    with h5py.File(path, "r") as f:
        measurements = f.attrs["measurements"]
        measurements = (measurements.decode() if isinstance(measurements, bytes) else str(measurements)).split(",")

        def visit(name, obj):
            parts = name.split("/")
            if parts[0] == "runs" and len(parts) >= 2:
                parts = parts[2:]  # /runs/run_%06d/...: the run number is not a name
                if not parts:
                    for a in obj.attrs:
                        need(a, f"/runs/run_*/ attribute")
                    return
            leaf = parts[-1]
            if len(parts) == 1 and parts[0] in measurements:
                need(leaf, "group")
            elif len(parts) == 1 and re.match(r"^(%s)_" % "|".join(measurements), leaf) and name.startswith("runs/"):
                need("<group>_<dataset>", f"index scale {leaf}")  # documented by pattern
            else:
                need(leaf, name)
            if isinstance(obj, h5py.Dataset) and obj.dtype.names:
                for m in obj.dtype.names:
                    need(m, f"{name} member")
            for a in obj.attrs:
                if a not in SCALE_INTERNALS:
                    need(a, f"{name} attribute")

        for a in f.attrs:
            need(a, "root attribute")
        f.visititems(visit)
        # the other way: each `group/name` row of the trajectory table is in run_000000
        run = f["runs"][sorted(f["runs"])[0]]
        for line in docs.splitlines():
            m = re.match(r"^\| (`[a-z_]+/[a-z_]+`(?:, `[a-z_]+/[a-z_]+`)*) \| (int64|float64) \|", line)
            if not m:
                continue
            for q in re.findall(r"`([a-z_]+)/([a-z_]+)`", m.group(1)):
                seen += 1
                g, d = q
                if g not in measurements:
                    missing.append(f"docs list {g}/{d} but the file has no measurement {g}")
                elif d not in run[g] or run[g][d].dtype.name != m.group(2):
                    missing.append(f"docs list {g}/{d} as {m.group(2)}, the file has "
                                   f"{run[g][d].dtype.name if d in run[g] else 'nothing'}")
    for m in sorted(set(missing)):
        print("FAIL:", m)
    print(f"test_output_docs: {seen - len(missing)} passed, {len(missing)} failed")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
