"""muTransfer (Yang et al. 2021): the training loss after T steps against log2(eta), per
parameterization and width, and the best learning rate per width (inputs/mutransfer.in).

    an = ntkpost.Analysis(ntkpost.load("ntkhpc_mutransfer.h5"))
    rows = ntkpost.transfer.best_eta_table(an)       # one dict per (param, width)
    fig = ntkpost.transfer.mutransfer(an)           # registered as the figure "mutransfer"

A learning rate's loss is the mean over seeds of the final train loss; a rate at which any seed
diverged (or ended non-finite) counts as infinite. The best rate of a width is the grid point of
lowest loss; eta*lambda_0 is that rate times the width's mean lambda_0 (the lr-weighted NTK), so the
table says where the optimum sits against the catapult boundary eta*lambda_0 = 2.
"""
import math
from collections import OrderedDict

import numpy as np

from . import figures as F
from .io import PARAM_ORDER

DIVERGED = 3


def _final_loss(run):
    v = float(run.summary.get("loss_final", math.nan))
    return math.inf if run.status == DIVERGED or not math.isfinite(v) else v


def loss_grid(an):
    """OrderedDict (param, width) -> {"etas": sorted etas, "loss": mean final loss per eta (inf if a
    seed diverged), "seeds": number of seeds, "lambda0": mean lambda_0}; only absolute learning
    rates (runs given -etas), at least 3 per (param, width)."""
    cells = {}
    for r in an.sweep.runs:
        if not r.has_data or not math.isfinite(r.eta) or math.isfinite(r.eta_factor):
            continue
        cells.setdefault((r.param, r.width), {}).setdefault(r.eta, []).append(r)
    out = OrderedDict()
    for key in sorted(cells, key=lambda k: (PARAM_ORDER.get(k[0], 9), k[0], k[1] if k[1] > 0 else math.inf)):
        by_eta = cells[key]
        if len(by_eta) < 3:
            continue
        etas = sorted(by_eta)
        loss = [float(np.mean([_final_loss(r) for r in by_eta[e]])) for e in etas]
        lam = [float(r.summary.get("lambda0", math.nan)) for e in etas for r in by_eta[e]]
        lam = [v for v in lam if math.isfinite(v)]
        out[key] = {"etas": etas, "loss": loss, "seeds": max(len(v) for v in by_eta.values()),
                    "lambda0": float(np.mean(lam)) if lam else math.nan}
    return out


def best_eta_table(an):
    """[{param, width, best_eta, best_eta_lambda0, best_loss, lambda0, seeds, shift}] with shift the
    best eta over the smallest width's (same parameterization)."""
    rows, first = [], {}
    for (param, width), c in loss_grid(an).items():
        finite = [i for i, v in enumerate(c["loss"]) if math.isfinite(v)]
        if not finite:
            continue
        i = min(finite, key=lambda j: c["loss"][j])
        eta = c["etas"][i]
        first.setdefault(param, eta)
        rows.append({"param": param, "width": width, "best_eta": eta, "best_eta_lambda0": eta * c["lambda0"],
                     "best_loss": c["loss"][i], "lambda0": c["lambda0"], "seeds": c["seeds"],
                     "shift": eta / first[param]})
    return rows


def _caption(an):
    rows = best_eta_table(an)
    parts = []
    for p in sorted({r["param"] for r in rows}, key=lambda p: PARAM_ORDER.get(p, 9)):
        rp = [r for r in rows if r["param"] == p]
        if len(rp) < 2:
            continue
        lo, hi = rp[0], rp[-1]
        parts.append("%s: best η %.3g at width %d, %.3g at width %d (×%.3g); η·λ₀ there %.2f and %.2f" %
                     (p, lo["best_eta"], lo["width"], hi["best_eta"], hi["width"], hi["best_eta"] / lo["best_eta"],
                      lo["best_eta_lambda0"], hi["best_eta_lambda0"]))
    return ("Training loss after the last step against the learning rate, mean over seeds (a rate where a seed "
            "diverged is left out); filled markers: the best rate per width; dashed ticks: the catapult boundary "
            "η = 2/λ₀ of each width. " + "; ".join(parts) + ".")


@F.figure("mutransfer", "muTransfer: training loss against the learning rate, per width", _caption)
def mutransfer(an):
    grid = loss_grid(an)
    params = [p for p in OrderedDict.fromkeys(k[0] for k in grid)]
    widths = sorted({k[1] for k in grid})
    if len(widths) < 2 or not params:
        raise F.NoData("needs absolute learning rates (-etas, at least 3) at 2 or more widths")
    cmap = F.plt.get_cmap("plasma")
    colors = {w: cmap(0.85 * i / max(1, len(widths) - 1)) for i, w in enumerate(widths)}
    fig, axes = F._grid(len(params), len(params), "muTransfer: final training loss against log₂ η", size=(4.4, 3.4))
    best = {(r["param"], r["width"]): r for r in best_eta_table(an)}
    for ax, p in zip(axes, params):
        for w in widths:
            c = grid.get((p, w))
            if not c:
                continue
            x = np.log2(c["etas"])
            y = np.array(c["loss"])
            ok = np.isfinite(y)
            ax.plot(x[ok], y[ok], "-o", ms=3, lw=1.4, color=colors[w], gid="curve")
            b = best.get((p, w))
            if b:
                ax.plot([math.log2(b["best_eta"])], [b["best_loss"]], "o", ms=8, color=colors[w], mec="k", gid="marker")
            if math.isfinite(c["lambda0"]) and c["lambda0"] > 0:
                ax.axvline(math.log2(2.0 / c["lambda0"]), color=colors[w], ls="--", lw=0.9, ymax=0.12, gid="ref")
        ax.set_yscale("log")
        ax.set_xlabel("log₂ η")
        ax.set_ylabel("train loss after the last step")
        ax.set_title(p)
        ax.xaxis.set_major_locator(F.matplotlib.ticker.MaxNLocator(integer=True))
    handles = [F.Line2D([], [], color=colors[w], marker="o", label=("∞" if w == 0 else str(w))) for w in widths]
    handles.append(F.Line2D([], [], color="k", ls="--", label="η = 2/λ₀"))
    return F._finish(fig, handles, "width")
