#!/usr/bin/env bash
# Local runner: builds ntkhpc if needed and runs a deck on this machine.
#   jobscripts/run_local.sh DECK [NRANKS] [-key value ...]
# NRANKS defaults to the number of cores; extra options override the deck.
# Stop a run cleanly with `kill -USR1 <pid of this script>` (or -TERM): every rank finishes its
# step, checkpoints and the script exits with 3; the same command then continues where it stopped
# (ntkhpc restarts automatically from the checkpoint of the same deck; NTK_RESTART=1 adds -restart).
# Exit codes are ntkhpc's: 0 done, 1 runtime failure, 2 bad input, 3 checkpointed after a signal.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
deck=${1:?usage: run_local.sh DECK [NRANKS] [-key value ...]}
shift
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)   # nproc alone follows OMP_NUM_THREADS
NTK_NRANKS=$cores
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then NTK_NRANKS=$1; shift; fi
NTK_ROOT=$here
NTKHPC=${NTK_BUILD_DIR:-$here/build}/ntkhpc
NTK_LAUNCHER=mpirun
# More ranks than cores (e.g. to reproduce a cluster job's layout) needs --oversubscribe.
if (( NTK_NRANKS > cores )); then NTK_LAUNCHER_ARGS="--oversubscribe ${NTK_LAUNCHER_ARGS:-}"; fi
source "$here/jobscripts/ntk_job.sh"
ntk_job_setup || exit 1
ntk_job_run "$deck" "$@"
rc=$?
if [[ $rc -eq 3 ]]; then
  echo "run_local: checkpointed after a signal; run the same command again to continue" >&2
fi
exit $rc
