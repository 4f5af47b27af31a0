#!/usr/bin/env bash
# The linearised model (linearized/, docs/conventions.md "The linearised model and the
# infinite-width limit"), run by tests/test_features_dump.c (ntkhpc + a measurement that records
# theta_t and the probe batch, here the whole training set):
#   - tanh fc nets with biases, ntk and mup (the lr-weighted updates), full-batch gd with momentum
#     and weight decay: train loss, accuracy, RMS(f - f_lin) and |theta_lin - theta_0| against numpy
#     with an explicit Jacobian (linearized_check.py), at 1 rank and 4 ranks in one group, which agree;
#   - killed with kill -9 at an exact step and restarted: bit-identical to the uninterrupted run;
#   - a catapult learning rate (eta lambda_0 = 3): the linearised model's loss grows by the factor
#     (eta lambda_0 - 1)^2 per step that its frozen kernel Theta_0 gives;
#   - off by default: no linearized group.
set -uo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}" "${NTK_FEATURES_BIN:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
run() { dump_run "$@"; }
numpy_check() { py_check linearized_check.py "$@"; }

a=(-arch fc -depth 2 -activation tanh -sigma_b 0.1 -widths 16 -seeds 3 -params ntk,mup -base_width 8 -etas 0.1
   -dataset fashion_mnist -n_train 20 -n_test 10 -ntk_batch 20 -optimizer gd -momentum 0.9 -weight_decay 0.001 -steps 12
   -linearized true -linearized_every 1 -test_every 4 -checkpoint_every 3)
check "fc 1 rank" run 1 "$tmp/a1.h5" "${a[@]}"
check "fc 4 ranks" run 4 "$tmp/a4.h5" "${a[@]}" -ranks_per_run 4
numpy_check "$tmp/a1.h5" "$tmp/a4.h5"

# kill -9 while measuring step 7 of run 0: its checkpoint before step 6 holds theta_lin and the velocity
NTK_FEATURES_KILL_AT_STEP=7 run 2 "$tmp/k.h5" "${a[@]}" -ranks_per_run 2
check "the kill landed" test $? -ne 0
check "-restart after the kill" run 2 "$tmp/k.h5" "${a[@]}" -ranks_per_run 2 -restart
run 2 "$tmp/a2.h5" "${a[@]}" -ranks_per_run 2
check "restarted output equals the uninterrupted one" "$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/h5same.py" "$tmp/a2.h5" "$tmp/k.h5"

# Above eta lambda_0 = 2 the linearised model's loss grows by (eta lambda_0 - 1)^2 per step in the
# end (its kernel is Theta_0 forever), every 4th step recorded; the network's is its own.
c=(-arch fc -depth 1 -activation relu -widths 64 -seeds 0 -params ntk -eta_factors 3 -dataset fashion_mnist -n_train 30
   -n_test 10 -ntk_batch 30 -steps 24 -linearized true -linearized_every 4 -diverge_factor 1e30)
check "catapult learning rate" run 1 "$tmp/c.h5" "${c[@]}"
check "its loss grows like (eta lambda_0 - 1)^2 per step" "$NTK_PYTHON" -c "
import h5py, numpy as np, sys
f = h5py.File(sys.argv[1]); g = f['runs/run_000000/linearized']; s = f['summary'][0]
L, st = g['loss'][()], g['step'][()]
rate = (L[-1] / L[-2]) ** (1 / (st[-1] - st[-2]))
want = (s['eta'] * s['lambda0'] - 1) ** 2
print('    loss', L, 'rate per step', rate, 'theory', want)
assert np.all(np.isfinite(L)) and st[-1] == 24 and abs(rate / want - 1) < 0.02, (rate, want)" "$tmp/c.h5"

check "the linearized figure draws the catapult run" env PYTHONPATH="$NTK_SOURCE_DIR/postproc" "$NTK_PYTHON" -c "
import sys, ntkpost
from ntkpost import figures
an = ntkpost.Analysis(ntkpost.load(sys.argv[1]))
fig = figures.FIGURES['linearized'](an)
assert fig is not None and 'linearisation' in fig.ntk_caption, figures.FIGURES['linearized'].last_skip
fig.savefig(sys.argv[2])" "$tmp/c.h5" "$tmp/lin.png"

# Off by default: no linearized group, nothing in the deck.
check "default run" run 1 "$tmp/off.h5" -arch fc -depth 1 -widths 8 -etas 0.1 -dataset teacher -n_train 10 -n_test 5 -ntk_batch 10 -steps 2
check "no linearized group by default" "$NTK_PYTHON" -c "
import h5py, sys
f = h5py.File(sys.argv[1])
assert 'linearized' not in f['runs/run_000000'] and b'-linearized' not in f['deck'][()]" "$tmp/off.h5"
finish
