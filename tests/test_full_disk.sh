#!/usr/bin/env bash
# A full disk (issue #15 items 2 and 8): a job whose output and checkpoints go to a small tmpfs that
# fills up during the run, and one whose output cannot even be created, on 1 and 2 ranks. It must end with exit 1 (no signal, no deadlock: a
# timeout fails), with an error line naming the file and "No space left on device" (at most one
# per group of ranks), and leave valid checkpoints: -restart on the same disk with room again
# finishes bit for bit equal to an uninterrupted job's output (h5same.py).
# Needs to mount a tmpfs (root); otherwise it says why and is skipped (exit 77).
set -uo pipefail
: "${NTKHPC:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
disk="$tmp/disk"
mkdir -p "$disk"
if ! mount -t tmpfs -o size=8m tmpfs "$disk" 2>"$tmp/mount.err"; then
  echo "SKIP: cannot mount a tmpfs for the full-disk test: $(head -1 "$tmp/mount.err")"
  exit 77
fi
trap 'umount "$disk" 2>/dev/null; rm -rf "$tmp"' EXIT
deck="$NTK_SOURCE_DIR/tests/small_sweep.in"
args=(-quiet -steps 40 -n_train 50 -n_test 20 -checkpoint_every 5 -widths 48,96 -seeds 3,4)
same() { "${NTK_PYTHON:-/usr/bin/python3}" "$NTK_SOURCE_DIR/tests/h5same.py" "$1" "$2" >"$tmp/same.log" 2>&1; }
job() { # np output [options]: the job under a timeout (a deadlock fails), exit code in $rc
  local np=$1 out=$2; shift 2
  timeout 300 "$MPIEXEC" -q --oversubscribe -n "$np" "$NTKHPC" "$deck" "${args[@]}" -output "$out" "$@" >"$tmp/stdout" 2>"$tmp/stderr" </dev/null
  rc=$?
}
used() { du -sk --apparent-size "$@" | awk '{ s += $1 } END { print s }'; }

for np in 1 2; do
  rm -rf "$disk"/*
  # The uninterrupted job, on the empty disk: the reference, and how much room output and
  # checkpoints take.
  job "$np" "$disk/ref.h5" -keep_checkpoints true
  check "np $np: the reference job failed (exit $rc)" test "$rc" -eq 0
  cp "$disk/ref.h5" "$tmp/ref$np.h5"
  out_kb=$(used "$disk/ref.h5") ckpt_kb=$(used "$disk/ref.h5.ckpt")
  rm -rf "$disk"/*
  # Room for the output and half the checkpoints: the disk fills up in the middle of the run.
  avail=$(df --output=avail -k "$disk" | tail -1)
  head -c $(((avail - out_kb - ckpt_kb / 2) * 1024)) /dev/zero >"$disk/filler"
  job "$np" "$disk/o.h5"
  errs=$(grep -c '^ntkhpc: error:' "$tmp/stderr")
  check "np $np: a full disk: exit $rc, want 1" test "$rc" -eq 1
  check "np $np: no error line names a file on the full disk with 'No space left on device'" \
    grep -q "^ntkhpc: error: .*$disk/o.h5.*No space left on device" "$tmp/stderr"
  check "np $np: $errs error lines, want 1 to $np (one per group at most)" test "$errs" -ge 1 -a "$errs" -le "$np"
  check "np $np: a finished job's output under the target name" test ! -e "$disk/o.h5"
  sed 's/^/    /' "$tmp/stderr" | head -4
  # Room again: -restart completes from the checkpoints, bit for bit.
  rm -f "$disk/filler"
  job "$np" "$disk/o.h5" -restart
  check "np $np: -restart after the full disk: exit $rc" test "$rc" -eq 0
  if same "$tmp/ref$np.h5" "$disk/o.h5"; then ok; else bad "np $np: the restarted output differs from the reference:"; head -3 "$tmp/same.log"; fi

  # Full before the output is even created (room for half of it): the ranks agree on the failure
  # (no rank waits in a collective call), one line, exit 1, and the half-made file is removed.
  rm -rf "$disk"/*
  avail=$(df --output=avail -k "$disk" | tail -1)
  head -c $(((avail - out_kb / 2) * 1024)) /dev/zero >"$disk/filler"
  job "$np" "$disk/c.h5"
  errs=$(grep -c '^ntkhpc: error:' "$tmp/stderr")
  check "np $np: a full disk at creation: exit $rc, want 1" test "$rc" -eq 1
  check "np $np: at creation, no line names $disk/c.h5.partial with 'No space left on device'" \
    grep -q "^ntkhpc: error: output file $disk/c.h5.partial: .*No space left on device" "$tmp/stderr"
  check "np $np: at creation, $errs error lines, want 1" test "$errs" -eq 1
  check "np $np: at creation, the half-made output is left" test ! -e "$disk/c.h5.partial" -a ! -e "$disk/c.h5"
  sed 's/^/    /' "$tmp/stderr" | head -3
  rm -f "$disk/filler"
  job "$np" "$disk/c.h5" -restart
  check "np $np: -restart after a full disk at creation: exit $rc" test "$rc" -eq 0
  if same "$tmp/ref$np.h5" "$disk/c.h5"; then ok; else bad "np $np: the restarted output differs from the reference:"; head -3 "$tmp/same.log"; fi
done
finish full_disk
