"""The finite nets against their infinite-width references (docs/conventions.md "The linearised
model and the infinite-width limit"): the empirical NTK at initialisation against the analytic one
(ntk_analytic/), and the network against its linearisation (linearized/).

    rows = width_rows(an)          # one dict per (quantity, width): mean, min, max over seeds
    fits = width_fits(an)          # {quantity: coordcheck.fit(...)}: slope in log n, 95% CI
    fig = width_convergence(an)    # registered as the figure "width_convergence"
    fig = linearized(an)           # registered as the figure "linearized"
    fig = kernel_prior(an)         # "kernel_prior": finite nets against kernel regression over the GP prior

Slopes are least-squares fits of log(error) against log(width), per seed, averaged over the seeds,
with a Student t 95% interval (coordcheck.fit). The kernel regime predicts -1/2 for both errors and
for RMS(f - f_lin) below eta lambda_0 = 2.
"""
import math
from collections import OrderedDict

import numpy as np

from . import figures as F
from .coordcheck import fit
from .io import eta_key_label

QUANTITIES = OrderedDict([("kernel_rel_err", "|Θ_n − Θ_∞|_F / |Θ_∞|_F"), ("lambda0_rel_err", "|λ₀(n) / λ₀(∞) − 1|")])


def _by_width(an, group, field, select=lambda r: True, pick=lambda v: v[0]):
    """{width: {seed: value}} of a per-run dataset (finite widths only)."""
    out = {}
    for r in an.sweep.runs:
        g = r.measurements.get(group)
        if not g or field not in g or r.width <= 0 or not select(r):
            continue
        v = np.asarray(g[field], float)
        if v.size and math.isfinite(pick(v)):
            out.setdefault(r.width, {})[r.seed] = float(pick(v))
    return out


def width_fits(an):
    """{quantity: fit over all widths} for the ntk_analytic/ errors (empty without the group)."""
    return OrderedDict((q, fit(d)) for q in QUANTITIES if (d := _by_width(an, "ntk_analytic", q)) and len(d) >= 2)


def width_rows(an):
    rows = []
    for q in QUANTITIES:
        for w, seeds in sorted(_by_width(an, "ntk_analytic", q).items()):
            v = np.array(list(seeds.values()))
            rows.append({"quantity": q, "width": w, "seeds": v.size, "mean": float(v.mean()), "min": float(v.min()),
                         "max": float(v.max())})
    return rows


def _loglog(ax, by_width, color, label, marker="o"):
    ws = sorted(by_width)
    vals = [np.array(list(by_width[w].values())) for w in ws]
    agg = {"mean": np.array([v.mean() for v in vals]), "lo": np.array([v.min() for v in vals]),
           "hi": np.array([v.max() for v in vals]), "n_curves": max(v.size for v in vals)}
    F._plot_agg(ax, agg, color, label=label, marker=marker, x=np.array(ws, float))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_minor_locator(F.matplotlib.ticker.NullLocator())
    ax.set_xticks(ws)
    ax.set_xticklabels([str(w) for w in ws], fontsize=7)
    return ws, agg


def _reference_slope(ax, ws, agg, slope=-0.5):
    """A dotted n^slope line through the first point, for the eye."""
    x = np.array([ws[0], ws[-1]], float)
    ax.plot(x, agg["mean"][0] * (x / x[0]) ** slope, color="0.4", ls=":", lw=1, label="n^%g" % slope)


def _wc_caption(an):
    fits = width_fits(an)
    parts = ["%s: slope %.2f ± %.2f over widths %d–%d (%d seeds)" % (QUANTITIES[q], f["slope"], f["ci95"] if math.isfinite(f["ci95"]) else 0,
                                                                    f["width_lo"], f["width_hi"], f["n_seeds"]) for q, f in fits.items()]
    return ("The empirical NTK at initialisation against the analytic infinite-width NTK Θ_∞ = Θ_{L+1}(X, X) ⊗ I_k / N on the NTK "
            "batch (ntk_analytic/), log-log against the width; mean over seeds, band min–max, dotted n^-1/2 for the eye. "
            "The kernel regime predicts slope −1/2. " + "; ".join(parts) + ".")


@F.figure("width_convergence", "(k) The NTK at initialisation against its infinite-width limit", _wc_caption)
def width_convergence(an):
    have = [q for q in QUANTITIES if len(_by_width(an, "ntk_analytic", q)) >= 2]
    if not have:
        raise F.NoData("no ntk_analytic/ records at two or more widths (fc nets, ntk parameterization)")
    fits = width_fits(an)
    fig, axes = F._grid(len(have), len(have), "(k) The NTK at initialisation against its infinite-width limit (log-log)")
    for ax, q in zip(axes, have):
        f = fits[q]
        ws, agg = _loglog(ax, _by_width(an, "ntk_analytic", q), "#0072B2",
                          "slope %.2f ± %.2f" % (f["slope"], f["ci95"] if math.isfinite(f["ci95"]) else 0))
        _reference_slope(ax, ws, agg)
        ax.set_title(QUANTITIES[q], fontsize=9)
        ax.set_xlabel("width n", fontsize=8)
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(fontsize=7)
    F._finish(fig)
    return fig


def _lin_groups(an):
    """OrderedDict eta_key -> {width: [runs]} of runs with linearized/ records."""
    out = {}
    for r in an.sweep.runs:
        g = r.measurements.get("linearized")
        if g and len(g.get("step", [])) and r.width > 0:
            out.setdefault(r.eta_key, {}).setdefault(r.width, []).append(r)
    return OrderedDict(sorted(out.items(), key=lambda kv: kv[0][1]))


def _lin_caption(an):
    groups = _lin_groups(an)
    parts = []
    for key, by_w in groups.items():
        d = {w: {r.seed: float(np.asarray(r.measurements["linearized"]["rms_f_flin"], float)[-1]) for r in rs} for w, rs in by_w.items()}
        f = fit(d)
        if math.isfinite(f["slope"]):
            parts.append("%s: RMS(f − f_lin) at the last step slope %.2f ± %.2f" % (eta_key_label(key), f["slope"],
                                                                                   f["ci95"] if math.isfinite(f["ci95"]) else 0))
    return ("Top: the train loss of the network (solid) and of its linearisation f_lin = f(θ₀) + J₀(θ − θ₀) (dashed), trained "
            "side by side with the same gradient descent, one panel per learning rate, colour by width, mean over seeds "
            "(log(1 + t) steps); black: kernel regression with the analytic NTK at the same ηλ₀(∞), the infinite width "
            "(-kernel_regression). Bottom: RMS(f − f_lin) on the NTK batch at the last step against the width, log-log. Below ηλ₀ = 2 "
            "the network stays near its linearisation, ever closer as the width grows (kernel regime: slope −1/2); above it the "
            "linearisation, whose kernel is Θ₀ forever, diverges while the network catapults. " + "; ".join(parts) + ".")


@F.figure("linearized", "(l) The network against its linearisation", _lin_caption)
def linearized(an):
    groups = _lin_groups(an)
    if not groups:
        raise F.NoData("no linearized/ group (run with -linearized true)")
    n = len(groups)
    fig, axes = F.plt.subplots(2, n, squeeze=False, figsize=(F.PANEL_W * n + F.LEGEND_W + 0.5, 2 * F.PANEL_H + 0.8))
    fig.suptitle("(l) The network (solid) against its linearisation (dashed)", fontsize=12)
    widths = sorted({w for g in groups.values() for w in g})
    cmap = F.plt.get_cmap("plasma")
    wcol = {w: cmap(0.85 * i / max(1, len(widths) - 1)) for i, w in enumerate(widths)}
    handles = {}
    for j, (key, by_w) in enumerate(groups.items()):
        ax, axr = axes[0][j], axes[1][j]
        last, rms = 0, {}
        for w in sorted(by_w):
            rs = by_w[w]
            T = min(len(r.train["step"]) for r in rs if r.train) if all(r.train for r in rs) else 0
            if T:
                steps = np.asarray(rs[0].train["step"][:T], float)
                net = np.mean([np.asarray(r.train["loss"][:T], float) for r in rs], axis=0)
                (h,) = ax.plot(steps, net, color=wcol[w], lw=1.5)
                handles[w] = h
                last = max(last, steps[-1])
            ls = min(len(r.measurements["linearized"]["step"]) for r in rs)
            lsteps = np.asarray(rs[0].measurements["linearized"]["step"][:ls], float)
            lin = np.mean([np.asarray(r.measurements["linearized"]["loss"][:ls], float) for r in rs], axis=0)
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(lin)
            ax.plot(lsteps[ok], lin[ok], color=wcol[w], lw=1.2, ls="--")
            rms[w] = {r.seed: float(np.asarray(r.measurements["linearized"]["rms_f_flin"], float)[-1]) for r in rs}
            last = max(last, lsteps[-1] if lsteps.size else 0)
        for r in _inf_runs(an).get(key, [])[:1]:  # kernel regression at this eta lambda_0(inf): the infinite width
            steps = np.asarray(r.train["step"], float)
            loss = np.asarray(r.train["loss"], float)
            ok = np.isfinite(loss) & (steps >= 0)
            (h,) = ax.plot(steps[ok], loss[ok], color="k", lw=1.3)
            handles["inf"] = h
            last = max(last, steps[ok][-1] if ok.any() else 0)
        ax.set_yscale("log")
        # a diverging linearisation would squash the network's curves: the axis stops at 100 x the
        # largest network loss, and the panel says how far f_lin went
        net_max = max((np.nanmax(np.asarray(r.train["loss"], float)) for rs in by_w.values() for r in rs if r.train), default=np.nan)
        lin_max = max((np.nanmax(np.asarray(r.measurements["linearized"]["loss"], float)) for rs in by_w.values() for r in rs), default=np.nan)
        if np.isfinite(net_max) and lin_max > 100 * net_max:
            net_min = min(np.nanmin(np.asarray(r.train["loss"], float)) for rs in by_w.values() for r in rs if r.train)
            ax.set_ylim(0.5 * net_min, 100 * net_max)
            ax.text(0.97, 0.95, "f_lin diverges:\nloss %.0e at the end" % lin_max if np.isfinite(lin_max) else "f_lin diverges",
                    transform=ax.transAxes, ha="right", va="top", fontsize=7)
        F._log1p_steps(ax, last)
        ax.set_title(eta_key_label(key), fontsize=9)
        ax.set_xlabel("step t", fontsize=8)
        if j == 0:
            ax.set_ylabel("train loss", fontsize=8)
        ax.grid(alpha=0.3, lw=0.5)
        good = {w: v for w, v in rms.items() if any(math.isfinite(x) and x > 0 for x in v.values())}
        diverged = not good or np.nanmedian([x for v in rms.values() for x in v.values()]) > 1e3
        if diverged:
            vals = [x for v in rms.values() for x in v.values() if math.isfinite(x)]
            axr.text(0.5, 0.5, "the linearisation diverged:\nRMS(f − f_lin) ~ %.0e" % np.median(vals) if vals else "the linearisation diverged",
                     transform=axr.transAxes, ha="center", va="center", fontsize=8)
            axr.set_xticks([])
            axr.set_yticks([])
        elif good:
            good = {w: {s: x for s, x in v.items() if math.isfinite(x) and x > 0} for w, v in good.items()}
            f = fit(good) if len(good) >= 2 else {"slope": math.nan, "ci95": math.nan}
            lab = "slope %.2f ± %.2f" % (f["slope"], f["ci95"] if math.isfinite(f["ci95"]) else 0) if math.isfinite(f["slope"]) else None
            ws, agg = _loglog(axr, good, "0.2", lab)
            if len(ws) >= 2:
                _reference_slope(axr, ws, agg)
            axr.legend(fontsize=7)
        axr.set_xlabel("width n", fontsize=8)
        if j == 0:
            axr.set_ylabel("RMS(f − f_lin), last step", fontsize=8)
        axr.grid(alpha=0.3, lw=0.5)
    hs = [handles[w] for w in widths if w in handles] + ([handles["inf"]] if "inf" in handles else [])
    labels = ["n = %d" % w for w in widths if w in handles] + (["∞ (kernel regression)"] if "inf" in handles else [])
    fig.legend(hs + [F.matplotlib.lines.Line2D([], [], color="k", ls="--")], labels + ["f_lin"],
               loc="center left", bbox_to_anchor=(1 - (F.LEGEND_W + 0.35) / fig.get_size_inches()[0], 0.5), fontsize=8, title="width",
               title_fontsize=8)
    w_in, h_in = fig.get_size_inches()
    fig.subplots_adjust(left=0.7 / w_in, right=1 - (F.LEGEND_W + 0.5) / w_in, bottom=0.6 / h_in, top=1 - 0.7 / h_in, wspace=0.3, hspace=0.45)
    return fig


def _inf_runs(an):
    """{eta_key: [runs]} of the width-0 kernel-regression runs (-kernel_regression) with train rows."""
    out = {}
    for r in an.sweep.runs:
        if r.width == 0 and r.train and len(r.train.get("step", [])) and "kernel" in r.measurements:
            out.setdefault(r.eta_key, []).append(r)
    return out


def _last(group, field):
    v = np.asarray(group.get(field, []), float) if group else np.array([])
    v = v[np.isfinite(v)] if v.size else v
    return float(v[-1]) if v.size else math.nan


def _acc_caption(an):
    inf = _inf_runs(an)
    conv = [_last(r.measurements["kernel"], "conv_test_accuracy") for rs in inf.values() for r in rs]
    conv = [c for c in conv if math.isfinite(c)]
    return ("Test accuracy at the last step against the width, per learning rate (ηλ₀, colour): the network (solid, mean over seeds, "
            "band min–max), its linearisation (dashed, where trained with -linearized) and, at ∞, kernel regression with the analytic "
            "NTK at the same ηλ₀(∞) and step (-kernel_regression)" +
            (", with the converged kernel predictor Θ(·,X)Θ(X,X)⁻¹Y dotted (test accuracy %.3f)" % conv[0] if conv else "") +
            ". A diverged linearisation or kernel trajectory has no point.")


def _lin_diverged(r):
    """The linearisation's train loss ended above 100 x its start (or not finite)."""
    g = r.measurements.get("linearized")
    if not g or not len(g.get("loss", [])):
        return False
    v = np.asarray(g["loss"], float)
    return not (np.isfinite(v[-1]) and v[-1] <= 100 * v[0])


@F.figure("accuracy_width", "(m) Test accuracy against width, with the infinite-width predictor", _acc_caption)
def accuracy_width(an):
    by_eta = {}
    for r in an.sweep.runs:
        if r.width > 0 and r.test and len(r.test.get("step", [])):
            by_eta.setdefault(r.eta_key, {}).setdefault(r.width, []).append(r)
    inf = _inf_runs(an)
    if len({w for d in by_eta.values() for w in d}) < 2 and not inf:
        raise F.NoData("needs test accuracy at two or more widths, or a -kernel_regression run")
    widths = sorted({w for d in by_eta.values() for w in d})
    x_inf = widths[-1] * 4 if widths else 1.0
    fig, ax = F.plt.subplots(figsize=(F.PANEL_W * 1.6 + F.LEGEND_W, F.PANEL_H * 1.3))
    keys = sorted(set(by_eta) | set(inf), key=lambda k: k[1])
    cmap = F.plt.get_cmap("viridis")
    handles = []
    for i, key in enumerate(keys):
        col = cmap(0.9 * i / max(1, len(keys) - 1))
        d = by_eta.get(key, {})
        ws = sorted(d)
        if ws:
            vals = [np.array([_last(r.test, "accuracy") for r in d[w]]) for w in ws]
            agg = {"mean": np.array([np.nanmean(v) for v in vals]), "lo": np.array([np.nanmin(v) for v in vals]),
                   "hi": np.array([np.nanmax(v) for v in vals]), "n_curves": max(v.size for v in vals)}
            handles.append(F._plot_agg(ax, agg, col, label=eta_key_label(key), marker="o", x=np.array(ws, float)))
            lin = [np.array([_last(r.measurements.get("linearized"), "test_accuracy") if not _lin_diverged(r) else math.nan for r in d[w]])
                   for w in ws]
            lm = np.array([np.nanmean(v) if np.any(np.isfinite(v)) else np.nan for v in lin])
            if np.any(np.isfinite(lm)):
                ax.plot(np.array(ws, float), lm, color=col, ls="--", marker="x", ms=4)
        if key in inf:
            a = [_last(r.test, "accuracy") for r in inf[key]]
            a = [v for v in a if math.isfinite(v)]
            if a:
                ax.plot([x_inf], [np.mean(a)], color=col, marker="*", ms=11, ls="none")
                if not ws:
                    handles.append(F.Line2D([], [], color=col, marker="*", ls="none", label=eta_key_label(key)))
    conv = [_last(r.measurements["kernel"], "conv_test_accuracy") for rs in inf.values() for r in rs]
    conv = [c for c in conv if math.isfinite(c)]
    if conv:
        ax.axhline(conv[0], color="0.3", ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_minor_locator(F.matplotlib.ticker.NullLocator())
    ticks = widths + ([x_inf] if inf else [])
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(w) for w in widths] + (["∞"] if inf else []), fontsize=8)
    ax.set_xlabel("width n", fontsize=9)
    ax.set_ylabel("test accuracy, last step", fontsize=9)
    ax.grid(alpha=0.3, lw=0.5)
    extra = [F.Line2D([], [], color="k", ls="--", marker="x", label="linearised")]
    if inf:
        extra.append(F.Line2D([], [], color="k", marker="*", ls="none", ms=9, label="kernel regression (∞)"))
    if conv:
        extra.append(F.Line2D([], [], color="0.3", ls=":", label="converged kernel predictor"))
    ax.set_title("(m) Test accuracy against width", fontsize=11)
    w_in, h_in = fig.get_size_inches()
    right = 1 - (F.LEGEND_W + 0.3) / w_in
    fig.subplots_adjust(left=0.7 / w_in, right=right, bottom=0.6 / h_in, top=1 - 0.5 / h_in)
    fig.legend(handles=handles + extra, loc="center left", bbox_to_anchor=(right + 0.1 / w_in, 0.5), fontsize=8)
    return fig


def _prior_curves(an):
    """[(eta_key, kernel run, {width: [finite runs]})] for the kernel runs with prior-expected losses."""
    out = []
    for key, runs in _inf_runs(an).items():
        k = runs[0].measurements["kernel"]
        if "prior_train_loss" not in k:
            continue
        fin = {}
        for r in an.sweep.runs:
            if r.width > 0 and r.eta_key == key and r.train and len(r.train.get("step", [])):
                fin.setdefault(r.width, []).append(r)
        if fin:
            out.append((key, runs[0], fin))
    return out


def _seed_mean(runs, part, steps):
    """Mean and standard error over runs of their `part` loss at `steps` (NaN where missing)."""
    rows = []
    for r in runs:
        g = getattr(r, part)
        s, v = np.asarray(g["step"], float), np.asarray(g["loss"], float)
        m = dict(zip(s[s >= 0], v[s >= 0]))
        rows.append([m.get(t, math.nan) for t in steps])
    a = np.array(rows)
    n = np.sum(np.isfinite(a), 0)
    mean = np.nanmean(a, 0)
    se = np.nanstd(a, 0, ddof=1) / np.sqrt(np.maximum(n, 1)) if a.shape[0] > 1 else np.zeros_like(mean)
    return mean, se


def prior_gaps(an):
    """Per learning rate and width: the seed-mean loss's RMS relative gap to the prior-expected kernel
    curve over the recorded steps, train and test, with its standard error (from the seeds' spread)."""
    rows = []
    for key, kr, fin in _prior_curves(an):
        k = kr.measurements["kernel"]
        for part in ("train", "test"):
            steps = np.asarray(getattr(kr, part)["step"], float)
            prior = np.ravel(np.asarray(k["prior_%s_loss" % part], float))[:steps.size]
            ok = (steps >= 0) & np.isfinite(prior)
            for w, runs in sorted(fin.items()):
                mean, se = _seed_mean(runs, part, steps[ok])
                rel = (mean - prior[ok]) / prior[ok]
                good = np.isfinite(rel)
                if not good.any():
                    continue
                rows.append({"eta": key, "part": part, "width": w, "seeds": len(runs),
                             "gap": float(np.sqrt(np.mean(rel[good] ** 2))),
                             "noise": float(np.sqrt(np.mean((se[good] / prior[ok][good]) ** 2)))})
    return rows


def prior_gap_slopes(an):
    """{part: (slope, stderr, widths used)}: least squares of log gap against log width over the widths
    whose gap is at least twice its noise (the seeds' standard error), train and test."""
    out = {}
    for part in ("train", "test"):
        rr = [r for r in prior_gaps(an) if r["part"] == part and r["gap"] >= 2 * r["noise"] and r["gap"] > 0]
        if len(rr) < 2:
            continue
        x, y = np.log([r["width"] for r in rr]), np.log([r["gap"] for r in rr])
        A = np.vstack([x, np.ones_like(x)]).T
        coef, res, *_ = np.linalg.lstsq(A, y, rcond=None)
        se = math.sqrt(res[0] / (len(x) - 2) / np.sum((x - x.mean()) ** 2)) if len(x) > 2 and res.size else math.nan
        out[part] = (float(coef[0]), se, [r["width"] for r in rr])
    return out


def _prior_caption(an):
    rows = [r for r in prior_gaps(an) if r["part"] == "train"]
    txt = ("Full-batch gradient descent below ηλ₀ = 2: the finite nets' train and test losses (mean over seeds, colour = width, "
           "band ± one standard error) against infinite-width gradient descent, which is kernel regression with the analytic NTK. "
           "Black: kernel regression averaged over the infinite-width net's random start f₀ ~ GP(0, K_NNGP) (kernel/prior_*_loss), "
           "the curve the seed means approach; grey dashed: the same from f₀ = 0, its mean-predictor part. Right: the RMS relative gap "
           "between seed mean and prior curve over the recorded steps, against width, with the seeds' standard error as the noise "
           "floor (dotted). The seed mean of a finite net differs from its infinite-width limit at order 1/n (the 1/√n fluctuations "
           "average out), so the gap should fall like n^-1 until it meets the noise.")
    if len(rows) >= 2:
        txt += " Train gap: " + ", ".join("n = %d: %.3f (noise %.3f)" % (r["width"], r["gap"], r["noise"]) for r in rows) + "."
    for part, (slope, se, ws) in prior_gap_slopes(an).items():
        txt += " Fitted %s slope over n = %d–%d (gap above twice the noise): %.2f%s." % (
            part, ws[0], ws[-1], slope, " ± %.2f" % se if math.isfinite(se) else "")
    return txt


@F.figure("kernel_prior", "(n) Finite nets against infinite-width gradient descent, averaged over the prior", _prior_caption)
def kernel_prior(an):
    data = _prior_curves(an)
    if not data:
        raise F.NoData("needs a -kernel_regression run with -kernel_prior and finite runs at its learning rate")
    key, kr, fin = data[0]
    k = kr.measurements["kernel"]
    fig, axes = F.plt.subplots(1, 3, figsize=(3 * F.PANEL_W + F.LEGEND_W, F.PANEL_H * 1.2))
    widths = sorted(fin)
    cmap = F.plt.get_cmap("viridis")
    cols = {w: cmap(0.85 * i / max(1, len(widths) - 1)) for i, w in enumerate(widths)}
    handles = []
    for ax, part in zip(axes[:2], ("train", "test")):
        g = getattr(kr, part)
        steps = np.asarray(g["step"], float)
        prior = np.ravel(np.asarray(k["prior_%s_loss" % part], float))[:steps.size]
        ok = steps >= 0
        arrays = [prior[ok]]
        for w in widths:
            mean, se = _seed_mean(fin[w], part, steps[ok])
            line, = ax.plot(steps[ok], mean, color=cols[w], lw=1.4, label="n = %d (%d seeds)" % (w, len(fin[w])))
            ax.fill_between(steps[ok], mean - se, mean + se, color=cols[w], alpha=0.2, lw=0)
            arrays.append(mean)
            if part == "train":
                handles.append(line)
        pl, = ax.plot(steps[ok], prior[ok], color="k", lw=2.2, label="∞: mean over f₀")
        zero = np.asarray(g["loss"], float)[ok]
        zl, = ax.plot(steps[ok], zero, color="0.5", ls="--", lw=1.2, label="∞ from f₀ = 0")
        arrays.append(zero)
        F._set_logy_if_positive(ax, arrays, force=True)
        ax.set_xlabel("step", fontsize=9)
        ax.set_ylabel("%s loss" % part, fontsize=9)
        ax.set_title("%s loss" % part, fontsize=10)
        ax.grid(alpha=0.3, lw=0.5)
    handles += [pl, zl]
    ax = axes[2]
    rows = [r for r in prior_gaps(an) if r["eta"] == key]
    for part, marker in (("train", "o"), ("test", "s")):
        rr = [r for r in rows if r["part"] == part]
        if not rr:
            continue
        ws = np.array([r["width"] for r in rr], float)
        ax.plot(ws, [r["gap"] for r in rr], color="C3" if part == "train" else "C0", marker=marker, label="%s gap" % part)
        ax.plot(ws, [r["noise"] for r in rr], color="C3" if part == "train" else "C0", ls=":", lw=1)
    rr = [r for r in rows if r["part"] == "train"]
    if len(rr) >= 2:
        w0, g0 = rr[0]["width"], rr[0]["gap"]
        ws = np.array([r["width"] for r in rr], float)
        ax.plot(ws, g0 * (ws / w0) ** -0.5, color="0.4", ls="--", lw=1, label="∝ n^-1/2")
        ax.plot(ws, g0 * (ws / w0) ** -1.0, color="0.4", ls="-.", lw=1, label="∝ n^-1")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width n", fontsize=9)
    ax.set_ylabel("RMS relative gap to the prior curve", fontsize=9)
    ax.set_title("gap against width", fontsize=10)
    ax.grid(alpha=0.3, lw=0.5, which="both")
    ax.legend(fontsize=7, loc="best")
    fig.suptitle("(n) %s: finite nets against infinite-width gradient descent" % eta_key_label(key), fontsize=11)
    w_in, h_in = fig.get_size_inches()
    right = 1 - (F.LEGEND_W + 0.3) / w_in
    fig.subplots_adjust(left=0.6 / w_in, right=right, bottom=0.6 / h_in, top=1 - 0.75 / h_in, wspace=0.35)
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(right + 0.1 / w_in, 0.5), fontsize=8)
    return fig
