#!/usr/bin/env bash
# The data-parallel gradient sum, both ways (grad_reduce.h).
# MPI buckets started during the backward pass (-grad_sum mpi, -grad_overlap):
# - overlap on and off give bit-identical files for the same group (fc, ntk and mup, with sgd and momentum;
#   fc with gd over several chunks per rank; a WRN with batch norm and augmentation);
# - both agree with 1 rank to 1e-10 relative (the sum is the gradient's);
# - -log_view's NtkGradBucket count is what the layout implies: one bucket per dense layer with a
#   tiny -grad_bucket_mb, one below the size of the net, none but the tail with 0; plus the tail.
# The node's shared memory (-grad_sum node, the default):
# - on groups of 2 it equals the MPI sum bit for bit (a + b either way), sgd, gd and the WRN;
# - a group of 4 on one node, and as two nodes of 2 (-grad_node_ranks 2: the slices' allreduce
#   across nodes), agree with 1 rank to 1e-10;
# - -log_view counts one NtkGradNodeSum per step and no bucket; nodes of unequal size (3 + 1) fall
#   back to the buckets (two per step at the default 8 MiB).
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

fc=(-widths 48 -seeds 3 -params ntk,mup -etas 0.1 -grad_sum mpi)
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

wrn=(-augment true -augment_pad 2 -grad_sum mpi)
run 1 wrn1 "$src/wrn_sweep.in" "${wrn[@]}"
run 2 wrn_on "$src/wrn_sweep.in" "${wrn[@]}" -ranks_per_run 2 -grad_bucket_mb 1e-4 -grad_overlap true
run 2 wrn_off "$src/wrn_sweep.in" "${wrn[@]}" -ranks_per_run 2 -grad_bucket_mb 1e-4 -grad_overlap false
same wrn_on wrn_off
close wrn1 wrn_on 4

# Bucket counts: the 784-48-48-10 net of one run, 20 sgd steps, one gradient per step. Of each
# step's buckets all but the tail start inside the backward pass with overlap, none without.
one=(-widths 48 -seeds 3 -params ntk -etas 0.1 "${sgd[@]}" -ranks_per_run 2 -log_view -grad_sum mpi)
# expect LOG WHAT EVENT WANT [EVENT WANT ...]: -log_view counts of the events in LOG (an event never
# begun is not listed: 0).
expect() {
  local log=$1 what=$2 line="" ok=1
  shift 2
  while (($#)); do
    local got
    got=$(awk -v e="$1" '$1 == e {print $2}' "$log")
    line+=" $1 ${got:-0} (expected $2)"
    [[ "${got:-0}" == "$2" ]] || ok=0
    shift 2
  done
  if ((ok)); then echo "ok: $what:$line"; else echo "FAIL: $what:$line"; status=1; fi
}
for case in "1e-4 4 true" "1e-4 4 false" "8 2 true" "0 1 true"; do
  set -- $case
  run 2 count_$1_$3 "$src/small_sweep.in" "${one[@]}" -grad_bucket_mb "$1" -grad_overlap "$3"
  expect "$tmp/count_$1_$3.log" "-grad_bucket_mb $1 -grad_overlap $3 ($2 buckets per step)" \
    NtkGradBucket $((20 * $2)) NtkGradEarly $([[ $3 == true ]] && echo $((20 * ($2 - 1))) || echo 0)
done

# The node sum. Groups of 2: the same bits as MPI's (the files above are -grad_sum mpi).
run 4 sgd_g2_node "$src/small_sweep.in" "${fc[@]}" "${sgd[@]}" -ranks_per_run 2 -grad_sum node
same sgd_g2_node sgd_g2_on
run 2 gd_node "$src/small_sweep.in" "${fc[@]}" "${gd[@]}" -ranks_per_run 2 -grad_sum node
same gd_node gd_on
run 2 wrn_node "$src/wrn_sweep.in" "${wrn[@]}" -ranks_per_run 2 -grad_sum node
same wrn_node wrn_on
# A group of 4: one node, then two nodes of 2.
run 4 sgd_g4_node "$src/small_sweep.in" "${fc[@]}" "${sgd[@]}" -ranks_per_run 4 -grad_sum node
close sgd1 sgd_g4_node 20
run 4 sgd_g4_nodes2 "$src/small_sweep.in" "${fc[@]}" "${sgd[@]}" -ranks_per_run 4 -grad_sum node -grad_node_ranks 2
close sgd1 sgd_g4_nodes2 20
# Events: a node sum per step and no bucket; unequal nodes (3 + 1) take the buckets.
node=(-widths 48 -seeds 3 -params ntk -etas 0.1 "${sgd[@]}" -log_view -grad_sum node)
for case in "2 0 20 0" "4 0 20 0" "4 2 20 0" "4 3 0 40"; do
  set -- $case
  run "$1" events_$1_$2 "$src/small_sweep.in" "${node[@]}" -ranks_per_run "$1" -grad_node_ranks "$2"
  expect "$tmp/events_$1_$2.log" "group of $1, -grad_node_ranks $2" NtkGradNodeSum "$3" NtkGradBucket "$4"
done
exit $status
