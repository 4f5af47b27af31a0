#!/usr/bin/env bash
# A real Slurm on this machine: private munged, slurmctld and slurmd (one node, everything in a
# temporary directory, own ports and munge socket; /etc is not touched) run jobscripts/wrn.sbatch
# on tests/decks/slurm_small.in, which is preempted twice in the middle of its sweep:
#   1. `scancel --signal=USR1 --batch`: the batch shell passes SIGUSR1 to mpirun, every rank
#      checkpoints, ntkhpc exits with 3 and the script requeues its own job;
#   2. `scontrol requeue`: Slurm's SIGTERM (with mpirun: the ranks die within seconds, so the job
#      resumes from the last periodic checkpoint; with NTK_SLURM_LAUNCHER=srun it checkpoints).
# Both preemptions act on an observed event, never on a guessed moment: the job runs with the
# -pause_at_step test hook (docs/robustness.md), so every run waits at step 100 until the test
# removes its marker file; the test releases runs until enough are done, then preempts while one is
# held, so the job cannot finish first however fast or loaded the machine is.
# Each restart runs with -restart (SLURM_RESTART_COUNT > 0). The final output must equal an
# uninterrupted run's bit for bit (tests/h5compare.py --rtol 0). Then jobscripts/sweep_array.sbatch
# as a 2-task array: the two part files must hold the 8 runs between them, each equal to the
# reference's. About 100 s on 2 cores, idle or shared with a 2-rank job.
#
# Needs root (the daemons run as root) and slurm-wlm + munge, which it installs with apt-get when
# missing (NTK_SLURM_INSTALL=0: never install). Exit 77 (skipped) when that is not possible.
# Standalone: NTKHPC=build/ntkhpc NTK_SOURCE_DIR=$PWD bash tests/slurm_test.sh
set -uo pipefail
SKIP=77
NTK_SOURCE_DIR=${NTK_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
NTKHPC=${NTKHPC:-$NTK_SOURCE_DIR/build/ntkhpc}
NTK_PYTHON=${NTK_PYTHON:-/usr/bin/python3}
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
LAUNCHER=${NTK_SLURM_LAUNCHER:-mpirun}
deck=$NTK_SOURCE_DIR/tests/decks/slurm_small.in
t_start=$SECONDS

skip() { echo "slurm_test: SKIPPED: $*"; exit $SKIP; }
fail() { echo "slurm_test: FAIL: $*"; show_logs; exit 1; }
say() { echo "slurm_test: [$((SECONDS - t_start)) s] $*"; }

# ---------------------------------------------------------------- can we run a Slurm here?
[[ $(id -u) -eq 0 ]] || skip "needs root to run its own slurmctld/slurmd (CI runs as root)"
[[ -x $NTKHPC ]] || fail "no ntkhpc binary at $NTKHPC"
(( $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) >= 2 )) || skip "needs 2 cores (the job runs 2 ranks)"
if ! [[ -x /usr/sbin/slurmctld && -x /usr/sbin/slurmd && -x /usr/sbin/munged ]] || ! command -v sbatch >/dev/null; then
  [[ ${NTK_SLURM_INSTALL:-1} == 1 ]] || skip "slurm-wlm/munge not installed and NTK_SLURM_INSTALL=0"
  command -v apt-get >/dev/null || skip "slurm-wlm/munge not installed and no apt-get"
  say "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1; } ||
    skip "apt-get install slurm-wlm munge failed (no network or no package)"
fi

tmp=$(mktemp -d /tmp/ntk-slurm.XXXXXX)
chmod 711 "$tmp"
pids=()            # daemons started here, stopped by pid at exit
export SLURM_CONF=$tmp/slurm.conf
show_logs() {
  [[ -n ${tmp:-} && -d $tmp ]] || return 0
  for f in "$tmp"/job.log "$tmp"/log/slurmctld.log "$tmp"/log/slurmd.log; do
    [[ -f $f ]] && { echo "----- $f (last 40 lines)"; tail -n 40 "$f"; }
  done
}
cleanup() {
  if [[ -f $SLURM_CONF ]] && [[ ${#pids[@]} -gt 0 ]]; then
    [[ -n ${jobid:-} ]] && scancel "$jobid" >/dev/null 2>&1
    # Let slurmd's step daemons finish the job before the daemons go away.
    for _ in $(seq 1 40); do
      [[ -z $(squeue -h -t R,CG 2>/dev/null) ]] && break
      sleep 0.5
    done
  fi
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  [[ ${NTK_SLURM_KEEP:-0} == 1 ]] && { echo "slurm_test: kept $tmp"; return; }
  rm -rf "$tmp"
}
trap cleanup EXIT

# ---------------------------------------------------------------- munge, slurmctld, slurmd
free_port() {   # a TCP port nobody listens on
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 20000))
    ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
  done
  echo 16817
}
mkdir -p "$tmp"/munge "$tmp"/spool/ctld "$tmp"/spool/d "$tmp"/log
chmod 711 "$tmp"/munge
dd if=/dev/urandom of="$tmp"/munge/munge.key bs=1024 count=1 status=none
chmod 400 "$tmp"/munge/munge.key
/usr/sbin/munged -F --force --socket="$tmp"/munge/socket --key-file="$tmp"/munge/munge.key \
  --pid-file="$tmp"/munge/munged.pid --log-file="$tmp"/munge/munged.log \
  --seed-file="$tmp"/munge/munged.seed >"$tmp"/log/munged.out 2>&1 &
pids+=($!)
for _ in $(seq 1 40); do [[ -S $tmp/munge/socket ]] && break; sleep 0.25; done
munge -S "$tmp"/munge/socket -n | unmunge -S "$tmp"/munge/socket >/dev/null 2>&1 ||
  { cat "$tmp"/log/munged.out; fail "munged does not answer"; }

host=$(hostname -s)
# The cores (nproc alone would follow OMP_NUM_THREADS=1 of the ctest environment).
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
ctld_port=$(free_port)
slurmd_port=$(free_port)
[[ $slurmd_port == "$ctld_port" ]] && slurmd_port=$((ctld_port + 1))
cat >"$SLURM_CONF" <<EOF
# One-node Slurm of tests/slurm_test.sh
ClusterName=ntktest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/socket
StateSaveLocation=$tmp/spool/ctld
SlurmdSpoolDir=$tmp/spool/d
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
MpiDefault=none
MinJobAge=3600
KillWait=30
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cores RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
/usr/sbin/slurmctld -D -f "$SLURM_CONF" >"$tmp"/log/slurmctld.out 2>&1 &
pids+=($!)
sleep 1
/usr/sbin/slurmd -D -f "$SLURM_CONF" >"$tmp"/log/slurmd.out 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do
  [[ $(sinfo -h -N -o %t 2>/dev/null) == idle ]] && break
  sleep 0.5
done
[[ $(sinfo -h -N -o %t 2>/dev/null) == idle ]] ||
  { cat "$tmp"/log/slurmctld.out "$tmp"/log/slurmd.out; fail "the node did not come up idle"; }
say "slurmctld (port $ctld_port) and slurmd (port $slurmd_port) up, node $host idle"

# ---------------------------------------------------------------- the uninterrupted reference
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
"$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$deck" -output "$tmp"/ref.h5 >"$tmp"/ref.log 2>&1 ||
  { cat "$tmp"/ref.log; fail "the reference run failed"; }
say "reference run done"

# ---------------------------------------------------------------- the Slurm job
job_field() { scontrol -o show job "$jobid" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# Waits (at most $2 s) until the shell test $1 holds. A requeued job waits for a BeginTime ~2 min
# ahead (Slurm's credential lifetime); it is started after 5 s instead: restarted at once, slurmd
# still holds the old run's credential as revoked and kills the job ("Job credential revoked").
wait_for() {
  local t0=$SECONDS t_begin=
  while ! eval "$1"; do
    (( SECONDS - t0 > $2 )) && fail "timed out after $2 s waiting for: $1 (job state $(job_field JobState), reason $(job_field Reason))"
    if scontrol -o show job "$jobid" 2>/dev/null | grep -q 'Reason=BeginTime'; then
      t_begin=${t_begin:-$SECONDS}
      (( SECONDS - t_begin >= 5 )) && scontrol update JobId="$jobid" StartTime=now >/dev/null 2>&1
    fi
    sleep 0.5
  done
}
ckpt=$tmp/slurm.h5.ckpt
n_ckpt() { find "$ckpt" -name 'run_*.h5' 2>/dev/null | wc -l; }
starts() { grep -c 'ntkhpc-job .* start [0-9]' "$tmp"/job.log 2>/dev/null; }
# Runs finished so far: the largest k of "done [k/8]" in the log (restarts count on from the checkpoints).
done_runs() { sed -n 's/.* done \[\([0-9]*\)\/.*/\1/p' "$tmp"/job.log 2>/dev/null | sort -n | tail -1 | grep . || echo 0; }
# The -pause_at_step hook: a paused run waits until its marker <output>.paused_run_* is removed.
pause_step=100
paused() { compgen -G "$tmp/slurm.h5.paused_run_*" >/dev/null; }
release() { rm -f "$tmp"/slurm.h5.paused_run_*; }
# True once at least $1 runs are done and a run waits at its pause; every earlier pause is
# released. The deck's later runs all pause, so one is always there to hold.
held_after() {
  if (( $(done_runs) < $1 )); then release; return 1; fi
  paused
}

jobid=$(cd "$tmp" && NTK_ROOT=$NTK_SOURCE_DIR NTKHPC=$NTKHPC NTK_DECK=$deck NTK_NRANKS=2 \
  NTK_LAUNCHER=$LAUNCHER NTK_ARGS="-output $tmp/slurm.h5 -pause_at_step $pause_step" \
  sbatch --parsable --ntasks=2 --time=10 --signal=B:USR1@30 --output="$tmp"/job.log \
  "$NTK_SOURCE_DIR"/jobscripts/wrn.sbatch) || fail "sbatch failed"
say "submitted job $jobid (launcher $LAUNCHER)"

# The deck has 8 runs, 4 at width 256 first (largest first, two at a time), then 4 at width 128.
# 1. SIGUSR1 to the batch shell once 2 runs are done, while a third waits at its pause.
wait_for 'held_after 2 && [[ $(job_field JobState) == RUNNING && $(n_ckpt) -ge 3 ]]' 180
scancel --signal=USR1 --batch "$jobid" || fail "scancel --signal=USR1 --batch failed"
say "SIGUSR1 sent while a run waits at step $pause_step; $(done_runs) runs done"
wait_for 'grep -q "exited with code 3 after SIGUSR1" "$tmp"/job.log && grep -q "checkpointed: requeueing" "$tmp"/job.log' 60
(( $(done_runs) < 8 )) || fail "the job finished before the first preemption"
wait_for '[[ $(starts) -ge 2 && $(job_field JobState) == RUNNING ]]' 120
say "restarted (Restarts=$(job_field Restarts))"

# 2. scontrol requeue once the restarted job has finished one more run, while a later run waits at
#    its pause (the resumed runs pause at their first step too, and are released). At most 6, so
#    runs are left to pause.
d_restart=$(done_runs)
wait_for "held_after $((d_restart + 1 < 6 ? d_restart + 1 : 6))" 180
(( $(done_runs) < 8 )) || fail "the job finished before the second preemption"
scontrol requeue "$jobid" || fail "scontrol requeue failed"
say "scontrol requeue while a run waits at step $pause_step; $(done_runs) runs done"
wait_for '[[ $(starts) -ge 3 ]]' 120
wait_for '{ release; [[ $(job_field JobState) == COMPLETED || $(job_field JobState) == FAILED ]]; }' 240
say "job $(job_field JobState), exit code $(job_field ExitCode), restarts $(job_field Restarts)"

# ---------------------------------------------------------------- checks
[[ $(job_field JobState) == COMPLETED && $(job_field ExitCode) == 0:0 ]] || fail "the job did not complete with exit code 0"
[[ $(job_field Restarts) == 2 ]] || fail "expected 2 restarts, Slurm counts $(job_field Restarts)"
n_restart=$(grep -c 'ntkhpc-job .* start [12]: .* -restart' "$tmp"/job.log)
[[ $n_restart -eq 2 ]] || fail "the restarted job must pass -restart (found in $n_restart of 2 restarts)"
grep -q 'start 0: .* -restart' "$tmp"/job.log && fail "the first start passed -restart"
# With srun Slurm's SIGTERM reaches the ranks and ntkhpc checkpoints (exit 3); mpirun kills them.
if [[ $LAUNCHER == srun ]]; then
  grep -q "exited with code 3 after SIGTERM" "$tmp"/job.log || fail "with srun, scontrol requeue must end in a checkpoint (exit 3)"
fi
"$NTK_PYTHON" "$NTK_SOURCE_DIR"/tests/h5compare.py "$tmp"/ref.h5 "$tmp"/slurm.h5 --rtol 0 --steps 1000000 --require-all ||
  fail "the preempted job's output differs from the uninterrupted run's"
say "preempted twice (SIGUSR1 + scontrol requeue), output equals the uninterrupted run's bit for bit"

# ---------------------------------------------------------------- the array job
# jobscripts/sweep_array.sbatch with 2 tasks of 1 rank: each runs every other run of the deck into
# sweep.part<i>of2.h5; together they must hold the 8 runs, each equal to the reference's.
jobid=$(cd "$tmp" && NTK_ROOT=$NTK_SOURCE_DIR NTKHPC=$NTKHPC NTK_NRANKS=1 NTK_LAUNCHER=$LAUNCHER \
  sbatch --parsable --array=0-1 --ntasks=1 --time=10 --signal=B:USR1@30 --output="$tmp"/array_%a.log \
  "$NTK_SOURCE_DIR"/jobscripts/sweep_array.sbatch "$deck" -output "$tmp"/sweep.h5) || fail "sbatch --array failed"
array_done() { [[ $(scontrol -o show job "$jobid" 2>/dev/null | grep -c 'JobState=\(COMPLETED\|FAILED\|CANCELLED\)') -ge 2 ]]; }
wait_for array_done 180
[[ $(scontrol -o show job "$jobid" | grep -c 'JobState=COMPLETED.* ExitCode=0:0') -eq 2 ]] ||
  { cat "$tmp"/array_*.log; fail "the array tasks did not both complete with exit code 0"; }
for i in 0 1; do
  "$NTK_PYTHON" "$NTK_SOURCE_DIR"/tests/h5compare.py "$tmp"/ref.h5 "$tmp"/sweep.part${i}of2.h5 --rtol 0 --steps 1000000 ||
    fail "array part $i differs from the uninterrupted run"
done
"$NTK_PYTHON" - "$tmp"/sweep.part0of2.h5 "$tmp"/sweep.part1of2.h5 <<'PY' || fail "the array parts do not split the sweep"
import sys, h5py
keys = []
for path in sys.argv[1:]:
    with h5py.File(path, "r") as f:
        keys += [(g.attrs["width"], g.attrs["seed"], g.attrs["eta_factor"]) for g in f["runs"].values()]
print(f"array parts: {len(keys)} runs, {len(set(keys))} distinct")
sys.exit(0 if len(keys) == 8 and len(set(keys)) == 8 else 1)
PY
say "PASS: preempted job equals the uninterrupted run; the 2 array parts split the sweep exactly"
