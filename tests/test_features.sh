#!/usr/bin/env bash
# Feature-learning measures (features/, docs/conventions.md "Feature learning"), run by
# tests/test_features_dump.c (ntkhpc + a measurement that records theta_t and the probe batch):
#   - fc nets (tanh with biases; ntk, sp, mup at widths 16 and 32; Fashion-MNIST, full Nk x Nk Gram
#     on an uneven probe batch of 22) at 1 rank and at 4 ranks in one group: every measure against
#     numpy on the net's own weights to 1e-10 (features_check.py), and the two rank counts agree;
#   - relu without biases on teacher data (k = 3), the logit-traced kernel, matrix-free lambda with
#     no kernel distance (features/ assembles the Gram matrices itself), every 2nd step and the
#     last (odd) step, 2 ranks: against numpy;
#   - the same killed (kill -9 at an exact step) and restarted: its output equals the uninterrupted
#     one bit for bit (the spectral-norm warm starts come back from the checkpoint);
#   - off by default: no features group; the WRN: rows of NaN.
set -uo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}" "${NTK_FEATURES_BIN:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
run() { dump_run "$@"; }
numpy_check() { py_check features_check.py "$@"; }

a=(-arch fc -depth 2 -activation tanh -sigma_b 0.1 -widths 16,32 -seeds 1 -params ntk,sp,mup -base_width 16 -etas 0.1
   -dataset fashion_mnist -n_train 30 -n_test 10 -ntk_batch 22 -steps 4 -features_every 1)
check "fc 1 rank" run 1 "$tmp/a1.h5" "${a[@]}"
check "fc 4 ranks" run 4 "$tmp/a4.h5" "${a[@]}" -ranks_per_run 4
numpy_check "$tmp/a1.h5" "$tmp/a4.h5"
check "ntkpost.load reads features/ with its schema" env PYTHONPATH="$NTK_SOURCE_DIR/postproc" "$NTK_PYTHON" -c "
import ntkpost, sys
run = ntkpost.load(sys.argv[1]).runs[0]
f, s = run.measurements['features'], run.schema['features']['datasets']
assert f['dz_rms'].shape == (5, 3) and s['dz_rms']['width'] == 3 and s['cka']['units'] == '1', s" "$tmp/a1.h5"

b=(-arch fc -depth 3 -activation relu -bias false -widths 24 -seeds 2 -params ntk,sp -etas 0.2 -dataset teacher
   -teacher_dim 6 -teacher_outputs 3 -n_train 40 -n_test 10 -ntk_batch 15 -ntk_variant traced -ntk_method matfree
   -kernel_distance false -steps 5 -features_every 2 -checkpoint_every 2 -ranks_per_run 2)
check "relu traced 2 ranks" run 2 "$tmp/b.h5" "${b[@]}"
numpy_check "$tmp/b.h5"

# kill -9 while measuring step 5 of run 0: the checkpoint before step 4 holds the vectors of step 2
NTK_FEATURES_KILL_AT_STEP=5 run 2 "$tmp/k.h5" "${b[@]}"
check "the kill landed" test $? -ne 0
check "-restart after the kill" run 2 "$tmp/k.h5" "${b[@]}" -restart
check "restarted output equals the uninterrupted one" "$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/h5same.py" "$tmp/b.h5" "$tmp/k.h5"

# Off by default: no features group, no -features_every in the deck.
check "default run" "$MPIEXEC" -q -n 1 "$NTKHPC" -quiet -output "$tmp/off.h5" -arch fc -depth 1 -widths 8 -etas 0.1 -dataset teacher \
  -n_train 20 -n_test 5 -steps 2
check "off by default" "$NTK_PYTHON" -c "
import h5py, sys
f = h5py.File(sys.argv[1], 'r')
assert 'features' not in f['runs/run_000000'] and b'-features_every' not in f['deck'][()]" "$tmp/off.h5"

# The WRN is not covered: one NaN per layer-valued dataset, the step recorded.
check "wrn run" "$MPIEXEC" -q -n 1 "$NTKHPC" -quiet -output "$tmp/w.h5" -arch wrn -wrn_depth 10 -widths 1 -batch_norm false -etas 0.01 -dataset fashion_mnist \
  -n_train 8 -n_test 4 -ntk_batch 4 -steps 1 -features_every 1
check "wrn rows are NaN" "$NTK_PYTHON" -c "
import h5py, numpy as np, sys
g = h5py.File(sys.argv[1], 'r')['runs/run_000000/features']
assert list(g['step'][()]) == [0, 1]
assert all(np.all(np.isnan(g[k][()])) for k in g if k != 'step')" "$tmp/w.h5"
finish features
