#!/usr/bin/python3
"""ntkpost.transfer (muTransfer): the best learning rate per width and its figure, on runs made
here with known losses. Runs under pytest or standalone (prints "N passed, N failed").

The stand-in runs carry what transfer reads from ntkpost.load's Run: param, width, seed, eta,
eta_factor (NaN: absolute rates), status, summary (loss_final, lambda0), has_data.
"""
import math
import os
import sys
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.environ.get("NTK_SOURCE_DIR", os.path.dirname(HERE)), "postproc"))
from ntkpost import transfer  # noqa: E402

ETAS = [2.0 ** -k for k in range(10, 1, -1)]


def make_an():
    """sp's best rate halves per doubling of the width (lambda_0 grows like the width), mup's stays
    at 2^-5 (lambda_0 fixed); rates above 2/lambda_0 diverge in one seed or both."""
    runs = []
    for param in ("sp", "mup"):
        for w in (128, 256, 512, 1024):
            lam0 = 64.0 * (w / 128 if param == "sp" else 1.0)
            best = 1.0 / lam0  # 2^-6 * 128/w (sp), 2^-6 (mup): one grid step below 2/lambda_0
            for seed in (0, 1):
                for eta in ETAS:
                    diverged = eta > 2.0 / lam0 or (seed == 1 and eta > 1.5 / lam0)
                    loss = 0.1 + (math.log2(eta / best)) ** 2 + 0.01 * seed
                    runs.append(SimpleNamespace(param=param, width=w, seed=seed, eta=eta, eta_factor=math.nan,
                                                has_data=True, status=3 if diverged else 2,
                                                summary={"loss_final": math.inf if diverged else loss, "lambda0": lam0}))
    # runs with eta_factor (relative rates) are not part of a muTransfer grid
    runs.append(SimpleNamespace(param="mup", width=128, seed=0, eta=0.01, eta_factor=1.0, has_data=True, status=2,
                                summary={"loss_final": 1e-9, "lambda0": 64.0}))
    return SimpleNamespace(sweep=SimpleNamespace(runs=runs))


def test_best_eta_table():
    rows = transfer.best_eta_table(make_an())
    by = {(r["param"], r["width"]): r for r in rows}
    assert len(rows) == 8
    for w in (128, 256, 512, 1024):
        sp, mup = by[("sp", w)], by[("mup", w)]
        assert math.isclose(sp["best_eta"], 2.0 ** -6 * 128 / w), sp
        assert math.isclose(mup["best_eta"], 2.0 ** -6), mup
        assert math.isclose(sp["best_eta_lambda0"], 1.0) and math.isclose(mup["best_eta_lambda0"], 1.0)
        assert sp["seeds"] == 2 and math.isclose(sp["best_loss"], 0.105)
    assert math.isclose(by[("sp", 1024)]["shift"], 1 / 8) and math.isclose(by[("mup", 1024)]["shift"], 1.0)


def test_diverged_rates_are_infinite():
    grid = transfer.loss_grid(make_an())
    c = grid[("mup", 128)]
    i = c["etas"].index(2.0 ** -5)  # 2^-5 = 2/lambda_0 exactly: stable in seed 0, diverged in seed 1
    assert math.isinf(c["loss"][i]) and all(math.isfinite(v) for v in c["loss"][:i])


def test_figure():
    fig = transfer.mutransfer(make_an())
    assert fig is not None and len(fig.axes) >= 2
    curves = [a for ax in fig.axes for a in ax.get_lines() if a.get_gid() == "curve"]
    refs = [a for ax in fig.axes for a in ax.get_lines() if a.get_gid() == "ref"]
    assert len(curves) == 8 and len(refs) == 8
    assert "sp: best η" in fig.ntk_caption and "mup: best η" in fig.ntk_caption


def test_no_grid():
    an = make_an()
    an.sweep.runs = [r for r in an.sweep.runs if r.width == 128]
    assert transfer.mutransfer(an) is None and "2 or more widths" in transfer.mutransfer.last_skip


if __name__ == "__main__":
    passed = failed = 0
    for name, fn in sorted(globals().items()):
        if name.startswith("test_") and callable(fn):
            try:
                fn()
                passed += 1
            except Exception as e:  # report and go on
                failed += 1
                print("FAIL %s: %r" % (name, e))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
