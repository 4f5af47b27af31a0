#!/usr/bin/env bash
# kill -9 at random moments (docs/checkpoint.md, docs/robustness.md): a small sweep on 2 ranks
# (2 groups of 1), killed NTK_KILLS times (default 3; the long form: 50) and restarted with
# -restart until it completes; every completed output must equal an uninterrupted run's bit for
# bit (h5same.py with rtol = atol = 0).
#
# The moments are random over observed events, from the seed NTK_KILL_SEED (default 1; reported):
# each job is started with -pause_at_step N (N uniform in 1..119); once a run has paused (its marker
# names run and step), the ranks are killed either while it waits there ("paused"; the other
# group is wherever it is) or right after releasing it, 0..49 ms later ("running": mid-step,
# mid-measurement or mid-checkpoint). A round is 1..3 kills then a restart to the end. A kill that
# finds the job already ended is reported and not counted. Each kill is reported on a line of its
# own (and appended to NTK_KILL_LOG if set).
set -uo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
source "$NTK_SOURCE_DIR/tests/testlib.sh"
deck="$NTK_SOURCE_DIR/tests/small_sweep.in"
args=(-quiet -widths 64 -seeds 1,2 -params ntk -etas 0.3,1 -steps 120 -ntk_method exact -ntk_batch 20 -lambda_every 5
      -lambda_dense_steps 12 -spectrum_steps 0,30 -momentum 0.5 -checkpoint_every 4 -keep_checkpoints true)
source "$NTK_SOURCE_DIR/tests/faultlib.sh"
K=${NTK_KILLS:-3} seed=${NTK_KILL_SEED:-1}
report() { echo "$*"; [[ -n ${NTK_KILL_LOG:-} ]] && echo "$*" >>"$NTK_KILL_LOG"; return 0; }
RANDOM=$seed
report "kill campaign: $K kills, seed $seed"

"$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$deck" "${args[@]}" -output "$tmp/ref.h5" >>"$tmp/log" 2>&1 && ok ||
  { bad "the reference run failed"; tail "$tmp/log"; exit 1; }

kills=0 rounds=0 attempts=0 missed=0 t0=$SECONDS
while ((kills < K && attempts < 4 * K)); do
  rounds=$((rounds + 1))
  out="$tmp/round$rounds.h5"
  opts=()
  n=$((1 + RANDOM % 3))
  for ((j = 0; j < n && kills < K; j++)); do
    attempts=$((attempts + 1))
    step=$((1 + RANDOM % 119)) mode=$((RANDOM % 2)) delay_ms=$((RANDOM % 50))
    start 2 "$out" -pause_at_step "$step" "${opts[@]}"
    if ! wait_paused "$out"; then
      wait "$job"; rc=$?
      ((rc == 0)) || { bad "round $rounds: the job exited $rc before pausing"; tail -3 "$tmp/log"; }
      report "  round $rounds: the job ended before pausing (nothing left past step $step)"
      break
    fi
    what="paused at $paused"
    if ((mode == 1)); then
      release
      sleep "$(printf '0.%03d' "$delay_ms")"
      what="released at $paused, killed ${delay_ms} ms later"
    fi
    if crash; then
      kills=$((kills + 1))
      report "  kill $kills: round $rounds, -pause_at_step $step, $what"
      opts=(-restart)
    else
      missed=$((missed + 1))
      report "  round $rounds: the job ended before the kill ($what): not counted"
      break
    fi
  done
  rm -f "$out".paused_run_*
  if ((${#opts[@]})); then
    "$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$deck" "${args[@]}" -output "$out" -restart >>"$tmp/log" 2>&1 && ok ||
      { bad "the final restart of round $rounds failed"; tail -3 "$tmp/log"; }
  fi
  if "$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/h5same.py" "$tmp/ref.h5" "$out" --rtol 0 --atol 0 >"$tmp/same.log" 2>&1; then ok; else
    bad "round $rounds differs from the uninterrupted run:"; sed 's/^/    /' "$tmp/same.log" | head -8; fi
done
((kills == K)) && ok || bad "only $kills of $K kills landed in $attempts attempts"
report "kill campaign: $kills kills landed ($missed missed) in $rounds rounds, each round bit-identical to the uninterrupted run: $failed failed checks, $((SECONDS - t0)) s"
finish kill_campaign
