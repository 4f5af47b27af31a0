#!/usr/bin/env bash
# Issue #18 through the ntkhpc binary: -loss xent recorded in the output; -freeze keeps the readout
# bit for bit; -lr_schedule exp and onecycle (against torch's OneCycleLR); fc batch norm the same on 1
# and 4 data-parallel ranks; the Li-Arora pair of runs (docs/li_arora.md) with the same losses; bad
# values of the new options give one line and exit 2.
set -uo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
py="$NTK_SOURCE_DIR/tests/seeds_runs_check.py"
S=("$NTK_SOURCE_DIR/tests/small_sweep.in" -widths 48 -seeds 3 -params ntk -quiet)
run() { "$MPIEXEC" -q --oversubscribe -n "$@"; }

run 1 "$NTKHPC" "${S[@]}" -etas 0.5 -loss xent -output "$tmp/xent.h5" && ok || bad "xent run"
check "xent recorded" "$NTK_PYTHON" "$py" xent "$tmp/xent.h5"
run 1 "$NTKHPC" "${S[@]}" -etas 0.5 -freeze dense2 -features_every 5 -momentum 0.5 -weight_decay 1e-3 -output "$tmp/freeze.h5" && ok || bad "freeze run"
check "frozen readout" "$NTK_PYTHON" "$py" freeze "$tmp/freeze.h5"
run 1 "$NTKHPC" "${S[@]}" -etas 0.05 -lr_schedule exp -lr_exp_factor 1.07 -output "$tmp/exp.h5" && ok || bad "exp run"
check "exp schedule" "$NTK_PYTHON" "$py" exp "$tmp/exp.h5" 0.05 1.07
run 1 "$NTKHPC" "${S[@]}" -etas 0.3 -steps 37 -lr_schedule onecycle -onecycle_pct 0.25 -onecycle_div 10 -onecycle_final_div 100 \
  -output "$tmp/oc.h5" && ok || bad "onecycle run"
check "onecycle schedule" "$NTK_PYTHON" "$py" onecycle "$tmp/oc.h5" 0.3 37 0.25 10 100

# the loss peak of a catapult (eta = 3/lambda_0)
printf '%s %s\n' -arch fc -depth 2 -activation relu -widths 256 -seeds 1 -params ntk -eta_factors 3 -dataset fashion_mnist \
  -n_train 128 -n_test 64 -steps 30 -record_every 1 -lambda_every 10 -quiet >"$tmp/peak.in"
run 1 "$NTKHPC" "$tmp/peak.in" -loss_peak true -output "$tmp/peak.h5" && ok || bad "peak run"
check "loss peak" "$NTK_PYTHON" "$py" peak "$tmp/peak.h5"

# fc batch norm: statistics over the whole batch, whatever the number of ranks (lambda matrix-free)
BN=(-etas 0.2 -fc_batch_norm true -lambda_every 5 -hess_every 10)
run 1 "$NTKHPC" "${S[@]}" "${BN[@]}" -output "$tmp/bn1.h5" && ok || bad "bn run, 1 rank"
run 4 "$NTKHPC" "${S[@]}" "${BN[@]}" -ranks_per_run 4 -output "$tmp/bn4.h5" && ok || bad "bn run, 4 ranks"
check "bn 1 vs 4 ranks" "$NTK_PYTHON" "$py" same "$tmp/bn1.h5" "$tmp/bn4.h5" 1e-10
run 4 "$NTKHPC" "${S[@]}" "${BN[@]}" -bn_no_affine true -ranks_per_run 4 -optimizer sgd -batch_size 64 -output "$tmp/bnsgd4.h5" && ok || bad "bn sgd 4"
run 1 "$NTKHPC" "${S[@]}" "${BN[@]}" -bn_no_affine true -optimizer sgd -batch_size 64 -output "$tmp/bnsgd1.h5" && ok || bad "bn sgd 1"
check "bn sgd 1 vs 4 ranks" "$NTK_PYTHON" "$py" same "$tmp/bnsgd1.h5" "$tmp/bnsgd4.h5" 1e-10

# Li-Arora: weight decay at constant eta vs the exponential schedule with the exact start; the net is
# scale-invariant (no biases, eps-0 affine-free batch norm, readout frozen), so the losses agree.
mu=0.9 wd=5e-4 eta=0.2
read -r alpha etab fac vinit < <("$NTK_PYTHON" -c "
import math; mu, wd, eta = $mu, $wd, $eta; b = 1 + mu - eta * wd; a = (b + math.sqrt(b * b - 4 * mu)) / 2
print('%.17g %.17g %.17g %.17g' % (a, eta / a, a ** -2, (a - 1) / (eta * a)))")
LA=(-bias false -fc_batch_norm true -bn_no_affine true -bn_eps 0 -freeze dense2 -momentum $mu -steps 60 -record_every 1 -scale_inv_every 10)
run 1 "$NTKHPC" "${S[@]}" "${LA[@]}" -etas $eta -weight_decay $wd -output "$tmp/la_a.h5" && ok || bad "Li-Arora run A"
run 2 "$NTKHPC" "${S[@]}" "${LA[@]}" -etas $etab -lr_schedule exp -lr_exp_factor $fac -momentum_init $vinit -ranks_per_run 2 \
  -output "$tmp/la_b.h5" && ok || bad "Li-Arora run B"
check "Li-Arora pair (alpha $alpha)" "$NTK_PYTHON" "$py" liarora "$tmp/la_a.h5" "$tmp/la_b.h5" "$alpha" 1e-9

# bad input: one line naming the option, exit 2, no output file
while IFS='|' read -r text args; do
  rm -f "$tmp/bad.h5"
  err=$(run 1 "$NTKHPC" "${S[@]}" -etas 0.1 $args -output "$tmp/bad.h5" 2>&1 >/dev/null)
  rc=$?
  if ((rc == 2)) && [[ $err == *"$text"* ]] && (($(wc -l <<<"$err") == 1)) && [[ ! -e $tmp/bad.h5 ]]; then ok; else bad "bad input '$args': rc $rc, '$err'"; fi
done <<'ROWS'
option -freeze: no tensor named "dense9"|-freeze dense9
option -freeze: no tensor named "dense2.X"|-freeze dense2.W,dense2.X
option -lr_exp_factor: only used with -lr_schedule exp|-lr_exp_factor 1.01
option -onecycle_div: only used with -lr_schedule onecycle|-onecycle_div 5
option -loss: xent needs one-hot classification targets|-loss xent -center_targets true
option -loss|-loss hinge
option -momentum_init: only used with -momentum > 0|-momentum_init 0.1
option -bn_eps: only used with batch norm|-bn_eps 0
option -fc_batch_norm: only used with -arch fc|-arch wrn -fc_batch_norm true
option -bn_eps: -1 is outside|-fc_batch_norm true -bn_eps -1
ROWS
finish test_seeds_runs
