#!/usr/bin/env bash
# Loss landscapes across ranks and after a crash (docs/landscape.md):
#   - 1 and 4 ranks (one rank per point) give the same file bit for bit, the Hessian subgrid's
#     eigenvalues too (each from a cold start); 2 ranks per point on 4 ranks agree to round-off
#     (the eigenvalues, to the solver's tolerance, are not compared there);
#   - kill -9 in the middle of a surface (once the log shows >= 8 finished points), then a rerun,
#     gives the uninterrupted file bit for bit, and the rerun only evaluates what was not done;
#   - bad input: one line "ntkhpc: error: ..." naming the option or file, exit 2, files untouched.
set -uo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
deck="$NTK_SOURCE_DIR/tests/small_sweep.in"
args=(-widths 128 -seeds 3 -params ntk -etas 0.3 -steps 10 -theta_every 5 -n_train 1000 -n_test 200 -progress_seconds 100
      -landscape_steps 0,end -landscape_alpha -1,1,9 -landscape_beta -0.5,1,5 -landscape_paths 0@0:0
      -landscape_hess_every 4 -landscape_hess_batch 40)
run() { # np [options]: foreground, the exit code
  local np=$1; shift
  "$MPIEXEC" -q --oversubscribe -n "$np" "$NTKHPC" "$deck" "${args[@]}" "$@" >>"$tmp/log" 2>&1
}
same() { # a b [rtol]
  if "$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/landscape_same.py" "$1" "$2" --rtol "${3:-0}" >"$tmp/same.log" 2>&1; then ok; else
    bad "$2 differs from $1:"; sed 's/^/    /' "$tmp/same.log" | head -8; fi
}
done_count() { "$NTK_PYTHON" -c "
import h5py, sys
f = h5py.File(sys.argv[1], 'r')
print(sum(int(g['done'][()].sum()) for k in ('surfaces', 'paths') for g in f[k].values()))" "$1"; }

# reference: the sweep and its surfaces on 1 rank
run 1 -output "$tmp/ref.h5" -quiet && ok || { bad "the reference job failed"; tail "$tmp/log"; finish landscape_resume; exit 1; }
total=$(done_count "$tmp/ref.landscape.h5")
check "reference: all 121 points done (2 x 9 x 5 + 31, got $total)" test "$total" -eq 121

# 4 ranks, one per point: bit-identical; 2 ranks per point: round-off
run 4 -output "$tmp/ref.h5" -landscape_from "$tmp/ref.h5" -landscape_output "$tmp/r4.h5" -quiet && ok || bad "4 ranks failed"
same "$tmp/ref.landscape.h5" "$tmp/r4.h5"
run 4 -output "$tmp/ref.h5" -landscape_from "$tmp/ref.h5" -landscape_output "$tmp/g2.h5" -landscape_ranks_per_point 2 -quiet && ok || bad "groups of 2 failed"
"$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/landscape_same.py" "$tmp/ref.landscape.h5" "$tmp/g2.h5" --rtol 1e-12 --skip hess_top >"$tmp/same.log" 2>&1
grep -q "attribute spec differs\|attribute ranks_per_point differs" "$tmp/same.log" && ! grep -v "attribute\|differences" "$tmp/same.log" | grep -q . && ok ||
  { bad "groups of 2 ranks differ beyond 1e-12:"; head -5 "$tmp/same.log"; }

# kill -9 mid-surface: wait for >= 8 finished points in the log, kill the ranks, rerun
klog="$tmp/kill.log"
: >"$klog"
"$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$deck" "${args[@]}" -output "$tmp/ref.h5" -landscape_from "$tmp/ref.h5" \
  -landscape_output "$tmp/k.h5" >"$klog" 2>&1 &
job=$!
for _ in $(seq 1200); do # an observed event, polled: at most 120 s
  (($(grep -c "point .* done" "$klog") >= 8)) && break
  kill -0 "$job" 2>/dev/null || break
  sleep 0.1
done
ranks=$(pgrep -P "$job")
if [[ -n $ranks ]] && (($(grep -c "point .* done" "$klog") >= 8)); then
  kill -9 $ranks 2>/dev/null
  wait "$job" 2>/dev/null
  got=$(done_count "$tmp/k.h5")
  check "the kill landed mid-surface ($got of $total points done)" test "$got" -ge 8 -a "$got" -lt "$total"
  run 2 -output "$tmp/ref.h5" -landscape_from "$tmp/ref.h5" -landscape_output "$tmp/k.h5" && ok || bad "the resumed job failed"
  todo=$(grep -o "[0-9]* to do, into $tmp/k.h5" "$tmp/log" | tail -1 | cut -d' ' -f1)
  check "the rerun resumed ($todo to do of $total, $got done before)" test "$todo" -eq $((total - got))
  same "$tmp/ref.landscape.h5" "$tmp/k.h5"
else
  wait "$job"
  bad "the job ended before 8 points were logged (log: $(tail -2 "$klog"))"
fi

# bad input: one line, exit 2, nothing touched
sum0=$(md5sum <"$tmp/ref.landscape.h5")
refuse() { # expected-message-part [options]
  local want=$1; shift
  "$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$deck" "${args[@]}" -output "$tmp/ref.h5" "$@" >"$tmp/bad.log" 2>&1
  local rc=$?
  local lines
  lines=$(grep -c "^ntkhpc: error:" "$tmp/bad.log")
  if [[ $rc -eq 2 && $lines -eq 1 ]] && grep -q -- "$want" "$tmp/bad.log"; then ok; else bad "$* : exit $rc, $lines error lines: $(head -3 "$tmp/bad.log")"; fi
}
refuse "-landscape_steps" -landscape_from "$tmp/ref.h5" -landscape_steps 0,later
refuse "-landscape_alpha" -landscape_from "$tmp/ref.h5" -landscape_alpha 1,0,5
refuse "-landscape_alpha" -landscape_from "$tmp/ref.h5" -landscape_alpha 0,1,2.5
refuse "-landscape_paths" -landscape_from "$tmp/ref.h5" -landscape_paths 0-1
refuse "-landscape_paths" -landscape_from "$tmp/ref.h5" -landscape_paths 0:7
refuse "-theta_every" -landscape_steps end -theta_every 0 -output "$tmp/other.h5"
refuse "not a finished output" -landscape_from "$tmp/k.h5" -landscape_output "$tmp/x.h5"
refuse "holds other surfaces" -landscape_from "$tmp/ref.h5" -landscape_output "$tmp/ref.landscape.h5" -landscape_seed 2
refuse "landscape_ranks_per_point" -landscape_from "$tmp/ref.h5" -landscape_output "$tmp/y.h5" -landscape_ranks_per_point 3
check "the landscape file is untouched by the refusals" test "$(md5sum <"$tmp/ref.landscape.h5")" = "$sum0"
finish landscape_resume
