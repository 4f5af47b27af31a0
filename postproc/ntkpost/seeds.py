"""Issue #18's studies: eta_max * lambda_0 per activation and width (inputs/eta_max.in), the catapult
peak step against log2(width) (inputs/catapult_time.in), lambda_0 and the phases with and without
batch norm (inputs/batchnorm.in), and Li & Arora's exponential learning rate against weight decay
(inputs/explr.in). Each is a registered figure; the numbers behind them are functions too.

    an = ntkpost.Analysis(ntkpost.load(["eta_max_relu.h5", "eta_max_tanh.h5"]))
    ntkpost.seeds.eta_max_table(an)      # one dict per (activation, width): mean, spread, seeds
    ntkpost.seeds.catapult_time_fit(an)  # peak step = a + b log2(width): b and its standard error
    ntkpost.seeds.batchnorm_table(an)    # lambda_0 with and without batch norm per architecture
"""
import math
from collections import OrderedDict

import h5py
import numpy as np

from . import figures as F


def _cfg(r, key, default=None):
    v = r.config.get(key, default)
    return v.decode() if isinstance(v, bytes) else v


def _instances(path):
    """{instance: row dict} of a file's /instances (eta_max bracket, lambda0)."""
    with h5py.File(path, "r") as f:
        if "instances" not in f:
            return {}
        rows = f["instances"][()]
    return {int(r["instance"]): {n: r[n] for n in rows.dtype.names} for r in rows}


def eta_max_table(an):
    """OrderedDict (activation, width) -> {"values": eta_max*lambda0 per seed (the bracket's
    midpoint), "mean", "spread" (max - min over seeds), "half_bracket" (largest half-width)}."""
    cells, seen = {}, set()
    inst_cache = {}
    for r in an.sweep.runs:
        key = (r.path, r.instance)
        if key in seen:
            continue
        seen.add(key)
        if r.path not in inst_cache:
            inst_cache[r.path] = _instances(r.path)
        row = inst_cache[r.path].get(r.instance)
        if not row or "eta_max_lo" not in row:
            continue
        lo, hi = float(row["eta_max_lo"]), float(row["eta_max_hi"])
        if not (math.isfinite(lo) and math.isfinite(hi)):
            continue
        c = cells.setdefault((_cfg(r, "activation", "?"), r.width), {"values": [], "half": []})
        c["values"].append(0.5 * (lo + hi))
        c["half"].append(0.5 * (hi - lo))
    out = OrderedDict()
    for k in sorted(cells):
        v = np.array(cells[k]["values"])
        out[k] = {"values": v, "mean": float(v.mean()), "spread": float(v.max() - v.min()),
                  "half_bracket": float(max(cells[k]["half"])), "seeds": v.size}
    return out


@F.figure("eta_max", "eta_max · lambda_0 per activation and width",
          "The divergence boundary found by -eta_max_search: the midpoint of each instance's final bracket "
          "eta_max_lo < eta_max·λ₀ <= eta_max_hi, mean over seeds (error bar: min-max over seeds, widened by the "
          "bracket's half-width), per activation against the width. Dashed: 12, the catapult paper's value for "
          "relu; dotted: 4, the uv model's exact boundary; 2 = eta_crit.")
def eta_max(an):
    t = eta_max_table(an)
    if not t:
        raise F.NoData("no eta_max brackets in /instances (run with -eta_max_search true)")
    fig, axes = F._grid(1, 1, "eta_max · λ₀ against the width (mean over seeds)", size=(5.2, 3.6))
    ax = axes[0]
    acts = sorted({k[0] for k in t})
    colors = {"relu": "#0072B2", "tanh": "#E69F00", "erf": "#009E73"}
    handles = []
    for i, a in enumerate(acts):
        ks = [k for k in t if k[0] == a]
        w = np.array([k[1] for k in ks], float)
        m = np.array([t[k]["mean"] for k in ks])
        lo = np.array([t[k]["values"].min() - t[k]["half_bracket"] for k in ks])
        hi = np.array([t[k]["values"].max() + t[k]["half_bracket"] for k in ks])
        col = colors.get(a, "C%d" % i)
        h = ax.errorbar(w * (1 + 0.03 * (i - 1)), m, yerr=[m - lo, hi - m], color=col, marker="o", capsize=3, gid="curve",
                    label="%s (%d seeds)" % (a, max(t[k]["seeds"] for k in ks)))
        handles.append(h)
    ax.axhline(12, color="0.4", ls="--", lw=1, gid="ref")
    ax.axhline(4, color="0.4", ls=":", lw=1, gid="ref")
    ax.axhline(2, color="0.7", ls=":", lw=1, gid="ref")
    ax.set_xscale("log", base=2)
    ws = sorted({k[1] for k in t})
    ax.set_xticks(ws)
    ax.set_xticklabels([str(x) for x in ws])
    ax.minorticks_off()
    ax.set_xlabel("width n")
    ax.set_ylabel("η_max · λ₀")
    ax.grid(alpha=0.3, lw=0.5)
    return F._finish(fig, handles, "activation")


def catapult_time_points(an):
    """[(width, seed, peak_step, peak_ratio)] of the runs with a loss_peak/ record and a spike."""
    pts = []
    for r in an.sweep.runs:
        lp = r.measurements.get("loss_peak")
        if not lp or lp["peak_step"].size == 0 or r.status != 2:
            continue
        ratio = float(lp["peak_ratio"][0])
        if math.isfinite(ratio):
            pts.append((r.width, r.seed, int(lp["peak_step"][0]), ratio))
    return pts


def catapult_time_fit(an):
    """Least-squares peak_step = a + b log2(width) over every (width, seed) with a spike
    (L_peak > L_0): {"slope", "slope_se", "intercept", "n", "widths"}; the standard error from
    the residuals (n - 2 degrees of freedom)."""
    pts = [p for p in catapult_time_points(an) if p[3] > 1]
    if len(pts) < 3 or len({p[0] for p in pts}) < 2:
        return None
    x = np.log2([p[0] for p in pts])
    y = np.array([p[2] for p in pts], float)
    A = np.vstack([np.ones_like(x), x]).T
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    res = y - A @ coef
    s2 = float(res @ res) / max(1, len(y) - 2)
    cov = s2 * np.linalg.inv(A.T @ A)
    return {"slope": float(coef[1]), "slope_se": math.sqrt(cov[1, 1]), "intercept": float(coef[0]), "n": len(y),
            "widths": sorted({p[0] for p in pts})}


def _catapult_time_caption(an):
    f = catapult_time_fit(an)
    fit = ("fit: peak step = %.2f + %.2f ± %.2f · log₂ n (%d runs). " % (f["intercept"], f["slope"], f["slope_se"], f["n"])
           if f else "")
    return ("Step of the largest training loss (loss_peak/, over the whole run) against log₂ of the width, one point "
            "per seed (runs without a spike, L_peak = L_0, left out), at fixed η·λ₀; line: least-squares fit. " + fit +
            "The catapult paper predicts a time scale growing like log(width).")


@F.figure("catapult_time", "Catapult peak step against log2(width)", _catapult_time_caption)
def catapult_time(an):
    pts = catapult_time_points(an)
    if not pts:
        raise F.NoData("no loss_peak/ records (run with -loss_peak true)")
    fig, axes = F._grid(2, 2, "Catapult time: the loss peak's step and strength against the width", size=(4.2, 3.3))
    w = np.array([p[0] for p in pts], float)
    ax = axes[0]
    spike = np.array([p[3] > 1 for p in pts])
    ax.scatter(np.log2(w[spike]), [p[2] for p, s in zip(pts, spike) if s], color="#E69F00", gid="curve", label="peak step")
    f = catapult_time_fit(an)
    if f:
        xs = np.linspace(np.log2(w.min()), np.log2(w.max()), 10)
        ax.plot(xs, f["intercept"] + f["slope"] * xs, color="k", lw=1, gid="ref",
                label="slope %.2f ± %.2f" % (f["slope"], f["slope_se"]))
    ax.set_xlabel("log₂ width")
    ax.set_ylabel("step of L_peak")
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.scatter(np.log2(w), [p[3] for p in pts], color="#D55E00", gid="curve")
    ax.axhline(1, color="0.5", ls=":", lw=1, gid="ref")
    ax.set_yscale("log")
    ax.set_xlabel("log₂ width")
    ax.set_ylabel("L_peak / L_0")
    ax.grid(alpha=0.3, lw=0.5)
    c = sorted({round(float(r.eta_factor), 6) for r in an.sweep.runs if math.isfinite(r.eta_factor)})
    fig.suptitle("Catapult time at η·λ₀ = %s" % ", ".join("%g" % v for v in c), fontsize=11)
    return F._finish(fig)


def _bn_label(r):
    arch = _cfg(r, "arch", "fc")
    if "batch_norm" in r.config:
        return arch, bool(int(_cfg(r, "batch_norm")))
    on = int(_cfg(r, "fc_batch_norm", 0) or 0) if arch == "fc" else _bn_of_wrn(r)
    return arch, bool(on)


_WRN_BN = {}


def _bn_of_wrn(r):
    """The WRN's -batch_norm from the file's effective deck (/deck): true unless it says false."""
    if r.path not in _WRN_BN:
        with h5py.File(r.path, "r") as f:
            deck = f["deck"][()] if "deck" in f else b""
        deck = deck.decode() if isinstance(deck, bytes) else str(deck)
        _WRN_BN[r.path] = "-batch_norm false" not in deck
    return _WRN_BN[r.path]


def batchnorm_table(an):
    """OrderedDict (arch, batch_norm) -> {"lambda0": per instance, "mean", "best_test_acc", "best_x",
    "best_phase", "rows": [(x, test_acc, phase)]}."""
    out = {}
    for r, row in zip(an.sweep.runs, an.rows):
        key = _bn_label(r)
        c = out.setdefault(key, {"lambda0": {}, "rows": []})
        if math.isfinite(row["lambda0"]):
            c["lambda0"][(r.path, r.instance)] = row["lambda0"]
        if r.has_data:
            c["rows"].append((row["x"], row["test_acc_T"], row["phase"]))
    res = OrderedDict()
    for k in sorted(out):
        c = out[k]
        l0 = np.array(list(c["lambda0"].values()))
        rows = [x for x in c["rows"] if math.isfinite(x[1])]
        best = max(rows, key=lambda x: x[1]) if rows else (math.nan, math.nan, "?")
        res[k] = {"lambda0": l0, "mean": float(l0.mean()) if l0.size else math.nan, "rows": c["rows"],
                  "best_x": best[0], "best_test_acc": best[1], "best_phase": best[2]}
    return res


@F.figure("batchnorm", "lambda_0 and the phases with and without batch norm",
          "Left: λ₀ (top eigenvalue of the NTK at initialisation, NTK batch) of each instance, with and without "
          "train-mode batch norm, per architecture. Right: final test accuracy against η·λ₀, one curve per "
          "architecture and batch-norm setting (marker colour: the run's phase; vertical line: η·λ₀ = 2).")
def batchnorm(an):
    t = batchnorm_table(an)
    if len(t) < 2:
        raise F.NoData("needs runs with and without batch norm (inputs/batchnorm.in)")
    fig, axes = F._grid(2, 2, "Batch norm: λ₀ and test accuracy vs η·λ₀", size=(4.2, 3.3))
    ax = axes[0]
    labels = []
    for i, (k, c) in enumerate(t.items()):
        lab = "%s %s BN" % (k[0], "with" if k[1] else "no")
        labels.append(lab)
        ax.scatter(np.full(c["lambda0"].size, i), c["lambda0"], color="#009E73" if k[1] else "0.3", marker="D" if k[1] else "o",
                   gid="curve")
        ax.plot([i - 0.2, i + 0.2], [c["mean"]] * 2, color="k", lw=1.5, gid="ref")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=7, rotation=20)
    ax.set_yscale("log")
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_ylabel("λ₀ (log; mean: bar)")
    ax.grid(alpha=0.3, lw=0.5)
    ax = axes[1]
    styles = {(True): "-", (False): "--"}
    for k, c in t.items():
        rows = sorted([x for x in c["rows"] if math.isfinite(x[0]) and math.isfinite(x[1])])
        if not rows:
            continue
        xs = np.array([x[0] for x in rows])
        ys = np.array([x[1] for x in rows])
        ux = np.unique(np.round(xs, 8))
        ls = styles[k[1]] if k[0] == "fc" else (":" if k[1] else "-.")
        ax.plot(ux, [ys[np.round(xs, 8) == u].mean() for u in ux], ls=ls, color="#009E73" if k[1] else "0.3",
                lw=1.2, gid="curve", label="%s %s BN (seed mean)" % (k[0], "with" if k[1] else "no"))
        ax.scatter(xs, ys, c=[F.PHASE_COLORS.get(x[2], F.OTHER_PHASE_COLOR) for x in rows], s=18, zorder=3, gid="cells")
    ax.axvline(2, color="0.5", ls=":", lw=1, gid="ref")
    ax.set_xscale("log")
    ax.set_xlabel("η·λ₀")
    ax.set_ylabel("final test accuracy")
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(fontsize=7)
    from matplotlib.patches import Patch
    return F._finish(fig, [Patch(color=v, label=p) for p, v in F.PHASE_COLORS.items() if p != "incomplete"], "phase")


def explr_pair(an):
    """(wd_run, exp_run): the weight-decay run (lr_schedule constant, weight_decay > 0) and the
    exponential one (lr_schedule exp), or None."""
    wd = [r for r in an.sweep.runs if r.has_data and _cfg(r, "lr_schedule") == "constant" and float(_cfg(r, "weight_decay", 0)) > 0]
    ex = [r for r in an.sweep.runs if r.has_data and _cfg(r, "lr_schedule") == "exp"]
    return (wd[0], ex[0]) if wd and ex else None


def explr_deviation(an):
    """Max relative difference of the train losses and of the per-tensor angular updates of the pair."""
    p = explr_pair(an)
    if not p:
        return None
    a, b = p
    n = min(a.train["loss"].size, b.train["loss"].size)
    dl = np.abs(a.train["loss"][:n] - b.train["loss"][:n]) / np.abs(a.train["loss"][:n])
    out = {"loss_max_rel": float(np.nanmax(dl)), "steps": int(a.train["step"][n - 1])}
    sa, sb = a.measurements.get("scale_inv"), b.measurements.get("scale_inv")
    if sa and sb:
        m = min(sa["angle"].shape[0], sb["angle"].shape[0])
        aa, ab = sa["angle"][1:m], sb["angle"][1:m]
        ok = aa > 0
        out["angle_max_rel"] = float(np.nanmax(np.abs(aa[ok] - ab[ok]) / aa[ok])) if ok.any() else math.nan
    return out


@F.figure("explr", "Weight decay vs the exponential learning rate (Li & Arora)",
          lambda an: "A scale-invariant net (batch norm without affine parameters, no biases, readout frozen) trained "
                     "with heavy ball + weight decay at a constant η (A) and with the equivalent exponentially growing "
                     "learning rate and no weight decay (B; docs/li_arora.md). Panels: training loss, the learning rate "
                     "in force, the effective learning rate η_t/|θ_l|² of the first hidden tensor, and its angular update "
                     "per step. In exact arithmetic with eps = 0 the curves coincide; %s"
                     % ("measured: %s" % explr_deviation(an) if explr_deviation(an) else ""))
def explr(an):
    p = explr_pair(an)
    if not p:
        raise F.NoData("needs a weight-decay run and an -lr_schedule exp run (inputs/explr.in)")
    a, b = p
    fig, axes = F._grid(4, 4, "Li-Arora: weight decay (A) vs exponential learning rate (B)", size=(3.3, 2.9))
    sty = [(a, "A: wd %g,\nconstant η" % float(_cfg(a, "weight_decay")), "#0072B2", "-"),
           (b, "B: no wd, η_t ×\n%.7g per step" % float(_cfg(b, "lr_exp_factor")), "#D55E00", "--")]
    handles = []
    for r, lab, col, ls in sty:
        h, = axes[0].plot(r.train["step"], r.train["loss"], color=col, ls=ls, lw=1.3, gid="curve", label=lab)
        handles.append(h)
        axes[1].plot(r.train["step"], r.train["lr"], color=col, ls=ls, lw=1.3, gid="curve")
        si = r.measurements.get("scale_inv")
        if si:
            axes[2].plot(si["step"], si["eff_lr"][:, 0], color=col, ls=ls, lw=1.3, gid="curve")
            axes[3].plot(si["step"][1:], si["angle"][1:, 0], color=col, ls=ls, lw=1.3, gid="curve")
    for ax, yl in zip(axes, ("train loss", "learning rate η_t", "η_t / |θ_l|²  (dense0.W)", "angular update (rad)")):
        ax.set_xlabel("step")
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3, lw=0.5)
    axes[0].set_yscale("log")
    return F._finish(fig, handles, "run")
