#!/usr/bin/env bash
# Configures, builds and runs the whole test suite (the README's test command; .ci/run calls it),
# then builds the code again with AddressSanitizer + UndefinedBehaviorSanitizer (-DNTK_SANITIZE=ON)
# and runs the C unit, MPI and end-to-end tests under them: any sanitizer report fails.
#   bash tests/run.sh [build-dir]     the sanitizer build goes to <build-dir>-san
# Environment: CTEST_ARGS (extra ctest arguments, both passes), NTK_SANITIZE_PASS=0 (skip the
# sanitizer pass), NTK_NORMAL_PASS=0 (only the sanitizer pass).
#
# Not run under the sanitizers (-E below): torch_* (PyTorch references: the C they drive is
# covered by test_model/test_conv/test_wrn, and a torch import per test costs more than the test),
# postproc_* (Python post-processing), slurm_* (drives Slurm daemons; its ntkhpc paths are those of
# `restart`), fuzz_* (already built with the sanitizers, clang only), hessian_science (a science
# check of minutes on a width-512 net; its code is what test_hessian_np1/np4 run here),
# coord_check_science (minutes of width-4096 nets; the features code is what `features` runs).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
san=$build-san
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
jobs=$(nproc)
status=0
t_all=$SECONDS

if [[ ${NTK_NORMAL_PASS:-1} == 1 ]]; then
  t0=$SECONDS
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
  cmake --build "$build" -j "$jobs"
  # shellcheck disable=SC2086
  ctest --test-dir "$build" --output-on-failure ${CTEST_ARGS:-} || status=1
  echo "tests/run.sh: normal pass $( ((status)) && echo FAILED || echo passed) in $((SECONDS - t0)) s"
fi

if [[ ${NTK_SANITIZE_PASS:-1} == 1 ]]; then
  t0=$SECONDS
  cmake -S . -B "$san" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNTK_SANITIZE=ON
  cmake --build "$san" -j "$jobs"
  # A report ends the process with a failing status (halt_on_error, -fno-sanitize-recover), which
  # fails its test; the ctest log is also searched for reports, in case a script test expects a
  # failing status or ignores one. detect_leaks=0: Open MPI, PMIx and PETSc keep global
  # allocations until exit that LeakSanitizer would report. Only our code is instrumented, so
  # nothing inside those libraries needs a suppression file.
  export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  san_status=0
  # shellcheck disable=SC2086
  ctest --test-dir "$san" --output-on-failure -E '^(torch_|postproc_|slurm_|fuzz_|hessian_science$|coord_check_science$)' ${CTEST_ARGS:-} || san_status=1
  if grep -n -E 'runtime error:|ERROR: AddressSanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer' \
       "$san/Testing/Temporary/LastTest.log"; then
    echo "tests/run.sh: sanitizer reports in $san/Testing/Temporary/LastTest.log"
    san_status=1
  fi
  unset ASAN_OPTIONS UBSAN_OPTIONS
  ((san_status)) && status=1
  echo "tests/run.sh: sanitizer pass $( ((san_status)) && echo FAILED || echo passed) in $((SECONDS - t0)) s"
fi
echo "tests/run.sh: $( ((status)) && echo FAILED || echo all passed) in $((SECONDS - t_all)) s"
exit $status
