#!/usr/bin/env bash
# postproc on REAL ntkhpc output made here: a small sweep across the phases on 2 ranks, then the
# same figure/table checks as on the synthetic files (partial files are covered there).
set -euo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$NTK_SOURCE_DIR/inputs/quickstart.in" -widths 32,64 -seeds 0,1 \
  -etas 0.25,1.5,8 -n_train 100 -n_test 100 -steps 30 -quiet -output "$tmp/real.h5" >"$tmp/log" 2>&1 ||
  { cat "$tmp/log"; exit 1; }
"$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/test_postproc.py" --no-synth --real "$tmp/real.h5"
