#!/usr/bin/env bash
# A run whose loss blows up stops early, is recorded as divergent, and leaves the other runs of
# the sweep exactly as they are without it.
set -euo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
deck="$NTK_SOURCE_DIR/tests/small_sweep.in"
common=(-quiet -widths 64 -seeds 1 -params ntk -steps 30)
"$MPIEXEC" --oversubscribe -n 2 "$NTKHPC" "$deck" "${common[@]}" -etas 0.3,400 -output "$tmp/mixed.h5" >"$tmp/mixed.log" 2>&1 ||
  { cat "$tmp/mixed.log"; exit 1; }
"$MPIEXEC" --oversubscribe -n 1 "$NTKHPC" "$deck" "${common[@]}" -etas 0.3 -output "$tmp/alone.h5" >"$tmp/alone.log" 2>&1 ||
  { cat "$tmp/alone.log"; exit 1; }
"$NTK_PYTHON" - "$tmp/mixed.h5" <<'PY' || exit 1
import sys, h5py, numpy as np
passed = failed = 0
def check(cond, msg):
    global passed, failed
    if cond: passed += 1
    else:
        failed += 1; print("FAIL:", msg)
with h5py.File(sys.argv[1], "r") as f:
    s = f["summary"][:]
    big = s[s["eta"] == 400][0]
    ok = s[s["eta"] == 0.3][0]
    check(big["status"] == 3, f"eta 400 status {big['status']}, expected 3 (diverged)")
    check(big["steps_done"] < 30, f"eta 400 ran {big['steps_done']} steps; a divergent run must stop early")
    check(not np.isfinite(big["loss_final"]) or big["loss_final"] > 1e6 * big["loss0"], "eta 400 final loss is not a blow-up")
    check(ok["status"] == 2 and ok["steps_done"] == 30, f"eta 0.3: status {ok['status']} steps {ok['steps_done']}")
    g = f["runs"][f"run_{int(big['run']):06d}"]["train"]
    n = int(big["n_train_records"])
    check(np.all(np.isnan(g["loss"][n:])), "rows after divergence must stay NaN (unwritten)")
    check(np.all(g["step"][:n] >= 0), "written rows carry their steps")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
"$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/h5compare.py" "$tmp/mixed.h5" "$tmp/alone.h5" --rtol 0 --steps 30
