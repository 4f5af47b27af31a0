#!/usr/bin/env bash
# The measurement registry from outside the code (tests/test_registry.c registers a measurement
# "toy" and runs ntkhpc): its datasets must appear in the output with their schema attributes and
# in the checkpoints, must survive a kill -9 and a -restart bit for bit, and postproc must read
# them without naming them. Runs on 1 rank and on 2 ranks (two groups), with and without the kill.
set -uo pipefail
: "${NTK_REGISTRY_BIN:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
deck="$NTK_SOURCE_DIR/tests/small_sweep.in"
args=(-quiet -keep_checkpoints true -widths 32 -seeds 1 -params ntk,mup -etas 0.05 -steps 30 -record_every 3 -lambda_every 5 -ntk_batch 16 -ntk_method exact
      -n_train 64 -n_test 32 -momentum 0.5 -checkpoint_every 4)
run() { # np output [more options]
  local np=$1 out=$2; shift 2
  "$MPIEXEC" -q --oversubscribe -n "$np" "$NTK_REGISTRY_BIN" "$deck" "${args[@]}" -output "$out" "$@" >>"$tmp/log" 2>&1
}

# The output and the checkpoints of an uninterrupted run hold the toy's datasets, right.
check_files() { # output
  "$NTK_PYTHON" - "$1" <<'PY'
import sys
import h5py, numpy as np
path = sys.argv[1]
with h5py.File(path, "r") as f:
    groups = f.attrs["measurements"]
    groups = (groups.decode() if isinstance(groups, bytes) else str(groups)).split(",")
    assert "toy" in groups, groups
    for name, g in f["runs"].items():
        toy, train = g["toy"], g["train"]
        assert toy.attrs["description"], name
        for ds, units in (("step", "steps"), ("theta_sum", "1"), ("count", "1"), ("moments", "1")):
            a = toy[ds].attrs["units"]
            assert (a.decode() if isinstance(a, bytes) else a) == units, (name, ds, a)
        step = toy["step"][()]
        n = len(step)
        assert toy["moments"].shape == (n, 2) and toy["count"].dtype == np.int64, name
        assert np.all(step >= 0) and np.array_equal(step, train["step"][()]), (name, step)
        assert np.array_equal(toy["count"][()], np.arange(1, n + 1)), (name, toy["count"][()])
        m = toy["moments"][()]
        assert np.all(np.isfinite(m)) and np.all(np.isfinite(toy["theta_sum"][()])), name
        # independent of the toy: the train measurement's ||theta||_2 at the same steps
        assert np.allclose(np.sqrt(m[:, 0]), train["param_norm"][()], rtol=1e-12, atol=0), name
        assert np.all(m[:, 1] <= np.sqrt(m[:, 0])) and np.all(m[:, 1] > 0), name
    ckpt = path + ".ckpt/run_000000.h5"
    with h5py.File(ckpt, "r") as c:
        r = c["records.toy"][()]
        assert r.shape == (n, 1 + 1 + 1 + 1 + 2), r.shape
        assert np.array_equal(r[:, 0], np.arange(n)) and np.array_equal(r[:, 3], np.arange(1, n + 1)), r
print("files ok")
PY
}

for np in 1 2; do
  : >"$tmp/log"
  ref="$tmp/ref$np.h5"
  if run "$np" "$ref"; then ok; else bad "np $np: uninterrupted run failed"; tail -5 "$tmp/log"; continue; fi
  if check_files "$ref" >>"$tmp/log" 2>&1; then ok; else bad "np $np: toy datasets in output/checkpoint"; tail -8 "$tmp/log"; fi

  # kill -9 of the rank running run 0 as the toy measures step 15: the last checkpoint is the one
  # before step 12, which holds a running run's state, the toy's 4 rows so far and its count 4.
  out="$tmp/killed$np.h5"
  NTK_TOY_KILL_AT_STEP=15 run "$np" "$out"
  rc=$?
  if [[ $rc -ne 0 ]]; then ok; else bad "np $np: the kill at step 15 did not land (exit 0)"; fi
  if "$NTK_PYTHON" - "$out.ckpt/run_000000.h5" >>"$tmp/log" 2>&1 <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as c:
    ints = c["ints"][()].ravel()
    assert ints[1] == 1 and ints[2] == 12, ints            # RUN_RUNNING, next step 12
    assert c["array.toy.count"][()].ravel().tolist() == [4.0], c["array.toy.count"][()]  # steps 0,3,6,9
    assert c["records.toy"].shape[0] == 4
PY
  then ok; else bad "np $np: the killed run's checkpoint lacks the toy's state"; tail -5 "$tmp/log"; fi
  if run "$np" "$out" -restart; then ok; else bad "np $np: -restart failed"; tail -5 "$tmp/log"; fi
  if "$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/h5same.py" "$ref" "$out" >>"$tmp/log" 2>&1; then ok; else
    bad "np $np: restarted output differs from the uninterrupted one"; tail -8 "$tmp/log"; fi
done

# The toy's option: listed by -help under its heading, checked by the app's reader, used.
"$NTK_REGISTRY_BIN" -help >"$tmp/help" 2>&1 </dev/null
if grep -A2 -x 'Toy:' "$tmp/help" | grep -qE -- '^  -toy_scale <.+>: Factor on theta_sum \(default: 1\)$'; then ok; else bad "-help does not list -toy_scale under Toy:"; fi
"$MPIEXEC" -q -n 1 "$NTK_REGISTRY_BIN" "$deck" "${args[@]}" -output "$tmp/bad.h5" -toy_scale -2 >"$tmp/bad.log" 2>&1
rc=$?
if [[ $rc -eq 2 && $(grep -c . "$tmp/bad.log") -eq 1 ]] && grep -q '^ntkhpc: error: option -toy_scale: ' "$tmp/bad.log"; then ok; else
  bad "-toy_scale -2: exit $rc, want 2 and one line"; cat "$tmp/bad.log"; fi
if run 1 "$tmp/scaled.h5" -toy_scale 2 && "$NTK_PYTHON" - "$tmp/ref1.h5" "$tmp/scaled.h5" >>"$tmp/log" 2>&1 <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
    x, y = a["runs/run_000000/toy/theta_sum"][()], b["runs/run_000000/toy/theta_sum"][()]
    assert np.array_equal(2 * x, y), (x, y)
PY
then ok; else bad "-toy_scale 2 does not double theta_sum"; tail -5 "$tmp/log"; fi

# postproc reads the toy from the schema, without code of its own for it.
if PYTHONPATH="$NTK_SOURCE_DIR/postproc" "$NTK_PYTHON" - "$tmp/ref2.h5" >>"$tmp/log" 2>&1 <<'PY'
import sys
import numpy as np
from ntkpost import io
runs = io.load([sys.argv[1]]).runs
assert len(runs) == 2
for r in runs:
    toy = r.measurements["toy"]
    assert set(toy) == {"step", "theta_sum", "count", "moments"}, set(toy)
    assert np.array_equal(toy["count"], np.arange(1, len(toy["step"]) + 1))
    assert r.schema["toy"]["datasets"]["moments"]["width"] == 2
    assert r.schema["toy"]["datasets"]["theta_sum"]["description"] == "sum of the parameters"
print("postproc ok")
PY
then ok; else bad "postproc does not read the toy measurement"; tail -8 "$tmp/log"; fi

# -lambda_dense_steps K: lambda/ at every step t < K, then every -lambda_every steps and at the last
# step, with no unwritten row (n_records of the schema = the schedule's length); the reference
# schedule is built here from its definition.
for sched in "30 7" "32 7" "30 40" "32 0"; do
  read -r T K <<<"$sched"
  out="$tmp/dense_${T}_$K.h5"
  if run 1 "$out" -steps "$T" -lambda_dense_steps "$K" && "$NTK_PYTHON" - "$out" "$T" "$K" >>"$tmp/log" 2>&1 <<'PY'
import sys
import h5py, numpy as np
path, T, K = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
every = 5
want = sorted(set(range(min(K, T + 1))) | set(range(0, T + 1, every)) | {T})
with h5py.File(path, "r") as f:
    assert int(f["config"].attrs["steps"]) == T and int(f["config"].attrs["lambda_dense_steps"]) == K
    for name, g in f["runs"].items():
        step = g["lambda/step"][()]
        assert step.tolist() == want, (name, step.tolist(), want)
        assert np.all(np.isfinite(g["lambda/value"][()])), name
PY
  then ok; else bad "lambda schedule -steps $T -lambda_dense_steps $K"; tail -5 "$tmp/log"; fi
done

# -ntk_batch train is the training set itself: lambda_0 and the effective deck as with -ntk_batch
# n_train given as a number; the default for full-batch GD is the same when the training set's
# exact Gram matrix fits -gram_max_rows (120 x 10 rows), and 100 samples when it does not.
nb_run() { "$MPIEXEC" -q -n 1 "$NTK_REGISTRY_BIN" "$deck" -quiet -widths 32 -seeds 1 -params ntk -etas 0.05 -steps 2 -n_train 120 \
             -n_test 16 -ntk_method exact -output "$1" "${@:2}" >>"$tmp/log" 2>&1; }
if nb_run "$tmp/nb_train.h5" -ntk_batch train && nb_run "$tmp/nb_120.h5" -ntk_batch 120 && nb_run "$tmp/nb_default.h5" &&
   nb_run "$tmp/nb_small.h5" -gram_max_rows 1199 && "$NTK_PYTHON" - "$tmp" >>"$tmp/log" 2>&1 <<'PY'
import sys
import h5py, numpy as np
d = sys.argv[1]
def get(name):
    with h5py.File("%s/%s.h5" % (d, name), "r") as f:
        deck = [l for l in f["deck"][()].decode().splitlines() if not l.startswith(("-output ", "-checkpoint_dir "))]
        return int(f["config"].attrs["ntk_batch"]), float(f["instances"]["lambda0"][0]), deck
(n_t, l_t, deck_t), (n_n, l_n, deck_n), (n_d, l_d, deck_d), (n_s, l_s, _) = map(get, ("nb_train", "nb_120", "nb_default", "nb_small"))
assert n_t == n_n == n_d == 120 and deck_t == deck_n == deck_d, (n_t, n_n, n_d)
assert np.isfinite(l_t) and l_t == l_n == l_d, (l_t, l_n, l_d)
assert n_s == 100 and np.isfinite(l_s) and l_s != l_t, (n_s, l_s)
PY
then ok; else bad "-ntk_batch train and its default"; tail -5 "$tmp/log"; fi

finish test_registry
