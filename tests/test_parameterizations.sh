#!/usr/bin/env bash
# The abc-parameterization and mean field, end to end (docs/conventions.md "Parameterizations"):
#   - -params abc with sp's and muP's exponents gives sp's and muP's trajectories bit for bit
#     (train and test metrics, lambda_t: the same numbers, not just close);
#   - the symmetry (a, b, c) -> (a + t, b - t, c - 2t), applied to one layer kind at a time (input,
#     hidden, output, biases), leaves a 20-step trajectory unchanged to 1e-10;
#   - mean field (-params mf) equals muP with one hidden layer to 1e-10, the symmetry with t = 1 on
#     the readout;
#   - lambda (the lr-weighted NTK) is invariant too, and -ntk_weighting plain records J J^T / N,
#     which equals it for sp and differs for muP.
# On 1 rank and on 2 data-parallel ranks. Learning rates are absolute, so every run takes the same
# steps; the comparisons are against the other run, computed independently.
set -uo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
deck="$NTK_SOURCE_DIR/tests/small_sweep.in"
common=(-quiet -widths 80 -base_width 16 -seeds 5 -etas 0.05 -steps 20 -record_every 1 -test_every 5 -lambda_every 5
        -n_train 64 -n_test 32 -ntk_batch 16 -sigma_b 0.3)
run() { # np name [options]
  local np=$1 name=$2; shift 2
  "$MPIEXEC" -q --oversubscribe -n "$np" "$NTKHPC" "$deck" "${common[@]}" -ranks_per_run "$np" -overwrite -output "$tmp/$name.h5" "$@" \
    >>"$tmp/log" 2>&1 || { echo "ntkhpc failed for $name:"; tail -5 "$tmp/log"; return 1; }
}
# compare A B TOL [GROUPS]: every float dataset of the groups of run 0 (TOL 0: bit for bit; with a
# tolerance, what the network computes: not the parameters' norm and distance, which the symmetry
# rescales)
compare() {
  "$NTK_PYTHON" - "$tmp/$1.h5" "$tmp/$2.h5" "$3" "${4:-train,test,lambda}" <<'PY'
import sys
import h5py, numpy as np
a, b, tol, groups = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4].split(",")
worst = 0.0
with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
    for g in groups:
        ga, gb = fa["runs/run_000000"][g], fb["runs/run_000000"][g]
        assert np.array_equal(ga["step"][()], gb["step"][()]) and (ga["step"][()] >= 0).all(), g
        for name, ds in ga.items():
            x, y = ds[()], gb[name][()]
            if name in ("step", "nconv") or x.dtype.kind != "f":
                continue
            if name == "resid" or (tol > 0 and name in ("kernel_distance", "param_norm", "dist_init")):
                # solver residuals and a distance from 0 at step 0 are not relative quantities; the
                # symmetry rescales the parameters themselves, not what the network computes
                continue
            assert np.isfinite(x).all() and np.isfinite(y).all(), (g, name)
            if tol == 0:
                assert np.array_equal(x, y), "%s/%s differs: %s vs %s" % (g, name, x, y)
            else:
                err = float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-300)))
                worst = max(worst, err)
                assert err <= tol, "%s/%s: rel err %.3e > %g" % (g, name, err, tol)
print("  %s vs %s: worst rel err %.2e" % (a.split("/")[-1], b.split("/")[-1], worst))
PY
}

for np in 1 2; do
  echo "== $np rank(s)"
  # named presets and their abc exponents
  run $np sp -params sp || exit 1
  run $np abc_sp -params abc -abc_input 0,0,0 -abc_hidden 0,0.5,0 -abc_output 0,0.5,0 -abc_bias 0,0,0 || exit 1
  check "abc with sp's exponents is sp bit for bit ($np ranks)" compare abc_sp sp 0
  run $np mup -params mup -ntk_weighting plain || exit 1
  run $np abc_mup -params abc -ntk_weighting plain || exit 1   # the abc defaults are muP's
  check "abc with muP's exponents is muP bit for bit ($np ranks)" compare abc_mup mup 0 train,test,lambda,lambda_plain
  # the symmetry, one layer kind at a time (t = 0.5, -0.5, 0.75, 0.5)
  run $np sym_input -params abc -abc_input 0.5,-0.5,-2 || exit 1
  check "symmetry on the input layer ($np ranks)" compare sym_input mup 1e-10
  run $np sym_hidden -params abc -abc_hidden -0.5,1,1 || exit 1
  check "symmetry on the hidden layers ($np ranks)" compare sym_hidden mup 1e-10
  run $np sym_output -params abc -abc_output 0.75,0.25,-0.5 || exit 1
  check "symmetry on the output layer ($np ranks)" compare sym_output mup 1e-10
  run $np sym_bias -params abc -abc_bias 0.5,-0.5,-2 || exit 1
  check "symmetry on the biases ($np ranks)" compare sym_bias mup 1e-10
  # mean field against muP with one hidden layer
  run $np mf -params mf -depth 1 || exit 1
  run $np mup1 -params mup -depth 1 || exit 1
  check "mean field equals muP with one hidden layer ($np ranks)" compare mf mup1 1e-10
  # plain and lr-weighted kernels: equal for sp (D = I), and muP's plain lambda is larger (r = 5)
  run $np sp_plain -params sp -ntk_weighting plain || exit 1
  check "sp: plain lambda equals the lr-weighted one ($np ranks)" "$NTK_PYTHON" - "$tmp/sp_plain.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    g = f["runs/run_000000"]
    lr, plain = g["lambda/value"][()], g["lambda_plain/value"][()]
    assert np.isfinite(lr).all() and np.allclose(lr, plain, rtol=1e-8, atol=0), (lr, plain)
    assert f["config"].attrs["ntk_weighting"] in (b"plain", "plain")
PY
  check "muP: plain lambda differs from the lr-weighted one ($np ranks)" "$NTK_PYTHON" - "$tmp/mup.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    g = f["runs/run_000000"]
    lr, plain = g["lambda/value"][()], g["lambda_plain/value"][()]
    assert np.isfinite(lr).all() and np.isfinite(plain).all()
    assert (np.abs(plain / lr - 1) > 0.05).all(), (lr, plain)
    text = lambda v: v.decode() if isinstance(v, bytes) else str(v)
    assert "lr-weighted" in text(g["lambda"].attrs["description"]) and "plain" in text(g["lambda_plain"].attrs["description"])
PY
done
# muP's lr-weighted lambda_0 is width-stable and its plain one grows with the width
# (inputs/mup_lambda.in, shortened: widths 256 and 2048, r = 1 and 8).
"$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$NTK_SOURCE_DIR/inputs/mup_lambda.in" -quiet -widths 256,2048 -seeds 0 -params mup \
  -n_train 50 -ntk_batch 50 -output "$tmp/width.h5" >>"$tmp/log" 2>&1
check "muP lambda_0: lr-weighted within 10% from width 256 to 2048, plain grows" "$NTK_PYTHON" - "$tmp/width.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    lam = {int(g.attrs["width"]): (g["lambda/value"][0], g["lambda_plain/value"][0]) for g in f["runs"].values()}
(lr0, pl0), (lr1, pl1) = lam[256], lam[2048]
print("  width 256: lr %.4g plain %.4g; width 2048: lr %.4g plain %.4g" % (lr0, pl0, lr1, pl1))
assert np.isfinite([lr0, pl0, lr1, pl1]).all() and lr0 == pl0  # r = 1: D = I
assert abs(lr1 / lr0 - 1) < 0.10, lr1 / lr0
# plain = (1/r) input part + r output part: (1/8 a + 8 b) / (a + b) with b / a = n0 / d here, about 2.1
assert pl1 / pl0 > 1.8, pl1 / pl0
PY

# Bad input: mf needs one hidden layer; abc exponents come in threes and only with -params abc.
for bad_args in "-params mf -depth 2|mf (mean field) needs" "-params abc -abc_input 0,0|-abc_input: needs 3 exponents" \
                "-params mup -abc_output 0,1,1|-abc_output: only used with -params abc"; do
  args=${bad_args%%|*} want=${bad_args#*|}
  # shellcheck disable=SC2086
  out=$("$NTKHPC" "$deck" "${common[@]}" $args -output "$tmp/bad.h5" 2>&1)
  status=$?
  check "refused: $args (exit $status: $out)" test $status -eq 2 -a ! -e "$tmp/bad.h5"
  check "one line naming the option: $args ($out)" test "$(grep -c . <<<"$out")" -eq 1 -a "${out/$want/}" != "$out"
done
finish parameterizations
