#!/usr/bin/env bash
# One copy of the data per node (-data_shared, src/app/shared_data.c): the training and test sets in
# an MPI-3 shared-memory window of the node change no result.
#   - with the window and without it (-data_shared false) the outputs are the same bit for bit
#     (tests/h5same.py): 1 rank (gd); 4 ranks in groups of 2 with sgd, flips and crops, lambda and
#     the Hessian on their probe batches (CIFAR-10-shaped data);
#   - a run killed mid-way with the window and restarted without it ends bit for bit as the
#     uninterrupted run (the option is not part of the checkpoints' identity);
#   - the same for -kernel_regression (its Gram assembly reads the window's inputs in place);
#   - the probe batch every rank reads from the window is numpy's: bytes / 255 standardised with
#     the training subset's per-pixel mean and population std (1 rank, and 4 ranks in groups of 2);
#   - the memory check counts a rank's share of its node's copy: 1/4 of the data on 4 ranks;
#   - a window that cannot be made (Open MPI without its osc/sm component) is one line and exit 2,
#     with no output; -data_shared false then runs.
# Every kill acts on an observed event (the -pause_at_step hook, tests/faultlib.sh).
set -uo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}" "${NTK_FEATURES_BIN:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
same() { # a b: bit for bit
  if "$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/h5same.py" "$1" "$2" >"$tmp/same.log" 2>&1; then ok; else
    bad "$2 differs from $1:"; sed 's/^/    /' "$tmp/same.log" | head -8; fi
}
# CIFAR-10 binary batches (label byte + 3072 pixel bytes per record): 5 train batches + test
cdir="$tmp/cifar"
mkdir -p "$cdir"
"$NTK_PYTHON" - "$cdir" <<'PY'
import sys, numpy as np
r = np.random.default_rng(19)
for f in ["data_batch_%d" % b for b in range(1, 6)] + ["test_batch"]:
    n = 16
    pix = r.integers(0, 256, (n, 3072))
    pix[:, :32] = 7  # a constant row of pixels: centred only, never divided by a zero std
    np.concatenate([r.integers(0, 10, (n, 1)), pix], axis=1).astype(np.uint8).tofile(f"{sys.argv[1]}/{f}.bin")
PY
deck="$NTK_SOURCE_DIR/tests/small_sweep.in"
args=(-quiet -progress_seconds 100)
run() { # np out [options]: ntkhpc in the foreground, its exit code
  local np=$1 out=$2; shift 2
  "$MPIEXEC" -q --oversubscribe -n "$np" "$NTKHPC" "$deck" "${args[@]}" -output "$out" "$@" >>"$tmp/log" 2>&1
}
source "$NTK_SOURCE_DIR/tests/faultlib.sh"

# ---- 1 rank, gd: with and without the window
small=(-widths 48 -seeds 3 -params ntk,mup -etas 0.1 -steps 10)
run 1 "$tmp/g1.h5" "${small[@]}" && ok || bad "1 rank with the window failed"
run 1 "$tmp/g1p.h5" "${small[@]}" -data_shared false && ok || bad "1 rank without the window failed"
same "$tmp/g1.h5" "$tmp/g1p.h5"

# ---- 4 ranks in groups of 2: sgd with flips and crops, lambda and the Hessian on probe batches
cf=(-arch fc -depth 2 -activation relu -widths 32 -seeds 5 -params ntk -etas 0.05,0.1 -steps 12 -record_every 1 -test_every 4
    -dataset cifar10 -data_dir "$cdir" -n_train 64 -n_test 16 -ntk_batch 16 -lambda_every 4 -hess_every 4 -hess_batch 16
    -optimizer sgd -batch_size 24 -augment true -augment_pad 4 -ranks_per_run 2 -checkpoint_every 2)
args+=("${cf[@]}")
run 4 "$tmp/c4.h5" && ok || bad "4 ranks with the window failed"
run 4 "$tmp/c4p.h5" -data_shared false && ok || bad "4 ranks without the window failed"
same "$tmp/c4.h5" "$tmp/c4p.h5"

# ---- killed with the window at step 6, restarted without it: the uninterrupted output
start 4 "$tmp/k4.h5" -pause_at_step 6
wait_paused "$tmp/k4.h5" || bad "no run paused at step 6"
crash || bad "a kill -9 did not land mid-run"
run 4 "$tmp/k4.h5" -restart -data_shared false && ok || bad "the restart without the window failed"
same "$tmp/c4.h5" "$tmp/k4.h5"
args=(-quiet -progress_seconds 100)

# ---- the infinite-width kernel's Gram matrix reads train and test inputs as one array: in the
# window they are (no copy), private copies are joined; the same output either way
kr=(-arch fc -depth 2 -activation relu -widths 32 -seeds 1 -params ntk -etas 0.5 -n_train 60 -n_test 20 -steps 4
    -record_every 2 -test_every 2 -kernel_regression true -kernel_tile 16 -ntk_batch 30 -ranks_per_run 2)
run 4 "$tmp/kr.h5" "${kr[@]}" && ok || bad "kernel regression with the window failed"
run 4 "$tmp/krp.h5" "${kr[@]}" -data_shared false && ok || bad "kernel regression without the window failed"
same "$tmp/kr.h5" "$tmp/krp.h5"

# ---- the probe batch as the ranks read it from the window, against numpy
for layout in "1 1" "4 2"; do
  np=${layout% *} rpr=${layout#* }
  dump_run "$np" "$tmp/p$np.h5" "${cf[@]}" -ranks_per_run "$rpr" -etas 0.05 -steps 2 -lambda_every 0 -hess_every 0 \
    -n_train 48 || { bad "the probe dump on $np ranks failed"; tail -5 "$tmp/log"; continue; }
  if "$NTK_PYTHON" - "$cdir" "$tmp/p$np.h5" >"$tmp/check.log" 2>&1 <<'PY'; then ok; else bad "probe batch on $np ranks is not numpy's:"; sed 's/^/    /' "$tmp/check.log" | tail -5; fi
import sys, h5py, numpy as np
d, n, N = 3072, 48, 16  # features, -n_train, -ntk_batch
rec = np.concatenate([np.fromfile(f"{sys.argv[1]}/data_batch_{b}.bin", np.uint8).reshape(-1, 3073) for b in range(1, 6)])[:n]
x = rec[:, 1:] / 255.0
mu, sd = x.mean(0), x.std(0)
x = (x - mu) / np.where(sd < 1e-8, 1.0, sd)
y = np.eye(10)[rec[:, 0]]
with h5py.File(sys.argv[2], "r") as f:
    runs = list(f["runs"])
    assert runs, "no runs"
    for r in runs:
        g = f["runs"][r]["probe"]
        xs, ys = g["x"][:], g["y"][:]
        assert xs.shape[0] >= 1 and np.isfinite(xs).all(), "no finite rows"
        for row_x, row_y in zip(xs, ys):
            err = np.abs(row_x - x[:N].ravel()).max()
            assert err < 1e-12, f"run {r}: x differs from numpy by {err}"
            assert (row_y == y[:N].ravel()).all(), f"run {r}: y differs"
print("probe batches equal numpy's on", len(runs), "runs")
PY
done

# ---- the memory check: a rank holds 1/4 of the node's copy on 4 ranks, all of it without the window
mem() { # np [options]: the "data ..." figure of the refusal
  "$MPIEXEC" -q --oversubscribe -n "$1" "$NTKHPC" "$deck" "${args[@]}" -output "$tmp/m.h5" -memory_limit 1k "${@:2}" 2>&1 |
    grep -o 'data [0-9.]* [KMG]*i*B' | head -1
}
expect() { # n_train n_test parts: the memory check's figure, in numpy's arithmetic
  "$NTK_PYTHON" -c "
import sys
n, m, parts = map(int, sys.argv[1:])
b = ((n + m) * (784 + 10) * 8 + (n + m) * 4) / parts
u = ['B', 'KiB', 'MiB', 'GiB']; i = 0
while b >= 1024 and i < 3: b /= 1024; i += 1
print('data ' + ('%.1f %s' % (b, u[i]) if i else '%.0f B' % b))" "$@"
}
for c in "1 true 1" "4 true 4" "4 false 1"; do
  set -- $c
  got=$(mem "$1" -n_train 200 -n_test 100 -data_shared "$2") want=$(expect 200 100 "$3")
  [[ $got == "$want" ]] && ok || bad "memory check on $1 ranks, -data_shared $2: '$got', expected '$want'"
done

# ---- a window that cannot be made: one line, exit 2, no output; without the window it runs
OMPI_MCA_osc='^sm' "$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$deck" "${args[@]}" -output "$tmp/w.h5" -steps 2 >"$tmp/w.log" 2>&1
rc=$?
((rc == 2)) && ok || bad "no window: exit $rc, expected 2"
n=$(grep -c '^ntkhpc: error: option -data_shared: cannot allocate' "$tmp/w.log")
((n == 1)) && ok || { bad "no window: expected one error line naming -data_shared:"; head -3 "$tmp/w.log"; }
[[ ! -e $tmp/w.h5 && ! -e $tmp/w.h5.partial ]] && ok || bad "no window: an output was written"
OMPI_MCA_osc='^sm' "$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$deck" "${args[@]}" -output "$tmp/w.h5" -steps 2 -data_shared false \
  >>"$tmp/log" 2>&1 && ok || bad "no window, -data_shared false: the run failed"

finish shared_data
