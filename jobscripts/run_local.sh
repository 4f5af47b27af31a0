#!/usr/bin/env bash
# Local runner: builds ntkhpc if needed and runs a deck on this machine.
#   jobscripts/run_local.sh DECK [NRANKS] [-key value ...]
# NRANKS defaults to the number of cores; extra options override the deck.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
deck=${1:?usage: run_local.sh DECK [NRANKS] [-key value ...]}
shift
nranks=$(nproc)
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then nranks=$1; shift; fi
build=${NTK_BUILD_DIR:-$here/build}
if [[ ! -x $build/ntkhpc ]]; then
  cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j "$(nproc)" --target ntkhpc >/dev/null
fi
# One BLAS thread per rank: the ranks already fill the cores.
export OPENBLAS_NUM_THREADS=1
[[ $(id -u) -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
oversub=()
(( nranks > $(nproc) )) && oversub=(--oversubscribe)
exec mpirun "${oversub[@]}" -n "$nranks" "$build/ntkhpc" "$deck" "$@"
