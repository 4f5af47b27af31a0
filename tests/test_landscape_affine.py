#!/usr/bin/python3
"""The landscape's affine first layer (docs/landscape.md "The affine first layer"), end to end.

A relu fc net (784-64-64-10, ntk, biases) trained a few steps with theta recorded; then 1-D and
2-D surfaces (with -landscape_bias true, so the first layer's bias moves too) and a path, each
  - with the cache (the default): the progress line says so, the spec records it, and the train
    and test losses at grid points equal numpy's forward pass written here on theta_c + alpha dir1
    (+ beta dir2) read from the file to 1e-12, the accuracies exactly;
  - with -landscape_affine_cache_mb 0 (the plain forward pass, said in the progress line): the
    same values to round-off (1e-13 relative);
  - with a cap below the cache's size (0.05 MB): the plain pass, the line naming the size needed;
  - on 3 ranks (one per point): the cached file bit for bit; on 2 ranks per point (each rank its
    slice of the samples): to 1e-12;
a plain-path file is not resumed with the cache (exit 2), and one made before the cache existed
(its spec without the path; half its points not done) is resumed on the plain path bit for bit;
and a negative cap is refused with one error line naming the option.
Last line: "N passed, M failed".

  NTKHPC=... NTK_SOURCE_DIR=... test_landscape_affine.py
"""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checklib import expect as check, summary  # noqa: E402
from test_landscape import Net, data, rel  # noqa: E402  (the numpy model and data readers)

SRC = os.environ["NTK_SOURCE_DIR"]
BIN = os.environ["NTKHPC"]
MPI = os.environ.get("NTK_MPIEXEC", "mpiexec")
DECK = os.path.join(SRC, "tests", "small_sweep.in")
BASE = ["-activation", "relu", "-widths", "64", "-seeds", "3", "-params", "ntk", "-etas", "0.3", "-steps", "8", "-theta_every", "4",
        "-n_train", "120", "-n_test", "50"]


def ntk(np_, *args):
    r = subprocess.run([MPI, "--oversubscribe", "-n", str(np_), BIN, DECK] + BASE + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        print(r.stdout[-3000:])
    return r.returncode, r.stdout


def values(path, group):
    with h5py.File(path, "r") as f:
        g = f[group]
        return {k: g[k][:] for k in ("train_loss", "train_acc", "test_loss", "test_acc")}


def main():
    with tempfile.TemporaryDirectory() as tmp:
        run_all(tmp)
    return summary()


def run_all(tmp):
    out = os.path.join(tmp, "a.h5")
    rc, _ = ntk(1, "-output", out, "-quiet")
    check(rc == 0, "the sweep exited %d" % rc)
    if rc:
        return
    bad = os.path.join(tmp, "bad.h5")
    rc, log = ntk(1, "-output", out, "-landscape_from", out, "-landscape_steps", "end", "-landscape_output", bad, "-landscape_affine_cache_mb", "-1")
    check(rc != 0 and "ntkhpc: error: option -landscape_affine_cache_mb" in log and not os.path.exists(bad),
          "a negative -landscape_affine_cache_mb: one error line naming it, no file")
    xtr, ytr, ltr, xte, yte, lte = data(120, 50)
    net = Net(784, 64, 2, 10, act=lambda z: np.maximum(z, 0))
    src = h5py.File(out, "r")
    for dim, grid in ((1, ["-landscape_alpha", "-1,1.5,7"]), (2, ["-landscape_alpha", "-1,1,5", "-landscape_beta", "-0.5,1,4"])):
        common = ["-output", out, "-landscape_from", out, "-landscape_steps", "4,end", "-landscape_dim", str(dim), "-landscape_bias", "true",
                  "-landscape_paths", "0@0:0", "-landscape_path_t", "-0.5,1.5,5"] + grid
        files = {}
        for tag, extra, want in (("cache", [], "first layer from the affine cache for all 3 slice(s)"),
                                 ("plain", ["-landscape_affine_cache_mb", "0"], "plain forward (no affine first-layer cache)"),
                                 ("small", ["-landscape_affine_cache_mb", "0.05"], "the cache would need 0.")):
            files[tag] = os.path.join(tmp, "%s%d.h5" % (tag, dim))
            rc, log = ntk(1, *common, "-landscape_output", files[tag], *extra)
            check(rc == 0 and want in log, "%d-D %s: exit %d, the progress line says '%s'" % (dim, tag, rc, want))
        with h5py.File(files["cache"], "r") as f:
            spec = f.attrs["spec"].decode() if isinstance(f.attrs["spec"], bytes) else f.attrs["spec"]
            check(spec.count("first layer affine cache") == 3, "%d-D: the spec records the cached path per slice" % dim)
            worst, accs = 0.0, True
            for name in ("surfaces/surface_000", "surfaces/surface_001", "paths/path_000"):
                g = f[name]
                c = src["runs/run_000000/theta/theta"][int(g.attrs["record"])][:net.P]
                d1 = g["dir1"][:]
                d2 = g["dir2"][:] if "dir2" in g else np.zeros_like(d1)
                check(not name.startswith("surf") or np.abs(d1[net.tab[1][1]:net.tab[1][1] + 64]).max() > 0,
                      "%d-D %s: the first layer's bias moves too" % (dim, name))
                al, be = g["alpha"][:], g["beta"][:]
                for j, i in ((0, 0), (len(be) - 1, len(al) - 1), (len(be) // 2, len(al) // 2), (0, len(al) - 2)):
                    th = c + al[i] * d1 + be[j] * d2
                    L, A = net.loss_acc(th, xtr, ytr, ltr)
                    Lt, At = net.loss_acc(th, xte, yte, lte)
                    worst = max(worst, rel(L, g["train_loss"][j, i]), rel(Lt, g["test_loss"][j, i]))
                    accs &= bool(A == g["train_acc"][j, i] and At == g["test_acc"][j, i])
            check(np.isfinite(worst) and worst < 1e-12, "%d-D cached: losses vs numpy worst rel err %.1e" % (dim, worst))
            check(accs, "%d-D cached: accuracies equal numpy's" % dim)
            print("%d-D cached vs numpy: worst rel err %.1e" % (dim, worst))
        for tag in ("plain", "small"):
            e = 0.0
            for name in ("surfaces/surface_000", "surfaces/surface_001", "paths/path_000"):
                a, b = values(files["cache"], name), values(files[tag], name)
                e = max(e, rel(a["train_loss"], b["train_loss"]), rel(a["test_loss"], b["test_loss"]))
                check(np.array_equal(a["train_acc"], b["train_acc"]) and np.array_equal(a["test_acc"], b["test_acc"]),
                      "%d-D %s %s: accuracies equal the cached path's" % (dim, tag, name))
            check(e < 1e-13, "%d-D %s vs cached: losses rel err %.1e (round-off)" % (dim, tag, e))
            print("%d-D %s vs cached: rel err %.1e" % (dim, tag, e))
        if dim == 2:  # resuming: a file of the other path is refused; one made before the cache existed resumes on the plain path
            rc, log = ntk(1, *common, "-landscape_output", files["plain"])
            check(rc == 2 and "holds other surfaces" in log, "2-D: a plain-path file is not resumed with the cache (exit %d)" % rc)
            old = os.path.join(tmp, "legacy.h5")
            shutil.copy(files["plain"], old)
            with h5py.File(old, "r+") as f:  # the spec as written before the affine first layer, half the points not done
                spec = f.attrs["spec"]
                spec = spec.decode() if isinstance(spec, bytes) else spec
                f.attrs["spec"] = np.bytes_(spec.replace(" first layer plain", "").encode())
                for n in ("surfaces/surface_000", "paths/path_000"):
                    done = f[n]["done"][:]
                    done.flat[::2] = 0
                    f[n]["done"][:] = done
                    v = f[n]["train_loss"][:]
                    v.flat[::2] = -1
                    f[n]["train_loss"][:] = v
            rc, log = ntk(2, *common, "-landscape_output", old)
            same = rc == 0 and all(np.array_equal(values(files["plain"], n)[k], values(old, n)[k])
                                   for n in ("surfaces/surface_000", "surfaces/surface_001", "paths/path_000") for k in ("train_loss", "test_loss"))
            check(same and "resuming a file made before the affine first layer" in log,
                  "2-D: a file made before the cache resumes on the plain path, bit for bit (exit %d)" % rc)
        # ranks: one rank per point gives the file bit for bit; two ranks per point, to round-off
        r3 = os.path.join(tmp, "r3_%d.h5" % dim)
        rc, _ = ntk(3, *common, "-landscape_output", r3, "-quiet")
        same = rc == 0 and all(np.array_equal(values(files["cache"], n)[k], values(r3, n)[k])
                               for n in ("surfaces/surface_000", "surfaces/surface_001", "paths/path_000") for k in ("train_loss", "test_loss"))
        check(same, "%d-D cached: 3 ranks give the 1-rank file bit for bit" % dim)
        g2 = os.path.join(tmp, "g2_%d.h5" % dim)
        rc, _ = ntk(2, *common, "-landscape_output", g2, "-landscape_ranks_per_point", "2", "-quiet")
        e = max(rel(values(files["cache"], n)[k], values(g2, n)[k]) for n in ("surfaces/surface_000", "paths/path_000")
                for k in ("train_loss", "test_loss")) if rc == 0 else np.inf
        check(e < 1e-12, "%d-D cached: 2 ranks per point (sample slices) vs 1 rank rel err %.1e" % (dim, e))
    src.close()


if __name__ == "__main__":
    sys.exit(main())
