#!/usr/bin/env bash
# Batch norm across data-parallel ranks: the tiny WRN sweep of tests/wrn_sweep.in (batch statistics
# summed over the ranks of a run through the Reducer, in training, evaluation, NTK and Hessian) on
# 1 rank and on 4 ranks as one group of 4 must give the same trajectories: train/test to 1e-10
# relative (h5compare.py), lambda_t, sharpness and the most negative Hessian eigenvalue to 1e-7
# (eigensolver tolerance 1e-8).
set -euo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
deck="$NTK_SOURCE_DIR/tests/wrn_sweep.in"
run() { # np out extra-options...
  local np=$1 out=$2
  shift 2
  "$MPIEXEC" --oversubscribe -n "$np" "$NTKHPC" "$deck" -quiet -output "$tmp/$out" "$@" >"$tmp/$out.log" 2>&1 ||
    { echo "FAIL: ntkhpc on $np ranks $*"; cat "$tmp/$out.log"; exit 1; }
}
run 1 wrn1.h5
run 4 wrn4.h5 -ranks_per_run 4
status=0
echo "== wrn with batch norm: 1 rank vs a group of 4"
"$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/h5compare.py" "$tmp/wrn1.h5" "$tmp/wrn4.h5" --rtol 1e-10 --steps 4 --require-all || status=1
"$NTK_PYTHON" - "$tmp/wrn1.h5" "$tmp/wrn4.h5" <<'PY' || status=1
import sys
import h5py
import numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
bad = n = 0
for run in sorted(a["runs"]):
    for grp, fields in (("lambda", ("value", "topk")), ("hessian", ("sharpness", "lambda", "min_eig"))):
        for f in fields:
            x, y = a["runs"][run][grp][f][()], b["runs"][run][grp][f][()]
            n += 1
            ok = x.shape == y.shape and np.all(np.isfinite(x)) and np.allclose(x, y, rtol=1e-7, atol=0)
            if not ok:
                bad += 1
                print(f"FAIL {run} {grp}/{f}: {x} vs {y}")
    if a["runs"][run]["lambda"]["value"].shape[0] < 3:
        bad += 1
        print(f"FAIL {run}: expected 3 lambda records")
print(f"{n - bad} passed, {bad} failed")
sys.exit(1 if bad else 0)
PY
exit $status
