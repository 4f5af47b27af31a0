#!/usr/bin/env bash
# The NTK and the loss Hessian along training, end to end (inputs/fc_hessian.in at one width):
# at initialisation the sharpness s_0 is close to lambda_0 (H = G + R and G's top eigenvalue is
# lambda; R is small at width 512); in a lazy run both stay put; in the catapult phase the loss
# spikes and the sharpness falls together with lambda, ending below 2/eta. Also: the SLQ density's
# weights sum to 1 and its nodes lie within the extreme eigenvalues, and the Hutchinson trace is
# finite with a positive standard error (the exact moment identities are in test_hessian.c).
set -euo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$MPIEXEC" --oversubscribe -n 2 "$NTKHPC" "$NTK_SOURCE_DIR/inputs/fc_hessian.in" -quiet -widths 512 -steps 20 -hess_every 10 -hess_min_eig true -ntk_batch 128 -hess_batch 128 \
  -density_steps 0,20 -slq_probes 2 -slq_lanczos 30 -trace_probes 10 -ranks_per_run 1 -output "$tmp/h.h5" >"$tmp/log" 2>&1 ||
  { cat "$tmp/log"; exit 1; }
"$NTK_PYTHON" - "$tmp/h.h5" <<'PY'
import sys, h5py, numpy as np
passed = failed = 0
def check(cond, msg):
    global passed, failed
    if cond: passed += 1
    else:
        failed += 1; print("FAIL:", msg)
with h5py.File(sys.argv[1], "r") as f:
    for row in f["summary"][:]:
        g = f["runs"][f"run_{int(row['run']):06d}"]
        h = g["hessian"]
        steps, s, lam, lr = h["step"][:], h["sharpness"][:], h["lambda"][:], h["lr"][:]
        mn = h["min_eig"][:]
        c = row["eta_factor"]
        tag = f"eta*lambda0={c:g}"
        check(np.all(steps >= 0) and steps[-1] == 20, f"{tag}: hessian steps {steps}")
        check(np.all(np.isfinite(s)) and np.all(np.isfinite(lam)) and np.all(np.isfinite(mn)), f"{tag}: non-finite values")
        check(np.all(h["nconv"][:] >= 1), f"{tag}: Hessian solver did not converge at some step")
        r0 = s[0] / lam[0]
        check(0.97 < r0 < 1.08, f"{tag}: s_0/lambda_0 = {r0:.4f}, expected close to 1 at width 512")
        check(np.all(mn <= 1e-8 * s), f"{tag}: most negative eigenvalue {mn.max():g} should be <= 0")
        check(np.all(np.abs(mn) < s), f"{tag}: |min eig| should be below the sharpness")
        if c < 2:  # lazy
            # finite width: the kernel drifts slowly (about 9% over 25 steps at width 512)
            check(abs(s[-1] / s[0] - 1) < 0.2, f"{tag}: lazy sharpness moved {s[0]:.4g} -> {s[-1]:.4g}")
            check(abs(lam[-1] / lam[0] - 1) < 0.2, f"{tag}: lazy lambda moved {lam[0]:.4g} -> {lam[-1]:.4g}")
            check(row["peak_ratio"] <= 1.0 + 1e-12, f"{tag}: lazy loss rose (peak ratio {row['peak_ratio']:.3g})")
        else:     # catapult
            check(row["peak_ratio"] > 2, f"{tag}: no loss spike (peak ratio {row['peak_ratio']:.3g})")
            check(s[-1] < 0.5 * s[0], f"{tag}: sharpness did not fall: {s[0]:.4g} -> {s[-1]:.4g}")
            check(lam[-1] < 0.5 * lam[0], f"{tag}: lambda did not fall: {lam[0]:.4g} -> {lam[-1]:.4g}")
            check(s[-1] < 2 / lr[-1], f"{tag}: final sharpness {s[-1]:.4g} not below 2/eta = {2 / lr[-1]:.4g}")
            check(0.8 < s[-1] / lam[-1] < 1.25, f"{tag}: s_T/lambda_T = {s[-1] / lam[-1]:.3f} far from 1")
        d = g["density"]
        for i in range(d["step"].shape[0]):
            w, x = d["weights"][i], d["nodes"][i]
            tr, se = d["trace"][i], d["trace_stderr"][i]
            check(abs(w.sum() - 1) < 1e-10, f"{tag}: SLQ weights sum to {w.sum():.15f}")
            check(np.isfinite(tr) and se > 0, f"{tag}: trace {tr} +- {se}")
            check(x.max() <= s.max() * 1.02 and x.min() >= mn.min() * 1.02 - 1e-8 * s.max(),
                  f"{tag}: SLQ nodes [{x.min():.3g}, {x.max():.3g}] outside the extreme eigenvalues")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
