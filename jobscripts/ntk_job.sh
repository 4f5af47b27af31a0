# shellcheck shell=bash
# Shared logic of the job scripts (wrn.sbatch, sweep_array.sbatch, run_local.sh); sourced, not run.
#
# ntk_job_run DECK [-key value ...] runs ntkhpc on the job's tasks and handles preemption:
#   - restart: from the second start of the job on (SLURM_RESTART_COUNT > 0, or NTK_RESTART=1)
#     ntkhpc gets -restart and continues its runs from their checkpoints;
#   - signals: the launcher runs in the background and the batch shell waits for it, so the shell's
#     traps run at once. SIGUSR1 (--signal=B:USR1@T before the time limit, or
#     `scancel --signal=USR1 --batch JOB`) is passed on to the launcher, which forwards it to every
#     rank: each finishes its step, writes a checkpoint and exits with 3. SIGTERM (scancel,
#     scontrol requeue, preemption, the time limit) is also passed on as SIGUSR1 (Open MPI's mpirun
#     answers SIGTERM by killing the ranks a second later, SIGUSR1 it forwards and waits);
#   - requeue (NTK_REQUEUE=1, set by the sbatch scripts): exit code 3 after a SIGUSR1 means
#     "checkpointed, requeue me": the job requeues itself (scontrol requeue) and starts again with
#     -restart. After a SIGTERM it does not: Slurm already decided (requeue, preemption) or the user
#     cancelled.
#
# Environment (all optional):
#   NTK_ROOT      the ntkhpc repository (default: the submit directory if it holds jobscripts/,
#                 else the directory above this file)
#   NTKHPC        the ntkhpc binary (default $NTK_ROOT/build/ntkhpc; built there if missing)
#   NTK_NRANKS    MPI ranks (default SLURM_NTASKS, else 1)
#   NTK_LAUNCHER  mpirun (default) or srun: `srun --mpi=pmix` delivers Slurm's SIGTERM to the ranks
#                 and waits KillWait seconds, so even `scontrol requeue` ends in a clean checkpoint;
#                 needs Slurm's pmix plugin and an Open MPI built against PMIx
#   NTK_LAUNCHER_ARGS  extra launcher arguments (e.g. "--bind-to core")
#   NTK_RESTART   1: pass -restart even on the first start
#   NTK_ARGS      extra ntkhpc options, appended after the script's arguments
#   NTK_REQUEUE   1 (the sbatch scripts' default): requeue the job after a SIGUSR1 checkpoint
# Exit code: ntkhpc's (0 done, 1 runtime failure, 2 bad input, 3 checkpointed after a signal).

ntk_log() { echo "ntkhpc-job $(date '+%F %T') ${SLURM_JOB_ID:+job $SLURM_JOB_ID: }$*"; }

ntk_job_setup() {
  if [[ -z ${NTK_ROOT:-} ]]; then
    if [[ -n ${SLURM_SUBMIT_DIR:-} && -f $SLURM_SUBMIT_DIR/jobscripts/ntk_job.sh ]]; then
      NTK_ROOT=$SLURM_SUBMIT_DIR
    else
      NTK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    fi
  fi
  NTKHPC=${NTKHPC:-$NTK_ROOT/build/ntkhpc}
  if [[ ! -x $NTKHPC ]]; then
    ntk_log "building $NTKHPC"
    cmake -S "$NTK_ROOT" -B "$(dirname "$NTKHPC")" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
      cmake --build "$(dirname "$NTKHPC")" -j "${SLURM_CPUS_ON_NODE:-$(nproc)}" --target ntkhpc >/dev/null ||
      { ntk_log "error: cannot build ntkhpc"; return 1; }
  fi
  NTK_NRANKS=${NTK_NRANKS:-${SLURM_NTASKS:-1}}
  NTK_LAUNCHER=${NTK_LAUNCHER:-mpirun}
  # One BLAS thread per rank: the ranks already fill the cores.
  export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
  if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
}

# Passes a signal on to the launcher (as SIGUSR1, see above) and remembers which one came.
ntk_on_signal() {
  ntk_signal=$1
  ntk_log "got SIG$1: asking ntkhpc to checkpoint and stop"
  [[ -n ${ntk_pid:-} ]] && kill -USR1 "$ntk_pid" 2>/dev/null
  return 0
}

ntk_job_run() {
  local deck=$1; shift
  local args=("$@") launch=() extra=() largs=() rc
  [[ -n ${NTK_ARGS:-} ]] && read -r -a extra <<<"$NTK_ARGS" && args+=("${extra[@]}")
  if [[ ${SLURM_RESTART_COUNT:-0} -gt 0 || ${NTK_RESTART:-0} == 1 ]]; then args+=(-restart); fi
  case $NTK_LAUNCHER in
    mpirun) launch=(mpirun -n "$NTK_NRANKS") ;;
    srun) launch=(srun --mpi=pmix -n "$NTK_NRANKS") ;;
    *) ntk_log "error: NTK_LAUNCHER must be mpirun or srun, not '$NTK_LAUNCHER'"; return 2 ;;
  esac
  [[ -n ${NTK_LAUNCHER_ARGS:-} ]] && read -r -a largs <<<"$NTK_LAUNCHER_ARGS" && launch+=("${largs[@]}")
  ntk_log "start ${SLURM_RESTART_COUNT:-0}: ${launch[*]} $NTKHPC $deck ${args[*]}"
  ntk_signal=
  trap 'ntk_on_signal USR1' USR1
  trap 'ntk_on_signal TERM' TERM
  "${launch[@]}" "$NTKHPC" "$deck" "${args[@]}" &
  ntk_pid=$!
  # wait returns early when a trapped signal arrives: wait again until the launcher has exited.
  while :; do
    wait "$ntk_pid"; rc=$?
    kill -0 "$ntk_pid" 2>/dev/null || break
  done
  ntk_pid=
  trap - USR1 TERM
  ntk_log "ntkhpc exited with code $rc${ntk_signal:+ after SIG$ntk_signal}"
  if [[ $rc -eq 3 && $ntk_signal != TERM && ${NTK_REQUEUE:-0} == 1 && -n ${SLURM_JOB_ID:-} ]]; then
    ntk_log "checkpointed: requeueing"
    scontrol requeue "$SLURM_JOB_ID" || ntk_log "error: scontrol requeue failed; resubmit this script to continue"
  fi
  return "$rc"
}
