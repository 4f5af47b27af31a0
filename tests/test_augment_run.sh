#!/usr/bin/env bash
# Augmentation end to end (-augment, src/train/run_state.c pass()): with sgd and with gd, on Fashion-MNIST
# (1 x 28 x 28) and a small CIFAR-10-shaped set (3 x 32 x 32), the trajectories on 1 rank, on 4
# ranks in one group, on 4 ranks in groups of 2 and with a different -eval_chunk agree to 1e-10;
# augmentation changes training but not the step-0 evaluation (evaluations are never augmented).
# Also the WRN decks (inputs/wrn.in, inputs/wrn_small.in) shrunk to a WRN-10-1: batch norm and
# augmentation on 1 and 2 ranks.
set -euo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmp="$NTK_SOURCE_DIR/tests/h5compare.py"
base=(-arch fc -depth 2 -activation relu -widths 32 -seeds 5 -params ntk -etas 0.05 -steps 12
      -record_every 1 -test_every 4 -quiet -progress_seconds 100)
fm=(-dataset fashion_mnist -n_train 96 -n_test 40 -ntk_batch 20)
# CIFAR-10 binary batches: label byte + 3072 pixel bytes per record, 5 train batches + test
cdir="$tmp/cifar"
mkdir -p "$cdir"
for f in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do
  "$NTK_PYTHON" -c "
import numpy as np, sys
r = np.random.default_rng(abs(hash(sys.argv[1])) % 2**32)
n = 16
rec = np.concatenate([r.integers(0, 10, (n, 1)), r.integers(0, 256, (n, 3072))], axis=1).astype(np.uint8)
rec.tofile(sys.argv[2])" "$f" "$cdir/$f.bin"
done
cf=(-dataset cifar10 -data_dir "$cdir" -n_train 64 -n_test 16 -ntk_batch 16)
run() { # np out options...
  local np=$1 out=$2
  shift 2
  "$MPIEXEC" --oversubscribe -n "$np" "$NTKHPC" -output "$tmp/$out" "${base[@]}" "$@" >"$tmp/$out.log" 2>&1 ||
    { echo "FAIL: ntkhpc on $np ranks $*"; cat "$tmp/$out.log"; exit 1; }
}
sgd=(-optimizer sgd -batch_size 24 -augment true -augment_pad 4)
run 1 fm1.h5 "${fm[@]}" "${sgd[@]}"
run 4 fm4.h5 "${fm[@]}" "${sgd[@]}" -ranks_per_run 4
run 4 fm4g2.h5 "${fm[@]}" "${sgd[@]}" -ranks_per_run 2
run 1 fm1c5.h5 "${fm[@]}" "${sgd[@]}" -eval_chunk 5
run 1 fm1off.h5 "${fm[@]}" -optimizer sgd -batch_size 24
gd=(-optimizer gd -augment true -augment_pad 3)
run 1 gd1.h5 "${fm[@]}" "${gd[@]}"
run 4 gd4.h5 "${fm[@]}" "${gd[@]}" -ranks_per_run 4
run 1 cf1.h5 "${cf[@]}" "${sgd[@]}"
run 4 cf4.h5 "${cf[@]}" "${sgd[@]}" -ranks_per_run 4
# The WRN decks, shrunk to WRN-10-1 on a few images (tiny but the same options): they parse, run,
# and with batch norm and augmentation give the same trajectories on 1 and 2 ranks.
tiny=(-wrn_depth 10 -widths 1 -ntk_batch 4 -n_test 16 -lambda_every 0 -quiet -progress_seconds 100)
# Absolute learning rates: eta_factor / lambda_0 differs in the last bits between rank counts, and
# h5compare matches runs by eta.
for deck in wrn_small.in wrn.in; do grep -v '^-eta_factors' "$NTK_SOURCE_DIR/inputs/$deck" >"$tmp/$deck"; done
wrun() { # np out deck options...
  local np=$1 out=$2 deck=$3
  shift 3
  "$MPIEXEC" --oversubscribe -n "$np" "$NTKHPC" "$tmp/$deck" -output "$tmp/$out" "${tiny[@]}" "$@" \
    >"$tmp/$out.log" 2>&1 || { echo "FAIL: ntkhpc on $np ranks inputs/$deck $*"; cat "$tmp/$out.log"; exit 1; }
}
wrun 1 ws1.h5 wrn_small.in -n_train 16 -steps 3 -etas 2 -augment true
wrun 2 ws2.h5 wrn_small.in -n_train 16 -steps 3 -etas 2 -augment true -ranks_per_run 2
wrun 1 wl1.h5 wrn.in -data_dir "$cdir" -n_train 32 -batch_size 8 -steps 3 -etas 0.5 -ranks_per_run 1
wrun 2 wl2.h5 wrn.in -data_dir "$cdir" -n_train 32 -batch_size 8 -steps 3 -etas 0.5 -ranks_per_run 2
status=0
for pair in "fm1 fm4" "fm1 fm4g2" "fm1 fm1c5" "gd1 gd4" "cf1 cf4" "ws1 ws2" "wl1 wl2"; do
  set -- $pair
  echo "== $1 vs $2"
  "$NTK_PYTHON" "$cmp" "$tmp/$1.h5" "$tmp/$2.h5" --rtol 1e-10 --steps 12 --require-all || status=1
done
# Step 0 is evaluated on the data as they are; after that augmentation changes the trajectory.
"$NTK_PYTHON" - "$tmp/fm1.h5" "$tmp/fm1off.h5" "$tmp/gd1.h5" <<'EOF' || status=1
import sys, h5py, numpy as np
def train_loss(path):
    with h5py.File(path, "r") as f:
        (name,) = list(f["runs"])
        d = f["deck"][()]
        return f["runs"][name]["train"]["loss"][:], d.decode() if isinstance(d, bytes) else d
on, deck = train_loss(sys.argv[1])
off, _ = train_loss(sys.argv[2])
gd, gdeck = train_loss(sys.argv[3])
ok = True
def check(cond, msg):
    global ok
    print(("ok   " if cond else "FAIL ") + msg)
    ok &= bool(cond)
check(np.all(np.isfinite(on)) and np.all(np.isfinite(gd)) and len(on) == 13, "finite losses at every step")
check(on[0] == off[0], f"step-0 loss equal with and without augmentation ({on[0]!r} vs {off[0]!r})")
rel = np.abs(on[1:] - off[1:]) / np.abs(off[1:])
check(rel.min() > 1e-8, f"augmentation changes every later loss (min relative change {rel.min():.2e})")
check(on[-1] < on[0] and gd[-1] < gd[0], "training still lowers the train loss")
check("-augment true" in deck and "-augment_pad 4" in deck and "-augment_pad 3" in gdeck, "the effective deck records -augment and -augment_pad")
sys.exit(0 if ok else 1)
EOF
exit $status
