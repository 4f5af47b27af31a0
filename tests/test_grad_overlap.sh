#!/usr/bin/env bash
# The data-parallel gradient sum in buckets started during the backward pass (-grad_overlap):
# - overlap on and off give bit-identical files for the same group (fc, ntk and mup, with sgd and momentum;
#   fc with gd over several chunks per rank; a WRN with batch norm and augmentation);
# - both agree with 1 rank to 1e-10 relative (the sum is the gradient's);
# - -log_view's NtkGradBucket count is what the layout implies: one bucket per dense layer with a
#   tiny -grad_bucket_mb, one below the size of the net, none but the tail with 0; plus the tail.
set -euo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=$NTK_SOURCE_DIR/tests
status=0
run() { # np out deck extra-options...
  local np=$1 out=$2 deck=$3
  shift 3
  "$MPIEXEC" --oversubscribe -n "$np" "$NTKHPC" "$deck" -quiet -output "$tmp/$out.h5" "$@" >"$tmp/$out.log" 2>&1 ||
    { echo "FAIL: ntkhpc on $np ranks $*"; cat "$tmp/$out.log"; exit 1; }
}
same() { # a b: bit for bit
  echo "== $1 vs $2: bit for bit"
  "$NTK_PYTHON" "$src/h5same.py" "$tmp/$1.h5" "$tmp/$2.h5" || status=1
}
close() { # a b steps: to 1e-10
  echo "== $1 vs $2: to 1e-10"
  "$NTK_PYTHON" "$src/h5compare.py" "$tmp/$1.h5" "$tmp/$2.h5" --rtol 1e-10 --steps "$3" --require-all || status=1
}

fc=(-widths 48 -seeds 3 -params ntk,mup -etas 0.1)
sgd=(-optimizer sgd -batch_size 40 -momentum 0.9)
run 1 sgd1 "$src/small_sweep.in" "${fc[@]}" "${sgd[@]}"
for g in 4 2; do
  run 4 sgd_g${g}_on "$src/small_sweep.in" "${fc[@]}" "${sgd[@]}" -ranks_per_run $g -grad_bucket_mb 1e-4 -grad_overlap true
  run 4 sgd_g${g}_off "$src/small_sweep.in" "${fc[@]}" "${sgd[@]}" -ranks_per_run $g -grad_bucket_mb 1e-4 -grad_overlap false
  same sgd_g${g}_on sgd_g${g}_off
  close sgd1 sgd_g${g}_on 20
done
gd=(-eval_chunk 30) # 100 samples per rank: four chunks, the last one overlapped
run 1 gd1 "$src/small_sweep.in" "${fc[@]}" "${gd[@]}"
run 2 gd_on "$src/small_sweep.in" "${fc[@]}" "${gd[@]}" -ranks_per_run 2 -grad_bucket_mb 1e-4 -grad_overlap true
run 2 gd_off "$src/small_sweep.in" "${fc[@]}" "${gd[@]}" -ranks_per_run 2 -grad_bucket_mb 1e-4 -grad_overlap false
same gd_on gd_off
close gd1 gd_on 20

wrn=(-augment true -augment_pad 2)
run 1 wrn1 "$src/wrn_sweep.in" "${wrn[@]}"
run 2 wrn_on "$src/wrn_sweep.in" "${wrn[@]}" -ranks_per_run 2 -grad_bucket_mb 1e-4 -grad_overlap true
run 2 wrn_off "$src/wrn_sweep.in" "${wrn[@]}" -ranks_per_run 2 -grad_bucket_mb 1e-4 -grad_overlap false
same wrn_on wrn_off
close wrn1 wrn_on 4

# Bucket counts: the 784-48-48-10 net of one run, 20 sgd steps, one gradient per step. Of each
# step's buckets all but the tail start inside the backward pass with overlap, none without.
one=(-widths 48 -seeds 3 -params ntk -etas 0.1 "${sgd[@]}" -ranks_per_run 2 -log_view)
count() { awk -v e="$1" '$1 == e {print $2}' "$2"; }
for case in "1e-4 4 true" "1e-4 4 false" "8 2 true" "0 1 true"; do
  set -- $case
  run 2 count_$1_$3 "$src/small_sweep.in" "${one[@]}" -grad_bucket_mb "$1" -grad_overlap "$3"
  got=$(count NtkGradBucket "$tmp/count_$1_$3.log")
  early=$(count NtkGradEarly "$tmp/count_$1_$3.log") # an event never begun is not listed: 0
  want=$((20 * $2)) want_early=$([[ $3 == true ]] && echo $((20 * ($2 - 1))) || echo 0)
  if [[ "$got" == "$want" && "${early:-0}" == "$want_early" ]]; then
    echo "ok: -grad_bucket_mb $1 -grad_overlap $3: $got bucket starts ($2 per step), ${early:-0} inside the backward pass"
  else
    echo "FAIL: -grad_bucket_mb $1 -grad_overlap $3: NtkGradBucket '$got' (expected $want), NtkGradEarly '${early:-0}' (expected $want_early)"
    status=1
  fi
done
exit $status
