#!/usr/bin/env bash
# The uv model against its exact equations (docs/conventions.md "uv model"): the recorded f_t and
# lambda_t follow the closed-form recursion step by step to round-off, on 1 and 2 data-parallel
# ranks; and the eta_factor sweep of inputs/uv.in (0.5 to 5 by 0.1, width 4096) is lazy below 2,
# catapult between 2 and 4, divergent above 4, each boundary within 0.1; and -eta_max_search
# brackets the exact boundary eta_max * lambda_0 = 4; the Hessian's most negative eigenvalue is the
# exact -|f|/sqrt(n) and the sharpness equals lambda once f = 0.
set -euo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
deck="$NTK_SOURCE_DIR/inputs/uv.in"
check="$NTK_SOURCE_DIR/tests/uv_check.py"
rec=(-widths 64,256 -seeds 1,2 -eta_factors 1.0,2.5,3.5,4.5 -steps 80 -lambda_every 1 -quiet)
"$MPIEXEC" -q --oversubscribe -n 1 "$NTKHPC" "$deck" "${rec[@]}" -output "$tmp/rec1.h5"
"$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$deck" "${rec[@]}" -ntk_method matfree -ranks_per_run 2 -output "$tmp/rec2.h5"
"$NTK_PYTHON" "$check" recursion "$tmp/rec1.h5" 1e-12
"$NTK_PYTHON" "$check" recursion "$tmp/rec2.h5" 1e-10
"$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$deck" -quiet -output "$tmp/phases.h5"
"$NTK_PYTHON" "$check" phases "$tmp/phases.h5"
"$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$deck" -quiet -widths 1024,4096 -eta_factors 1 -eta_max_search \
  -eta_max_tol 0.02 -eta_max_steps 1000 -output "$tmp/etamax.h5"
"$NTK_PYTHON" "$check" etamax "$tmp/etamax.h5" 0.02
"$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$deck" -quiet -widths 256 -eta_factors 1.0,2.5 -steps 200 -hess_every 10 \
  -lambda_every 10 -ranks_per_run 2 -output "$tmp/hessian.h5"
"$NTK_PYTHON" "$check" hessian "$tmp/hessian.h5" 1e-8
