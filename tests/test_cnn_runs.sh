#!/usr/bin/env bash
# The plain CNN (-arch cnn) in the binary, on Fashion-MNIST (tests/cnn_sweep.in: widths 3 and 5,
# ntk and mup, sgd with momentum, lambda_t, the Hessian's sharpness and the linearised model):
#   - 1 rank and 4 ranks as one data-parallel group give the same trajectories: train/test and the
#     linearised model to 1e-10 relative, lambda_t and the Hessian eigenvalues to 1e-7 (eigensolver
#     tolerance 1e-8);
#   - killed with kill -9 while paused at step 4 (the -pause_at_step hook, after the checkpoint of
#     step 3) and restarted: bit for bit the uninterrupted run;
#   - full-batch gd with -kernel_regression -kernel_net cntk: the finite CNNs and the CNTK's width-0
#     run in one file, the same on 1 and 4 ranks; with -activation tanh refused with one line.
set -uo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
source "$NTK_SOURCE_DIR/tests/testlib.sh"
deck="$NTK_SOURCE_DIR/tests/cnn_sweep.in"
args=(-quiet)
source "$NTK_SOURCE_DIR/tests/faultlib.sh"
run() { # np out [options]
  local np=$1 out=$2; shift 2
  "$MPIEXEC" -q --oversubscribe -n "$np" "$NTKHPC" "$deck" "${args[@]}" -output "$out" "$@" >>"$tmp/log" 2>&1
}
py() { "$NTK_PYTHON" - "$@"; }

check "cnn sweep, 1 rank" run 1 "$tmp/r1.h5"
check "cnn sweep, 4 ranks in one group" run 4 "$tmp/r4.h5" -ranks_per_run 4
check "1 and 4 ranks: train/test trajectories to 1e-10" "$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/h5compare.py" "$tmp/r1.h5" "$tmp/r4.h5" \
  --rtol 1e-10 --steps 8 --require-all
check "1 and 4 ranks: lambda_t, Hessian, linearised model" py "$tmp/r1.h5" "$tmp/r4.h5" <<'PY'
import sys
import h5py
import numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
bad = 0
arch = a["config"].attrs["arch"]
assert len(a["runs"]) == 4 and (arch.decode() if isinstance(arch, bytes) else str(arch)) == "cnn", (len(a["runs"]), arch)
for run in sorted(a["runs"]):
    for grp, fields, tol in (("lambda", ("value",), 1e-7), ("hessian", ("sharpness",), 1e-7), ("linearized", ("loss", "rms_f_flin"), 1e-10)):
        for f in fields:
            x, y = a["runs"][run][grp][f][()], b["runs"][run][grp][f][()]
            if not (x.shape == y.shape and len(x) >= 2 and np.all(np.isfinite(x)) and np.allclose(x, y, rtol=tol, atol=0)):
                bad += 1
                print(f"FAIL {run} {grp}/{f}: {x} vs {y}")
sys.exit(1 if bad else 0)
PY

# restart after kill -9: bit for bit
start 2 "$tmp/k.h5" -checkpoint_every 1 -pause_at_step 4
wait_paused "$tmp/k.h5" || bad "no run paused at step 4"
crash || bad "the kill -9 did not land mid-run"
check "-restart after the kill" run 2 "$tmp/k.h5" -checkpoint_every 1 -restart
check "uninterrupted run on 2 ranks" run 2 "$tmp/r2.h5"
check "restarted output equals the uninterrupted one bit for bit" "$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/h5same.py" "$tmp/r2.h5" "$tmp/k.h5"

# the finite CNNs and the CNTK's infinite-width run in one file; 6 training samples on 4 ranks: the
# Cholesky solution comes back from ScaLAPACK in a row layout other than the kernel matrix's
kr=(-quiet -arch cnn -depth 2 -widths 3,5 -seeds 2 -params ntk -sigma_b 0.1 -dataset fashion_mnist -n_train 6 -n_test 4 -optimizer gd
    -eta_factors 0.5 -steps 8 -record_every 2 -test_every 4 -ntk_batch 6 -kernel_regression true -kernel_net cntk -kernel_tile 4)
krun() { # np out [options]
  local np=$1 out=$2; shift 2
  "$MPIEXEC" -q --oversubscribe -n "$np" "$NTKHPC" "${kr[@]}" -output "$out" "$@" >>"$tmp/log" 2>&1
}
check "gd + CNTK kernel run, 1 rank" krun 1 "$tmp/kr1.h5"
check "gd + CNTK kernel run, 4 ranks" krun 4 "$tmp/kr4.h5"
# every dataset (the kernel run's NaN param_norm equal too); lambda_0 is an eigensolve (tolerance 1e-8)
check "finite and kernel runs: the same on 1 and 4 ranks" "$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/h5same.py" "$tmp/kr1.h5" "$tmp/kr4.h5" \
  --rtol 1e-7 --atol 1e-12
check "finite CNNs (widths 3, 5) and the CNTK (width 0) in one file" py "$tmp/kr1.h5" <<'PY'
import sys
import h5py
import numpy as np
f = h5py.File(sys.argv[1], "r")
w = sorted(int(g.attrs["width"]) for g in f["runs"].values())
assert w == [0, 3, 5], w
for g in f["runs"].values():
    acc = g["test/accuracy"][()]
    assert len(acc) >= 2 and np.all(np.isfinite(acc)), acc
    if int(g.attrs["width"]) == 0:
        k = g["kernel"]
        assert np.isfinite(k["lambda0"][0]) and k["lambda0"][0] > 0 and np.isfinite(k["conv_test_accuracy"][0]), dict(k)
        assert np.all(np.diff(k["spectrum"][0]) <= 0) and abs(k["spectrum"][0][0] - k["lambda0"][0]) < 1e-12 * k["lambda0"][0]
print("widths", w, "lambda_0(inf)", [g["kernel/lambda0"][0] for g in f["runs"].values() if int(g.attrs["width"]) == 0])
PY
"$MPIEXEC" -q -n 1 "$NTKHPC" "${kr[@]}" -output "$tmp/bad.h5" -activation tanh >"$tmp/bad.log" 2>&1
rc=$?
check "-kernel_net cntk with a tanh CNN: exit 2, one line" test "$rc" -eq 2 -a "$(grep -c 'ntkhpc: error: option -kernel_regression: needs -activation relu' "$tmp/bad.log")" -eq 1
"$MPIEXEC" -q -n 1 "$NTKHPC" "$deck" "${args[@]}" -output "$tmp/bad.h5" -dataset teacher >"$tmp/bad.log" 2>&1
rc=$?
check "cnn on a non-image dataset: exit 2, one line" test "$rc" -eq 2 -a "$(grep -c 'ntkhpc: error: option -arch: cnn needs an image dataset' "$tmp/bad.log")" -eq 1
check "no output written for the refused decks" test ! -e "$tmp/bad.h5"
((failed)) && tail -40 "$tmp/log"
finish cnn_runs
