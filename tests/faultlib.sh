# What the fault tests share (source after testlib.sh): jobs started in the background, paused at a
# step by the -pause_at_step test hook (docs/robustness.md "Test hooks") and killed or signalled
# there, so every kill and signal acts on an observed event, never after a guessed time.
#   start NP OUT [OPTS..]   ntkhpc on NP ranks in the background (deck $deck, options ${args[@]}),
#                           pid of mpirun in $job; removes OUT's stale pause markers first
#   wait_paused OUT         waits until a run of the job pauses: its marker in $marker, its text
#                           ("run R step T") in $paused; returns 1 if the job ended first
#   release                 removes $marker: the paused run goes on
#   crash                   kill -9 of the ranks of $job (mpirun too if it does not notice);
#                           fails if the job had already ended or ended with status 0
: "${deck:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
start() {
  local np=$1 out=$2; shift 2
  rm -f "$out".paused_run_*
  "$MPIEXEC" -q --oversubscribe -n "$np" "$NTKHPC" "$deck" "${args[@]}" -output "$out" "$@" >>"$tmp/log" 2>&1 &
  job=$!
}
wait_paused() {
  local m
  while :; do
    for m in "$1".paused_run_[0-9][0-9][0-9][0-9][0-9][0-9]; do
      if [[ -e $m ]] && paused=$(cat "$m" 2>/dev/null); then marker=$m; return 0; fi
    done
    kill -0 "$job" 2>/dev/null || return 1
    sleep 0.01
  done
}
release() { rm -f "$marker"; }
crash() {
  local ranks rc
  ranks=$(pgrep -P "$job")
  [[ -n $ranks ]] && kill -9 $ranks 2>/dev/null
  for _ in $(seq 100); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$job" 2>/dev/null; then kill -9 $(pgrep -P "$job") "$job" 2>/dev/null; fi
  wait "$job" 2>/dev/null
  rc=$?
  [[ -n $ranks && $rc -ne 0 ]]
}
