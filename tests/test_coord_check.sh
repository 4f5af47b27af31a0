#!/usr/bin/env bash
# The coordinate check's width exponents (docs/conventions.md "Feature learning"), the shortened
# form of inputs/coord_check.in: widths 1024, 2048, 4096, 6 seeds, one step at the deck's
# width-independent eta = 0.02, |dz_l| of every layer after that step (features/dz_rms). The slope
# of log |dz_l| against log n is fitted per seed with numpy here (not through postproc) and
# averaged over the seeds; the tolerances are the issue's:
#   ntk: every hidden layer -0.5 +- 0.1;  mup: every layer 0 +- 0.1;
#   sp (eta = 0.02 keeps one step linear at width 4096; the second step diverges there): the output
#   +1 +- 0.15, z_1 -0.5 +- 0.1, the deeper hidden layers +0.5 +- 0.15.
set -uo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
"$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$NTK_SOURCE_DIR/inputs/coord_check.in" -quiet -widths 1024,2048,4096 \
  -seeds 0,1,2,3,4,5 -steps 1 -output "$tmp/cc.h5" >"$tmp/log" 2>&1 || { cat "$tmp/log"; echo "0 passed, 1 failed"; exit 1; }
"$NTK_PYTHON" - "$tmp/cc.h5" <<'PY'
import sys
import h5py, numpy as np

PARAMS = {0: "ntk", 1: "sp", 2: "mup"}
dz = {}
with h5py.File(sys.argv[1], "r") as f:
    for g in f["runs"].values():
        steps = g["features/step"][()]
        row = list(steps).index(1)
        v = g["features/dz_rms"][row]
        assert np.isfinite(v).all() and (v > 0).all(), (g.name, v)
        p = int(g.attrs["param"]) if not isinstance(g.attrs["param"], (str, bytes)) else g.attrs["param"]
        dz[(PARAMS.get(p, p), int(g.attrs["seed"]), int(g.attrs["width"]))] = v
widths = sorted({k[2] for k in dz})
seeds = sorted({k[1] for k in dz})
L1 = len(next(iter(dz.values())))
slope = {}
for p in ("ntk", "sp", "mup"):
    per_seed = [np.polyfit(np.log(widths), np.log([dz[(p, s, w)] for w in widths]), 1)[0] for s in seeds]
    slope[p] = np.mean(per_seed, axis=0)
    print("%-4s slopes after step 1 (mean of %d seeds, widths %s): %s" % (p, len(seeds), widths,
          "  ".join("%s %+.3f" % ("f" if l == L1 - 1 else "z_%d" % (l + 1), slope[p][l]) for l in range(L1))))
fails = []
def want(p, l, target, tol):
    if abs(slope[p][l] - target) > tol:
        fails.append("%s layer %d: slope %+.3f, want %+.2f +- %.2f" % (p, l + 1, slope[p][l], target, tol))
for l in range(L1 - 1):
    want("ntk", l, -0.5, 0.1)
for l in range(L1):
    want("mup", l, 0.0, 0.1)
want("sp", L1 - 1, 1.0, 0.15)
want("sp", 0, -0.5, 0.1)
for l in range(1, L1 - 1):
    want("sp", l, 0.5, 0.15)
for m in fails:
    print("FAIL: " + m)
print("coord_check: %d passed, %d failed" % (3 * L1 - 1 - len(fails) + 0, len(fails)))
sys.exit(1 if fails else 0)
PY
