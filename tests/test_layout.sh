#!/usr/bin/env bash
# -ranks_per_run auto and -plan_only (docs/scaling.md):
#   - plan_only listings checked by tests/layout_check.py against its own alpha-beta model, the
#     batch rule, the FLOPs of an fc net, the schedule's lower bound and the idle fraction:
#     inputs/wrn.in on 256 ranks (idle under 5%; the integer layout of groups of 32: 0 idle with 8
#     runs, 25% with the 6 runs of before), inputs/fc_fmnist.in on 32, 64 and 256 ranks, a small
#     sweep on 1, 2 and 4; fc_fmnist.in with kernel regression, its kernel phase from the relu NTK's
#     counted FLOPs (with and without the NNGP prior); -plan_only writes no file;
#   - a small sweep trained under auto on 1, 2 and 4 ranks (4 ranks: groups of 2, 1 and 1) against
#     the same runs under fixed layouts: bit for bit where a run's group has the same size, to 1e-10
#     elsewhere; the progress line reports the idle fraction;
#   - the memory rule: with -memory_limit between a wide run's needs on 1 and 2 ranks (read from the
#     memory check's own line), auto gives it groups of 2 or more and the job runs, where groups
#     of one are refused;
#   - a run killed under auto (at an observed pause) and restarted with -restart: bit for bit the
#     uninterrupted auto job (the layout is planned on the whole sweep, so every run keeps its group).
set -uo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
S=$NTK_SOURCE_DIR
lcheck() { # plan-file checker-args...
  if "$NTK_PYTHON" "$S/tests/layout_check.py" "$@" >"$tmp/check.log" 2>&1; then ok; else bad "layout_check $*"; fi
  grep -v '^FAIL' "$tmp/check.log" | sed 's/^/    /'
  grep '^FAIL' "$tmp/check.log" | head -8
}
plan() { # out deck options...: -plan_only on one process
  local out=$1; shift
  (cd "$tmp" && "$NTKHPC" "$@" -plan_only true) >"$out" 2>"$out.err" || { bad "plan_only $*"; cat "$out.err"; }
}

# ---- the decks of the study, planned for the cluster
plan "$tmp/plan_wrn256" "$S/inputs/wrn.in" -plan_ranks 256
lcheck "$tmp/plan_wrn256" --ranks 256 --batch 128 --batch-norm 1 --max-idle 0.05
plan "$tmp/plan_wrn256f" "$S/inputs/wrn.in" -plan_ranks 256 -ranks_per_run 32
lcheck "$tmp/plan_wrn256f" --ranks 256 --batch 128 --batch-norm 1 --fixed 32 --expect-idle 0
plan "$tmp/plan_wrn256old" "$S/inputs/wrn.in" -plan_ranks 256 -ranks_per_run 32 -eta_factors 0.5,1,1.5,2.5,3,4
lcheck "$tmp/plan_wrn256old" --ranks 256 --batch 128 --batch-norm 1 --fixed 32 --expect-idle 0.25
for W in 32 64 256; do
  plan "$tmp/plan_fc$W" "$S/inputs/fc_fmnist.in" -plan_ranks $W -ranks_per_run auto
  lcheck "$tmp/plan_fc$W" --ranks $W --batch 2048 --max-idle 0.05
done
plan "$tmp/plan_fc1w" "$S/inputs/fc_fmnist.in" -plan_ranks 64 -ranks_per_run auto -widths 256 -plan_gflops 2 -plan_bandwidth 10 -plan_latency 50
lcheck "$tmp/plan_fc1w" --ranks 64 --batch 2048 --fc-dims 784,256,256,256,10 --gflops 2 --bandwidth 10 --latency 50
for prior in true false; do # the kernel phase: the relu NTK's Gram matrices (and the NNGP's) and their algebra
  plan "$tmp/plan_fck" "$S/inputs/fc_fmnist.in" -plan_ranks 64 -ranks_per_run auto -kernel_regression true -kernel_prior $prior \
    -n_train 1000 -n_test 500
  lcheck "$tmp/plan_fck" --ranks 64 --batch 1000 --kernel 1000,500,784,3,$([[ $prior == true ]] && echo 1 || echo 0)
done
(cd "$tmp" && "$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$S/inputs/fc_fmnist.in" -ranks_per_run auto -plan_only true) >"$tmp/plan_np2" 2>&1
check "-plan_only on 2 processes plans for the job's 2 ranks, printed once" \
  test "$(grep -c 'plan: 144 runs on 2 ranks' "$tmp/plan_np2")" = 1
check "-plan_only writes nothing" test -z "$(ls -A "$tmp" | grep -v '^plan_\|^check')"

# ---- a small sweep trained under auto: runs of unequal cost, so that 4 ranks plan groups of 2, 1, 1
deck="$S/tests/small_sweep.in"
args=(-quiet -widths 96,256 -seeds 3 -params ntk -etas 0.02,0.05,0.1 -steps 10 -plan_latency 100 -progress_seconds 1)
run() { # np out options...
  local np=$1 out=$2; shift 2
  "$MPIEXEC" -q --oversubscribe -n "$np" "$NTKHPC" "$deck" "${args[@]}" -output "$tmp/$out" "$@" >"$tmp/$out.log" 2>&1 ||
    { bad "ntkhpc on $np ranks $*"; tail -5 "$tmp/$out.log"; }
}
for np in 1 2 4; do
  plan "$tmp/small$np" "$deck" "${args[@]}" -plan_ranks $np -ranks_per_run auto
  lcheck "$tmp/small$np" --ranks $np --batch 200 --latency 100 --max-idle 0.05
done
check "4 ranks plan unequal groups" grep -q "(2 ranks)" "$tmp/small4"
for np in 1 2 4; do run $np auto$np.h5 -ranks_per_run auto; done
run 1 fix1.h5 -ranks_per_run 1
run 2 fix2.h5 -ranks_per_run 2
check "the progress line has the idle fraction" grep -q "idle fraction of the ranks: [0-9.]*" "$tmp/auto4.h5.log"
# per run: bit for bit against the fixed layout with its group's size, 1e-10 against the other
if "$NTK_PYTHON" - "$tmp" >"$tmp/cmp.log" 2>&1 <<'EOF'; then ok; else bad "auto vs fixed layouts"; fi
import re, sys
import h5py
import numpy as np
tmp = sys.argv[1]
def sizes(plan):
    return {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"plan: run (\d+):.*? ranks (\d+) start", open(plan).read())}
def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.startswith("runs/") and not name.endswith("wall_seconds"):
                out[name] = obj[()]
        f.visititems(visit)
    return out
fixed = {1: datasets(f"{tmp}/fix1.h5"), 2: datasets(f"{tmp}/fix2.h5")}
bad = n_same = n_close = 0
for np_ in (1, 2, 4):
    got, G = datasets(f"{tmp}/auto{np_}.h5"), sizes(f"{tmp}/small{np_}")
    assert set(got) == set(fixed[1]), "the files hold different datasets"
    assert set(G.values()) <= {1, 2}, f"{np_} ranks: groups of {sorted(set(G.values()))}: no fixed layout to compare with"
    for name, v in got.items():
        run = int(re.match(r"runs/run_(\d+)/", name).group(1))
        ref = fixed[G[run]][name]
        if v.dtype.kind not in "fc":
            same = np.array_equal(v, ref)
        elif v.dtype.kind == "c" or v.dtype.names:
            same = v.tobytes() == ref.tobytes()
        else:
            same = np.array_equal(v, ref, equal_nan=True)
        other = fixed[3 - G[run]][name]
        close = (v.dtype.kind not in "f") or np.allclose(v, other, rtol=1e-10, atol=1e-14, equal_nan=True)
        if not same:
            print(f"FAIL: {np_} ranks, {name}: not bit for bit the -ranks_per_run {G[run]} result"); bad += 1
        elif not close:
            print(f"FAIL: {np_} ranks, {name}: differs from -ranks_per_run {3 - G[run]} beyond 1e-10"); bad += 1
        else:
            n_same += 1; n_close += 1
print(f"{n_same} datasets bit for bit as the fixed layout of their group size, {n_close} within 1e-10 of the other")
sys.exit(1 if bad else 0)
EOF
sed 's/^/    /' "$tmp/cmp.log" | head -12

# ---- the memory rule: a run gets no group smaller than the ranks its memory needs. The needs per
# rank come from the memory check's own refusal line (-memory_limit 1k) with groups of 1 and 2; a
# limit between them must give the wider net's runs groups of 2 or more, and the job then passes
# the memory check that fixed groups of 1 fail.
need() { # width G: the bytes per rank the memory check says a run of that width needs on G ranks
  "$MPIEXEC" -q --oversubscribe -n "$2" "$NTKHPC" "$deck" "${args[@]}" -widths "$1" -ranks_per_run "$2" -memory_limit 1k \
    -output "$tmp/need.h5" 2>&1 | sed -n 's/.* needs \([0-9]*\) bytes .*/\1/p' | head -1
}
n96=$(need 96 1) n1=$(need 256 1) n2=$(need 256 2)
check "the memory check names the needs ($n96, $n1, $n2 bytes)" test -n "$n96" -a -n "$n1" -a -n "$n2"
if [ -n "$n96" ] && [ -n "$n1" ] && [ -n "$n2" ]; then
  lo=$(( n96 > n2 ? n96 : n2 ))
  lim=$(( (lo + n1) / 2 ))
  check "width 96 fits one rank, width 256 only two" test "$n96" -le "$lim" -a "$n2" -le "$lim" -a "$n1" -gt "$lim"
  plan "$tmp/mem4" "$deck" "${args[@]}" -plan_ranks 4 -ranks_per_run auto -memory_limit "$lim"
  lcheck "$tmp/mem4" --ranks 4 --batch 200 --latency 100 --min-ranks 96:1,256:2
  check "the listing names the memory priced" grep -q "memory $lim bytes per rank (-memory_limit)" "$tmp/mem4"
  run 4 mem4.h5 -ranks_per_run auto -memory_limit "$lim"
  if "$MPIEXEC" -q --oversubscribe -n 4 "$NTKHPC" "$deck" "${args[@]}" -ranks_per_run 1 -memory_limit "$lim" \
    -output "$tmp/memfix.h5" >"$tmp/memfix.log" 2>&1; then bad "fixed groups of one pass the memory check at $lim bytes"
  else check "fixed groups of one are refused by the memory check" grep -q "option -memory_limit: run" "$tmp/memfix.log"; fi
fi

# ---- restart under auto: killed at an observed pause, restarted: bit for bit
source "$S/tests/faultlib.sh"
args+=(-checkpoint_every 2)
start 4 "$tmp/k.h5" -ranks_per_run auto -pause_at_step 5
wait_paused "$tmp/k.h5" || bad "no run paused at step 5"
crash || bad "a kill -9 did not land mid-run"
"$MPIEXEC" -q --oversubscribe -n 4 "$NTKHPC" "$deck" "${args[@]}" -output "$tmp/k.h5" -ranks_per_run auto -restart >"$tmp/k.log" 2>&1 &&
  ok || { bad "restart under auto"; tail -5 "$tmp/k.log"; }
if "$NTK_PYTHON" "$S/tests/h5same.py" "$tmp/auto4.h5" "$tmp/k.h5" >"$tmp/same.log" 2>&1; then ok; else
  bad "the restarted auto job differs from the uninterrupted one"; head -8 "$tmp/same.log"; fi
finish test_layout
