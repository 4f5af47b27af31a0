#!/usr/bin/env bash
# The same small sweep on 1, 2 and 4 ranks (and with data-parallel groups of 2 and 4) must give
# trajectories that agree to 1e-10 relative over the first 20 steps, for gd and for sgd.
set -euo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
deck="$NTK_SOURCE_DIR/tests/small_sweep.in"
cmp="$NTK_SOURCE_DIR/tests/h5compare.py"
run() { # np out extra-options...
  local np=$1 out=$2
  shift 2
  "$MPIEXEC" --oversubscribe -n "$np" "$NTKHPC" "$deck" -quiet -output "$tmp/$out" "$@" >"$tmp/$out.log" 2>&1 ||
    { echo "FAIL: ntkhpc on $np ranks $*"; cat "$tmp/$out.log"; exit 1; }
}
run 1 gd1.h5
run 2 gd2.h5
run 4 gd4g2.h5 -ranks_per_run 2
run 4 gd4g4.h5 -ranks_per_run 4
sgd=(-optimizer sgd -batch_size 40 -momentum 0.9 -lr_schedule cosine)
run 1 sgd1.h5 "${sgd[@]}"
run 4 sgd4g2.h5 "${sgd[@]}" -ranks_per_run 2
run 3 sgd3g3.h5 "${sgd[@]}" -ranks_per_run 3
status=0
for other in gd2 gd4g2 gd4g4; do
  echo "== gd: 1 rank vs $other"
  "$NTK_PYTHON" "$cmp" "$tmp/gd1.h5" "$tmp/$other.h5" --rtol 1e-10 --steps 20 --require-all || status=1
done
for other in sgd4g2 sgd3g3; do
  echo "== sgd: 1 rank vs $other"
  "$NTK_PYTHON" "$cmp" "$tmp/sgd1.h5" "$tmp/$other.h5" --rtol 1e-10 --steps 20 --require-all || status=1
done
exit $status
