#!/usr/bin/env bash
# postproc on REAL ntkhpc output made here: a small sweep across the phases on 2 ranks, and the
# file of a job killed (SIGKILL) in the middle of its sweep; on each, the same figure and table
# checks as on the synthetic files.
set -euo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
tmp=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill -9 $pid 2>/dev/null; rm -rf "$tmp"' EXIT
deck="$NTK_SOURCE_DIR/inputs/quickstart.in"
small=(-widths 32,64 -seeds 0,1 -eta_factors 0.5,3,30 -n_train 100 -n_test 100 -ntk_batch 20 -quiet)
"$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$deck" "${small[@]}" -steps 30 -output "$tmp/real.h5" >"$tmp/log" 2>&1 ||
  { cat "$tmp/log"; exit 1; }
"$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/test_postproc.py" --no-synth --real "$tmp/real.h5"

# A job killed mid-sweep: rows flushed every 0.1 s, SIGKILL once some runs have finished. Until the
# job ends well its output is killed.h5.partial (docs/output.md): that is the file read.
"$NTKHPC" "$deck" "${small[@]}" -steps 600 -flush_seconds 0.1 -output "$tmp/killed.h5" >"$tmp/log2" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  sleep 0.1
  if [[ -f $tmp/killed.h5.partial ]] && "$NTK_PYTHON" -c "import h5py,sys; s=h5py.File(sys.argv[1],'r')['summary'][:]; sys.exit(0 if ((s['status']>=2).sum()>=2 and (s['status']==1).sum()>=1) else 1)" "$tmp/killed.h5.partial" 2>/dev/null; then
    break
  fi
done
kill -9 $pid
wait $pid 2>/dev/null || true
pid=
[[ ! -e $tmp/killed.h5 ]] || { echo "FAIL: a killed job's output took the target name"; exit 1; }
"$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/test_postproc.py" --no-synth --real "$tmp/killed.h5.partial"
"$NTK_PYTHON" -c "import h5py,sys; s=h5py.File(sys.argv[1],'r')['summary'][:]; print('killed file: statuses', sorted(s['status'].tolist())); sys.exit(0 if (s['status']<2).any() else 1)" "$tmp/killed.h5.partial"
