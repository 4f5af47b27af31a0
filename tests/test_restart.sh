#!/usr/bin/env bash
# Checkpoints, exact restart and signals (docs/checkpoint.md):
#   (kill -9 at random moments, restarted until the job completes, bit for bit: test_kill_campaign.sh)
#   - a restart on other rank counts (1 rank; 4 ranks in groups of 2) equals it to round-off;
#   - with warm-started matrix-free lambda and Hessian solves too (warm starts are checkpointed);
#   - SIGUSR1 to mpirun and SIGTERM to the ranks: exit code 3, checkpoints, -restart matches;
#     SIGTERM to mpirun: the ranks checkpoint (mpirun itself exits 1), -restart matches;
#   - refused with one line and exit 2, output and checkpoints untouched: a foreign deck's
#     checkpoint, a truncated and a corrupted one, an existing output without -restart;
#   - -sweep_part/-sweep_parts: the parts' runs equal the whole sweep's;
#   - an eigensolver that does not converge is recorded as such and the run goes on.
# Every kill and signal acts on an observed event: a run paused at a step by the -pause_at_step test
# hook (tests/faultlib.sh), never after a guessed time.
set -uo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
same() { # a b [rtol atol]
  if "$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/h5same.py" "$1" "$2" --rtol "${3:-0}" --atol "${4:-0}" >"$tmp/same.log" 2>&1; then ok; else
    bad "$2 differs from $1:"; sed 's/^/    /' "$tmp/same.log" | head -8; fi
}
deck="$NTK_SOURCE_DIR/tests/small_sweep.in"
args=(-quiet -widths 64 -seeds 1,2 -params ntk -etas 0.3,1 -steps 120 -ntk_method exact -ntk_batch 20 -lambda_every 5
      -lambda_dense_steps 12 -spectrum_steps 0,30 -momentum 0.5 -checkpoint_every 4 -keep_checkpoints true)
run() { # np output [more options]: runs in the foreground, returns ntkhpc's exit code
  local np=$1 out=$2; shift 2
  "$MPIEXEC" -q --oversubscribe -n "$np" "$NTKHPC" "$deck" "${args[@]}" -output "$out" "$@" >>"$tmp/log" 2>&1
}
source "$NTK_SOURCE_DIR/tests/faultlib.sh"
md5() { cat "$@" | md5sum; }

# ---- the uninterrupted reference
run 2 "$tmp/ref.h5" && ok || { bad "the reference run failed"; tail "$tmp/log"; exit 1; }

# ---- restart on other rank counts: equal to round-off
for layout in "1 1" "4 2"; do
  np=${layout% *} rpr=${layout#* }
  out="$tmp/ranks$np.h5"
  start 2 "$out" -pause_at_step 60
  wait_paused "$out" || bad "no run paused at step 60"
  crash || bad "a kill -9 did not land mid-run"
  run "$np" "$out" -restart -ranks_per_run "$rpr" && ok || bad "restart on $np ranks (groups of $rpr) failed"
  same "$tmp/ref.h5" "$out" 1e-10 1e-14 # residuals ~1e-16 differ in their own round-off
done

# ---- matrix-free lambda and the Hessian (sharpness, most negative eigenvalue) are warm-started
# from the previous solve's eigenvectors: the checkpoint keeps those vectors, so two kills and a
# restart still give the uninterrupted trajectory bit for bit
mf=(-ntk_method matfree -spectrum_steps 0 -hess_every 5 -hess_batch 20 -hess_nev 2 -hess_min_eig true)
run 2 "$tmp/mf_ref.h5" "${mf[@]}" && ok || bad "the matrix-free reference run failed"
for k in 1 2; do # the first kill at step 33 of a run (between two Hessian steps), the second at 71
  start 2 "$tmp/mf.h5" "${mf[@]}" -pause_at_step $((k == 1 ? 33 : 71)) $( ((k > 1)) && echo -restart)
  wait_paused "$tmp/mf.h5" || bad "no run paused"
  crash || bad "a kill -9 did not land mid-run"
done
run 2 "$tmp/mf.h5" "${mf[@]}" -restart && ok || bad "the matrix-free restart failed"
same "$tmp/mf_ref.h5" "$tmp/mf.h5"

# ---- signals: finish the step, checkpoint, exit 3; -restart completes bit for bit
for how in "USR1 mpirun" "TERM ranks" "TERM mpirun"; do
  sig=${how% *} to=${how#* }
  out="$tmp/sig_${sig}_$to.h5"
  : >"$tmp/log"
  # The signal goes while a run waits at step 8 of 120 (-pause_at_step): the job cannot have ended;
  # the signal releases the pause, the step is finished and checkpointed.
  start 2 "$out" -pause_at_step 8
  wait_paused "$out" || bad "no run paused at step 8"
  if [[ $to == mpirun ]]; then kill -"$sig" "$job"; else kill -"$sig" $(pgrep -P "$job"); fi
  wait "$job"
  rc=$?
  if [[ $how == "TERM mpirun" ]]; then
    # Open MPI 4.1 forwards SIGTERM and SIGKILLs the ranks about a second later, so whether they
    # finish their checkpoint is a race (docs/checkpoint.md: use SIGUSR1); mpirun exits 1. What
    # must hold is that -restart then completes from the last checkpoint and matches.
    if [[ $rc -eq 1 ]]; then ok; else bad "SIGTERM to mpirun: exit $rc (want 1)"; tail -5 "$tmp/log"; fi
  elif [[ $rc -eq 3 ]] && grep -q "stopped by a signal" "$tmp/log" && [[ -e "$out.ckpt/sweep.h5" ]]; then ok; else
    bad "SIG$sig to $to: exit $rc (want 3, a message and checkpoints)"; tail -5 "$tmp/log"; fi
  # A stopped job's output is still <output>.partial (renamed only when the job ends well), readable.
  if [[ $how == "USR1 mpirun" ]]; then
    if [[ ! -e $out ]] && "$NTK_PYTHON" -c 'import sys, h5py; h5py.File(sys.argv[1], "r")["runs"]' "$out.partial" 2>/dev/null; then ok; else
      bad "SIGUSR1: the output of a stopped job is not a readable $out.partial (or $out exists)"; fi
    cp -r "$out.ckpt" "$tmp/stopped.ckpt" && cp "$out.partial" "$tmp/stopped.h5"
  fi
  run 2 "$out" -restart && ok || bad "-restart after SIG$sig failed"
  same "$tmp/ref.h5" "$out"
done

# ---- refusals: one line, exit 2, output and checkpoints untouched
refuse() { # why expected-text output [options]
  local why=$1 text=$2 out=$3; shift 3
  local before after
  before=$(md5 "$out" "$out.ckpt"/*)
  "$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$deck" "${args[@]}" -output "$out" "$@" >"$tmp/stdout" 2>"$tmp/stderr"
  local rc=$?
  after=$(md5 "$out" "$out.ckpt"/*)
  if [[ $rc -eq 2 ]] && grep -qF -- "$text" "$tmp/stderr" && [[ $(grep -c . "$tmp/stderr") -eq 1 ]] && [[ $before == "$after" ]]; then ok; else
    bad "$why: exit $rc, files $([[ $before == "$after" ]] && echo untouched || echo CHANGED)"; sed 's/^/    /' "$tmp/stderr" | head -3; fi
}
refuse "foreign deck" "$tmp/ref.h5.ckpt/sweep.h5: written by a different deck (option -etas differs)" "$tmp/ref.h5" -restart -etas 0.3,2
refuse "finished sweep rerun" "runs already done in $tmp/ref.h5 (give -overwrite to run them again)" "$tmp/ref.h5"
cp -r "$tmp/stopped.ckpt" "$tmp/trunc.h5.ckpt" && cp "$tmp/stopped.h5" "$tmp/trunc.h5"
f="$tmp/trunc.h5.ckpt/run_000000.h5"
truncate -s $(($(stat -c %s "$f") / 2)) "$f"
refuse "truncated checkpoint" "checkpoint $f: cannot read it" "$tmp/trunc.h5" -restart
cp -r "$tmp/stopped.ckpt" "$tmp/corrupt.h5.ckpt" && cp "$tmp/stopped.h5" "$tmp/corrupt.h5"
f="$tmp/corrupt.h5.ckpt/run_000001.h5"
# overwrite 8 bytes in the middle of the stored trajectory (raw data HDF5 itself does not checksum)
off=$("$NTK_PYTHON" -c 'import sys, h5py; d = h5py.File(sys.argv[1], "r")["records.train"]; print(d.id.get_offset() + d.id.get_storage_size() // 2)' "$f")
printf 'garbage!' | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
refuse "corrupted checkpoint" "checkpoint $f:" "$tmp/corrupt.h5" -restart

# ---- sweep parts: each part's runs equal the whole sweep's; the parts cover it
: >"$tmp/log"
run 2 "$tmp/part0.h5" -sweep_part 0 -sweep_parts 2 && run 1 "$tmp/part1.h5" -sweep_part 1 -sweep_parts 2 && ok || { bad "sweep parts failed"; tail -3 "$tmp/log"; }
"$NTK_PYTHON" - "$tmp/ref.h5" "$tmp/part0.h5" "$tmp/part1.h5" <<'PY' && ok || bad "sweep parts differ from the whole sweep"
import sys, h5py, numpy as np
ref = h5py.File(sys.argv[1], "r")
seen = []
for part, path in enumerate(sys.argv[2:]):
    with h5py.File(path, "r") as f:
        assert f.attrs["sweep_part"] == part and f.attrs["sweep_parts"] == 2
        for name, g in f["runs"].items():
            d = int(g.attrs["deck_index"])
            assert d % 2 == part, (path, name, d)
            seen.append(d)
            r = ref["runs"][f"run_{d:06d}"]
            # every run is on one rank in both layouts: bit for bit, every dataset of the run
            assert set(g) == set(r), (path, name, sorted(g), sorted(r))
            for sub in r:
                assert set(g[sub]) == set(r[sub]), (path, name, sub)
                for k in r[sub]:
                    assert np.array_equal(g[sub][k][()], r[sub][k][()], equal_nan=True), (path, name, sub, k)
assert sorted(seen) == list(range(len(ref["runs"]))), seen
PY

# ---- an eigensolver that does not converge: recorded (nconv, NaN), the run goes on and finishes
run 1 "$tmp/noconv.h5" -ntk_method matfree -ntk_eps_max_it 1 -ntk_eps_tol 1e-15 -steps 10 -spectrum_steps 0 && ok || bad "non-converging eigensolver stopped the job"
"$NTK_PYTHON" - "$tmp/noconv.h5" <<'PY' && ok || bad "non-convergence not recorded"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    s = f["summary"][:]
    assert np.all(s["status"] == 2), s["status"]
    for g in f["runs"].values():
        nconv, top = g["lambda/nconv"][()], g["lambda/topk"][()]
        assert np.all(nconv < top.shape[1]), nconv
        assert np.all(np.isnan(top[np.arange(top.shape[1])[None, :] >= nconv[:, None]])), top
        assert np.all(np.isfinite(g["train/loss"][()]))
PY

finish
