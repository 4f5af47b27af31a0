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

# A loss driven to NaN (not inf): relu with eta 1e200 overflows the weights to +-inf in one step,
# so the step-1 forward pass sums inf - inf. Full-batch gd and sgd, 1 and 2 ranks: the run is
# divergent at step 1, the summary says so (L_peak inf, L_final the NaN), and lambda_final is
# not measured (its bit clear), never a value measured on NaN weights.
nan=(-quiet -activation relu -widths 64 -seeds 1 -params ntk -steps 20 -etas 1e200 -lambda_every 1)
for opt in "gd" "sgd -batch_size 50"; do
  for np in 1 2; do
    "$MPIEXEC" --oversubscribe -n $np "$NTKHPC" "$deck" "${nan[@]}" -optimizer $opt -output "$tmp/nan_${opt%% *}_$np.h5" >"$tmp/nan.log" 2>&1 ||
      { cat "$tmp/nan.log"; exit 1; }
  done
done
"$NTK_PYTHON" - "$tmp"/nan_gd_1.h5 "$tmp"/nan_gd_2.h5 "$tmp"/nan_sgd_1.h5 "$tmp"/nan_sgd_2.h5 <<'PY' || exit 1
import sys, h5py, numpy as np
LOSS0, PEAK, FINAL, ACC, TEST, LAM0, LAMT, WINDOW = (1 << i for i in range(8))
failed = 0
def check(cond, msg):
    global failed
    if not cond:
        failed += 1; print("FAIL:", msg)
rows = {}
for path in sys.argv[1:]:
    with h5py.File(path, "r") as f:
        s = f["summary"][0]
        g = f["runs/run_000000"]
        loss, step = g["train/loss"][()], g["train/step"][()]
        m = int(s["measured"])
        check(s["status"] == 3 and s["phase"] == 2, f"{path}: status {s['status']} phase {s['phase']}, want diverged/divergent")
        check(s["steps_done"] == 1 and s["n_train_records"] == 2, f"{path}: steps_done {s['steps_done']} records {s['n_train_records']}")
        check(step[1] == 1 and np.isnan(loss[1]), f"{path}: step 1's recorded loss {loss[1]} is not the NaN")
        check(np.isfinite(s["loss0"]) and s["loss0"] == loss[0], f"{path}: loss0 {s['loss0']} vs recorded {loss[0]}")
        check(np.isposinf(s["loss_peak"]) and np.isnan(s["loss_final"]), f"{path}: peak {s['loss_peak']} final {s['loss_final']}")
        check(m & LOSS0 and m & PEAK and m & FINAL and m & LAM0 and m & WINDOW, f"{path}: measured bits {m:#x}")
        check(not m & LAMT and np.isnan(s["lambda_final"]) and np.isnan(s["eta_lambda_final"]), f"{path}: lambda_final {s['lambda_final']} bits {m:#x}")
        check(np.isfinite(s["lambda0"]) and s["eta_lambda0"] == s["eta"] * s["lambda0"], f"{path}: lambda0 {s['lambda0']}")
        lam = g["lambda/topk"][()][:, 0]
        check(np.isfinite(lam[0]) and np.all(np.isnan(lam[1:])), f"{path}: lambda recorded after the NaN step: {lam[:3]}")
        rows[path] = s
# rank-count independent: every summary field but the clock (loss0 and lambda0 to round-off)
p = sys.argv[1:]
for a, b in ((p[0], p[1]), (p[2], p[3])):
    for k in rows[a].dtype.names:
        if k == "wall_seconds": continue
        x, y = rows[a][k], rows[b][k]
        same = np.isclose(x, y, rtol=1e-12, atol=0, equal_nan=True) if np.issubdtype(np.asarray(x).dtype, np.floating) else x == y
        check(same, f"{k}: {x} on 1 rank, {y} on 2")
print(f"NaN divergence: {failed} failed")
sys.exit(1 if failed else 0)
PY
