#!/usr/bin/env bash
# The empirical NTK at initialisation against the analytic infinite-width one (ntk_analytic/),
# run by tests/test_features_dump.c (ntkhpc + a measurement recording theta_0 and the NTK batch):
# numpy recomputes the analytic kernel from the closed forms and the empirical Gram matrix from an
# explicit Jacobian (ntk_analytic_check.py), every record to 1e-10, and the finite-width errors
# must be below 4/sqrt(n):
#   - one hidden layer of width 16384: relu with biases, erf, identity (teacher data, d = 8, k = 3),
#     full variant at 1 and 4 ranks (they agree), traced at 2 ranks;
#   - three hidden relu layers of width 1024;
#   - no record where there is no analytic kernel (sp in the same deck: NaN; the WRN: no group).
set -uo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}" "${NTK_FEATURES_BIN:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
run() { dump_run "$@"; }
numpy_check() { py_check ntk_analytic_check.py "$@"; }
data=(-dataset teacher -teacher_dim 8 -teacher_outputs 3 -n_train 10 -n_test 4 -ntk_batch 10 -etas 0.1 -steps 0 -seeds 4)

for act in relu erf identity; do
  a=(-arch fc -depth 1 -activation "$act" -bias true -sigma_w 1.5 -sigma_b 0.2 -widths 16384 "${data[@]}")
  check "$act width 16384, 1 rank" run 1 "$tmp/$act.1.h5" "${a[@]}"
  if [[ $act == relu ]]; then
    check "$act width 16384, 4 ranks" run 4 "$tmp/$act.4.h5" "${a[@]}" -ranks_per_run 4
    numpy_check "$tmp/$act.1.h5" "$tmp/$act.4.h5"
    check "$act traced, 2 ranks" run 2 "$tmp/$act.t.h5" "${a[@]}" -ranks_per_run 2 -ntk_variant traced
    numpy_check "$tmp/$act.t.h5"
  else
    numpy_check "$tmp/$act.1.h5"
  fi
done

b=(-arch fc -depth 3 -activation relu -bias false -sigma_w 1.4142135623730951 -widths 1024 "${data[@]}")
check "relu depth 3 width 1024, 2 ranks" run 2 "$tmp/deep.h5" "${b[@]}" -ranks_per_run 2
numpy_check "$tmp/deep.h5"

check "ntk and sp in one deck" run 1 "$tmp/sp.h5" -arch fc -depth 1 -widths 64 -params ntk,sp "${data[@]}"
check "sp records NaN, ntk a value" "$NTK_PYTHON" -c "
import h5py, numpy as np, sys
f = h5py.File(sys.argv[1]); p = f['summary']['param']
for i, q in enumerate(p):
    g = f['runs/run_%06d/ntk_analytic' % i]
    v = [g[k][0] for k in ('lambda0', 'lambda0_inf', 'kernel_rel_err')]
    assert np.all(np.isnan(v)) if q == 1 else np.all(np.isfinite(v)), (q, v)" "$tmp/sp.h5"
check "two widths, two seeds" run 1 "$tmp/two.h5" -arch fc -depth 1 -widths 64,256 "${data[@]}" -seeds 0,1
check "the width_convergence figure: a slope per error in its caption" env PYTHONPATH="$NTK_SOURCE_DIR/postproc" "$NTK_PYTHON" -c "
import sys, ntkpost
from ntkpost import figures, infinite
an = ntkpost.Analysis(ntkpost.load(sys.argv[1]))
fits = infinite.width_fits(an)
assert set(fits) == {'kernel_rel_err', 'lambda0_rel_err'} and all(f['n_seeds'] == 2 and f['slope'] < 0 for f in fits.values()), fits
fig = figures.FIGURES['width_convergence'](an)
assert fig is not None and 'slope' in fig.ntk_caption, figures.FIGURES['width_convergence'].last_skip
fig.savefig(sys.argv[2])" "$tmp/two.h5" "$tmp/wc.png"
check "wrn run" "$MPIEXEC" -q -n 1 "$NTKHPC" -quiet -output "$tmp/w.h5" -arch wrn -wrn_depth 10 -widths 1 -batch_norm false -etas 0.01 \
  -dataset fashion_mnist -n_train 4 -n_test 2 -ntk_batch 4 -steps 0
check "no ntk_analytic group for the WRN" "$NTK_PYTHON" -c "
import h5py, sys
assert 'ntk_analytic' not in h5py.File(sys.argv[1])['runs/run_000000']" "$tmp/w.h5"
finish ntk_analytic
