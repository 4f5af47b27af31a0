#!/usr/bin/python3
"""The coordinate check's exponent fit (postproc/ntkpost/coordcheck.py) on synthetic runs with known
power laws: |dz_l| = c_l n^p_l (1 + seed noise). The fit must recover p_l (exactly without noise),
its 95% interval must cover p_l, the wide range (n >= 1024) must be fitted on its own, and the
figure must draw one curve per layer and step. Last line: "N passed, M failed"."""
import math
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "postproc"))
import numpy as np  # noqa: E402

import ntkpost  # noqa: E402
from ntkpost import coordcheck  # noqa: E402

passed = failed = 0


def check(what, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL %s %s" % (what, detail))


class FakeRun:
    def __init__(self, param, width, seed, dz):
        self.param, self.width, self.seed, self.file_index = param, width, seed, 0
        self.cfg_label, self.eta_key = "", ("eta", 0.02)
        self.measurements = {"features": {"step": np.arange(dz.shape[0]), "dz_rms": dz}}


class FakeSweep:
    def __init__(self, runs):
        self.runs = runs


def synth(noise):
    powers = {"ntk": [-0.5, -0.5, 0.0], "mup": [0.0, 0.0, 0.0], "sp": [-0.5, 0.5, 1.0]}
    rng = np.random.default_rng(1)
    runs = []
    for param, p in powers.items():
        for w in (128, 256, 512, 1024, 2048, 4096):
            for seed in range(4):
                dz = np.zeros((3, 3))
                for t in (1, 2):
                    dz[t] = [t * 0.3 * w ** pl * (1 + noise * rng.standard_normal()) for pl in p]
                runs.append(FakeRun(param, w, seed, dz))
    return FakeSweep(runs), powers


sweep, powers = synth(0.0)
rows = coordcheck.exponent_rows(sweep)
check("rows: 3 params x 2 steps x 3 layers x 2 ranges", len(rows) == 36, str(len(rows)))
for r in rows:
    want = powers[r["param"]][["z_1", "z_2", "f"].index(r["layer"])]
    check("exact slope %s %s" % (r["param"], r["layer"]), abs(r["slope"] - want) < 1e-12 and abs(r["slope_of_mean"] - want) < 1e-12,
          str(r))
    check("zero-width interval without noise", r["ci95"] < 1e-10, str(r["ci95"]))
    check("width range", (r["width_lo"], r["width_hi"]) in ((128, 4096), (1024, 4096)), str(r))

sweep, powers = synth(0.05)
rows = coordcheck.exponent_rows(sweep)
cover = [abs(r["slope"] - powers[r["param"]][["z_1", "z_2", "f"].index(r["layer"])]) <= r["ci95"] for r in rows]
check("95%% intervals cover the true exponent (%d of %d)" % (sum(cover), len(cover)), sum(cover) >= 0.8 * len(cover))
check("4 seeds", all(r["n_seeds"] == 4 for r in rows))

fig = ntkpost.figures.coord_check(type("An", (), {"sweep": sweep})())
curves = [a for ax in fig.axes for a in ax.get_lines() if a.get_gid() == "curve"]
check("figure: 3 params x 2 steps x 3 layers curves", len(curves) == 18, str(len(curves)))
with tempfile.TemporaryDirectory() as d:
    fig.savefig(os.path.join(d, "c.png"))
    check("figure saved", os.path.getsize(os.path.join(d, "c.png")) > 1000)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
