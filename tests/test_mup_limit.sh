#!/usr/bin/env bash
# The exact infinite-width limit of the one-hidden-layer linear muP net (-mup_limit, width 0 in the
# output; docs/mup_limit.md): its outputs, train loss and lambda_0 against the moment recursion
# written in numpy (tests/mup_limit_check.py), with and without a zero readout, on 1 and 2 ranks;
# and finite widths 256 to 16384 converging to it like n^-1/2.
set -uo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
chk="$NTK_SOURCE_DIR/tests/mup_limit_check.py"
lin=(-quiet -arch fc -depth 1 -activation identity -bias false -params mup -mup_limit true)
"$NTK_PYTHON" "$chk" mkdata "$tmp/mnist" || exit 1
for np in 1 2; do
  for zero in false true; do
    "$MPIEXEC" -q --oversubscribe -n "$np" "$NTKHPC" "${lin[@]}" -sigma_w 1.3 -base_width 32 -widths 64 -seeds 0 -eta_factors 0.5,1.5 -mup_zero_readout $zero \
      -dataset mnist -data_dir "$tmp/mnist" -n_train 40 -n_test 20 -standardize false -ntk_batch 40 -ntk_method exact \
      -steps 20 -record_every 1 -outputs_every 1 -outputs_batch 8 -ranks_per_run "$np" -output "$tmp/rec.h5" -overwrite >>"$tmp/log" 2>&1
    check "limit vs moment recursion ($np ranks, zero readout $zero)" "$NTK_PYTHON" "$chk" recursion "$tmp/rec.h5" "$tmp/mnist"
  done
done
"$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "${lin[@]}" -sigma_w 1 -base_width 64 -widths 256,1024,4096,16384 -seeds 0,1,2 -etas 0.2 \
  -dataset teacher -teacher_dim 16 -teacher_width 32 -teacher_outputs 2 -n_train 64 -n_test 64 -ntk_batch 64 -steps 30 \
  -outputs_every 1 -outputs_batch 16 -output "$tmp/conv.h5" >>"$tmp/log" 2>&1
check "finite widths converge to the limit like n^-1/2" "$NTK_PYTHON" "$chk" converge "$tmp/conv.h5"
"$NTKHPC" -quiet -arch fc -depth 1 -activation identity -bias false -params sp -mup_limit true -widths 64 -output "$tmp/bad.h5" >"$tmp/bad.log" 2>&1
check "-mup_limit with sp refused (exit 2, one line)" test $? -eq 2 -a "$(grep -c 'option -mup_limit' "$tmp/bad.log")" -eq 1
grep -h 'limit vs\|max_t' "$tmp/log" 2>/dev/null
finish mup_limit
