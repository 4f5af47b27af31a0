#!/usr/bin/env bash
# Configures, builds and runs the whole test suite (the README's test command calls this).
#   bash tests/run.sh [build-dir]        extra ctest arguments via CTEST_ARGS
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure ${CTEST_ARGS:-}
