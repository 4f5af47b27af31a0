"""One function per figure. Each takes an Analysis and returns a matplotlib Figure, or None (with a
logged note and `<function>.last_skip` set to the reason) when the file has no data for it.

Artists carry a gid so tests and notebooks can find them: "curve" (one seed-aggregated data
series), "band" (its min-max spread over seeds), "ref" (reference lines such as the phase boundaries,
theory's eta*lambda0 = 2 and the data's, or 2/eta), "cells" (phase-diagram markers), "init" (initial spectrum), "marker" (decorations).

    an = ntkpost.Analysis(ntkpost.load("out.h5"))
    fig = ntkpost.figures.catapult_curves(an)
    results = ntkpost.figures.make_all(an, "figs/")
"""
import functools
import logging
import math
import os
from collections import OrderedDict

import matplotlib
import matplotlib.ticker

if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline", "pdf", "svg"):
    try:
        matplotlib.use("Agg")
    except Exception:
        pass
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
import numpy as np  # noqa: E402

from .analysis import SETTLED, aggregate_curves, phase_rule_text  # noqa: E402
from .io import eta_key_label  # noqa: E402

log = logging.getLogger("ntkpost")

# Okabe-Ito (colourblind safe) for the phases; viridis (ordered by eta) for learning rates; plasma
# (ordered by width) for widths.
PHASE_COLORS = OrderedDict([("lazy", "#0072B2"), ("catapult", "#E69F00"), ("unresolved", "#CC79A7"),
                            ("divergent", "#D55E00"), ("incomplete", "#999999")])
OTHER_PHASE_COLOR = "#000000"  # a phase not listed above (none is expected)
PARAM_MARKERS = {"ntk": "o", "sp": "s", "mup": "^"}
PARAM_LINES = {"ntk": "-", "sp": "--", "mup": "-."}
PANEL_W, PANEL_H = 3.7, 2.9
LEGEND_W = 1.75  # inches kept on the right of a figure for its legend
MAX_PANELS = 24

FIGURES = OrderedDict()


class NoData(Exception):
    """Raised inside a figure function when the data it needs is absent."""


def figure(name, title, caption):
    """Register a figure function: catches NoData (returns None, logs, sets .last_skip)."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(an, **kw):
            wrapper.last_skip = None
            try:
                fig = fn(an, **kw)
            except NoData as e:
                wrapper.last_skip = str(e)
                log.info("figure %s skipped: %s", name, e)
                return None
            fig.ntk_name, fig.ntk_title = name, title
            fig.ntk_caption = caption(an) if callable(caption) else caption
            if _loss_of(an) == "xent":  # issue #18: the figures say which loss the runs used
                fig.ntk_caption += " Loss: softmax cross-entropy (-loss xent); phases classified by the MSE theory."
                fig.text(0.005, 0.005, "loss: xent (phases: MSE theory)", fontsize=7, color="0.3", gid="marker")
            return fig

        wrapper.name, wrapper.title, wrapper.last_skip = name, title, None
        FIGURES[name] = wrapper
        return wrapper

    return deco


def _loss_of(an):
    """The runs' -loss ("mse" when the files predate it)."""
    v = getattr(getattr(an, "sweep", None), "config", {}).get("loss", "mse")
    return v.decode() if isinstance(v, bytes) else str(v)


# -- helpers --------------------------------------------------------------------------------------
def _grid(n, ncols, title, size=(PANEL_W, PANEL_H)):
    ncols = max(1, min(ncols, n))
    nrows = int(math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols + LEGEND_W + 0.2, size[1] * nrows + 0.8),
                             squeeze=False)
    axes = list(axes.ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=12)
    return fig, axes[:n]


def _ncols(an, panels):
    return min(4, max(1, len({p[2] for p in panels})))


def _finish(fig, legend_handles=None, legend_title=None, right=None):
    """Fixed margins in inches (tight_layout is slow on big grids); the legend goes outside on the
    right and savefig(bbox_inches="tight") keeps it in the PNG."""
    w, h = fig.get_size_inches()
    nrows = max(1, len({round(ax.get_position().y0, 3) for ax in fig.axes if ax.get_visible()}))
    fig.subplots_adjust(left=0.75 / w, right=1 - (LEGEND_W + 0.1 if legend_handles else 0.25) / w,
                        bottom=0.6 / h, top=1 - 0.75 / h, wspace=0.42, hspace=0.6 if nrows > 1 else 0.2)
    if legend_handles:
        fig.legend(handles=legend_handles, loc="center left", bbox_to_anchor=(1 - LEGEND_W / w, 0.5),
                   title=legend_title, fontsize=8, title_fontsize=9, frameon=False)
    return fig


def eta_colors(an):
    keys = an.eta_keys()
    cmap = plt.get_cmap("viridis")
    n = max(1, len(keys) - 1)
    return OrderedDict((k, cmap(0.92 * i / n)) for i, k in enumerate(keys))


def width_colors(an):
    ws = sorted({p[2] for p in an.panels()})
    cmap = plt.get_cmap("plasma")
    n = max(1, len(ws) - 1)
    return {w: cmap(0.85 * i / n) for i, w in enumerate(ws)}


def _eta_handles(an, colors, used):
    keys = [k for k in colors if k in used]
    if len(keys) > 16:  # too many for a legend: first, some middle, last
        pick = sorted(set(np.linspace(0, len(keys) - 1, 12).round().astype(int)))
        keys = [keys[i] for i in pick]
    h = [Line2D([], [], color=colors[k], lw=2, label=an.eta_label(k)) for k in keys]
    h.append(Line2D([], [], color="0.4", lw=1.2, ls=":", label="divergent (dotted)"))
    return h


def _plot_agg(ax, agg, color, label=None, ls="-", lw=1.6, marker=None, x=None):
    xs = agg["step"] if x is None else x
    if marker is None and np.size(xs) == 1:
        marker = "o"  # a run recorded at one step only (-steps 0): a line alone would be invisible
    (line,) = ax.plot(xs, agg["mean"], color=color, ls=ls, lw=lw, label=label, marker=marker,
                      ms=4 if marker else None, gid="curve")
    if agg.get("n_curves", 1) > 1 and np.any(agg["hi"] > agg["lo"]):
        ax.fill_between(xs, agg["lo"], agg["hi"], color=color, alpha=0.18, lw=0, gid="band")
    return line


def _set_logy_if_positive(ax, arrays, force=False, span=1e7):
    """Log y when the values are positive and (force or) span more than a factor 20; non-positive
    values are masked; the lower limit is kept within `span` of the top so that losses that
    converge to ~0 do not squash the plot."""
    vals = np.concatenate([np.asarray(a, float).ravel() for a in arrays]) if arrays else np.array([])
    vals = vals[np.isfinite(vals)]
    pos = vals[vals > 0]
    if not pos.size or (not force and ((vals <= 0).any() or pos.max() / pos.min() <= 20)):
        return False
    ax.set_yscale("log", nonpositive="mask")
    lo, hi = pos.min(), pos.max()
    ax.set_ylim(max(lo, hi / span) / 1.5, hi * 1.5)
    return True


def _xscale(ax, xs):
    xs = np.asarray([x for x in xs if np.isfinite(x) and x > 0])
    if xs.size and xs.max() / xs.min() > 20:
        ax.set_xscale("log")


def _slog1p(x):
    x = np.asarray(x, float)
    return np.sign(x) * np.log1p(np.abs(x))


def _sexpm1(y):
    y = np.asarray(y, float)
    return np.sign(y) * np.expm1(np.abs(y))


def _log1p_steps(ax, last):
    """x axis of steps on a log(1 + step) scale from 0 to `last`, ticks at 0, 1, 2, 5, 10, 20, ...:
    the first steps (the catapult's spike) get as much room as the rest of the run."""
    ax.set_xscale("function", functions=(_slog1p, _sexpm1))
    last = max(1.0, float(last))
    ticks = [0]
    d = 1
    while d <= last * 1.0001:
        ticks += [t for t in (d, 2 * d, 5 * d) if t <= last * 1.0001]
        d *= 10
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlim(0, last)


def _phase_bounds(ax, an, idx_groups):
    """Vertical lines at the phase boundaries: theory (η·λ₀ = 2, when x is η·λ₀) and the data's
    (an.boundaries: halfway between the last x of one phase and the first of the next, geometric
    halfway on a log axis). Returns their legend handles (no text on the axes: nothing overlaps)."""
    lo, hi = ax.get_xlim()
    logx = ax.get_xscale() == "log"
    handles = []
    if an.xkind == "eta_lambda0" and lo <= 2.0 <= hi:
        ax.axvline(2.0, color="0.15", ls=(0, (4, 3)), lw=1.0, gid="ref")
        handles.append(Line2D([], [], color="0.15", ls=(0, (4, 3)), lw=1.0, label="theory: η·λ₀ = 2"))
    for ph, (a, b) in an.boundaries(idx_groups).items():
        x = math.sqrt(a * b) if logx and a > 0 else 0.5 * (a + b)
        col = PHASE_COLORS.get(ph, OTHER_PHASE_COLOR)
        ax.axvline(x, color=col, ls="-.", lw=1.6, gid="ref")
        what = "catapult" if ph == "catapult" else "divergence"
        handles.append(Line2D([], [], color=col, ls="-.", lw=1.6,
                              label="data: %s\nbetween %.3g and %.3g" % (what, a, b)))
    ax.set_xlim(lo, hi)
    return handles


def _bounds_text(an):
    """The data's phase boundaries, for captions."""
    b = an.boundaries()
    parts = ["%s between %s = %.3g and %.3g" % ("catapult onset" if ph == "catapult" else "divergence", an.xshort, lo, hi)
             for ph, (lo, hi) in b.items()]
    theory = " (theory: catapult onset at η·λ₀ = 2)" if an.xkind == "eta_lambda0" else ""
    if not parts:
        return "The data bracket no phase boundary%s. " % theory
    return "Phase boundaries measured: %s%s. " % ("; ".join(parts), theory)


def _shade_phases(ax, an, idx_groups):
    """Shade the x axis by the seed-majority phase pooled over the given groups (x rounded to 3
    significant digits); spans meet halfway (geometric halfway on a log axis)."""
    pooled = OrderedDict()
    for idx in idx_groups:
        x = an.group_x(idx)
        if np.isfinite(x):
            pooled.setdefault(float("%.3g" % x), []).extend(an.rows[i]["phase"] for i in idx)
    if not pooled:
        return []
    from .analysis import majority_phase
    xs = sorted(pooled)
    ph = [majority_phase(pooled[x]) for x in xs]
    logx = ax.get_xscale() == "log"
    mid = lambda a, b: math.sqrt(a * b) if logx else 0.5 * (a + b)
    lo, hi = ax.get_xlim()
    edges = [lo] + [mid(a, b) for a, b in zip(xs[:-1], xs[1:])] + [hi]
    used = []
    for i, p in enumerate(ph):
        if p in PHASE_COLORS and p != "incomplete":
            ax.axvspan(edges[i], edges[i + 1], color=PHASE_COLORS[p], alpha=0.12, lw=0, zorder=0,
                       gid="shade")
            if p not in used:
                used.append(p)
    ax.set_xlim(lo, hi)
    used.sort(key=list(PHASE_COLORS).index)
    return [Patch(color=PHASE_COLORS[p], alpha=0.3, label="%s (measured)" % p) for p in used]


def _series(an):
    """OrderedDict (cfg, param, width) -> [(eta_key, idx)] (the usual panels)."""
    return OrderedDict((p, an.panel_groups(p)) for p in an.panels())


def _limit_panels(panels, name):
    if len(panels) > MAX_PANELS:
        log.warning("figure %s: %d panels, showing the first %d", name, len(panels), MAX_PANELS)
        return panels[:MAX_PANELS]
    return panels


# -- per-eta curve figures -------------------------------------------------------------------------
def _eta_curve_figure(an, name, title, getter, ylabel, logy="auto", xmax=None, refs=None,
                      nodata="no data", xlabel="step", log1p=False):
    colors = eta_colors(an)
    panels = []
    for panel, gs in _series(an).items():
        curves = []
        for key, idx in gs:
            agg = aggregate_curves([getter(r) for r in an.runs_of(idx) if getter(r) is not None])
            if agg is not None and xmax is not None:
                keep = agg["step"] <= xmax
                agg = {k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in agg.items()}
                if not keep.any():
                    agg = None
            if agg is not None:
                curves.append((key, idx, agg))
        if curves:
            panels.append((panel, curves))
    if not panels:
        raise NoData(nodata)
    panels = _limit_panels(panels, name)
    fig, axes = _grid(len(panels), _ncols(an, [p for p, _ in panels]), title)
    used = set()
    for ax, (panel, curves) in zip(axes, panels):
        arrays, calm = [], []
        for key, idx, agg in curves:
            ph = an.group_phase(idx)
            _plot_agg(ax, agg, colors[key], ls=":" if ph == "divergent" else "-")
            if ph != "divergent":
                calm += [agg["lo"], agg["hi"]]
            if refs is not None:
                y = refs(an.runs_of(idx))
                if y is not None and np.isfinite(y):
                    ax.axhline(y, color=colors[key], ls=(0, (6, 3)), lw=0.8, alpha=0.8, gid="ref")
            used.add(key)
            arrays += [agg["lo"], agg["hi"]]
        # divergent curves leave through the top: the y range follows the other curves
        rng = calm if calm and len(calm) < len(arrays) else arrays
        if logy is True:
            _set_logy_if_positive(ax, rng, force=True)
        elif logy == "auto":
            _set_logy_if_positive(ax, rng)
        if rng is calm and ax.get_yscale() == "log":
            ax.set_ylim(top=ax.get_ylim()[1] * 5)
        elif rng is calm:
            v = np.concatenate([np.asarray(a, float) for a in calm])
            v = v[np.isfinite(v)]
            if v.size:
                pad = 0.1 * (v.max() - v.min() or abs(v.max()) or 1)
                ax.set_ylim(v.min() - pad, v.max() + 4 * pad)
        if log1p:
            _log1p_steps(ax, max(float(agg["step"][-1]) for _, _, agg in curves))
            if xlabel == "step":
                xlabel = "step t (log(1 + t) axis)"
        elif xmax is not None:
            ax.set_xlim(0, xmax)
        ax.set_title(an.panel_title(panel), fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, lw=0.5)
    return _finish(fig, _eta_handles(an, colors, used), an.xshort)


def _train(field):
    def get(r):
        if r.train is not None and field in r.train and r.train["step"].size:
            return r.train["step"], r.train[field]
        return None
    return get


def _test(field):
    def get(r):
        if r.test is not None and field in r.test and r.test["step"].size:
            return r.test["step"], r.test[field]
        return None
    return get


_SPREAD = "Curves: mean over seeds; band: min-max over seeds; colour: learning rate (viridis, ordered by %s); dotted: seed-majority divergent."


def _fmt_range(lo, hi):
    return ("%.3g" % lo) if "%.3g" % lo == "%.3g" % hi else "%.3g–%.3g" % (lo, hi)


def _measured(an, field, what, phases=None):
    """'what: lazy 0.55–0.84 (n = 4), catapult ...' from the data, or '' when nothing is known."""
    rng = an.phase_ranges(field)
    parts = ["%s %s (%d runs)" % (ph, _fmt_range(lo, hi), n) for ph, (lo, hi, n) in rng.items()
             if phases is None or ph in phases]
    return ("Measured %s: %s. " % (what, "; ".join(parts))) if parts else ""


def _n_divergent(an):
    n = sum(1 for r in an.rows if r["phase"] == "divergent")
    return ("%d divergent run%s (dotted) left the plot through the top. " % (n, "s" if n != 1 else "")) if n else ""


def _catapult_caption(an):
    return ("Training loss at every recorded step on a log(1 + step) axis, so the first steps, where the "
            "catapult's spike happens, get as much room as the rest of the run; log y; one panel per "
            "parameterization and width. " + _measured(an, "peak_ratio", "loss peak L_peak/L_0")
            + _measured(an, "final_ratio", "final loss L_T/L_0") + _n_divergent(an) + _SPREAD % an.xshort)


@figure("catapult_curves", "(a) Training loss: the catapult", _catapult_caption)
def catapult_curves(an):
    return _eta_curve_figure(an, "catapult_curves", "(a) Training loss L_t vs step (log(1 + t) axis), per learning rate",
                             _train("loss"), "train loss L_t (log)", logy=True, log1p=True,
                             nodata="no training rows")


@figure("test_accuracy_curves", "Test accuracy during training",
        lambda an: "Test accuracy at every test evaluation. " + _SPREAD % an.xshort)
def test_accuracy_curves(an):
    return _eta_curve_figure(an, "test_accuracy_curves", "Test accuracy vs step, per learning rate",
                             _test("accuracy"), "test accuracy", logy=False,
                             nodata="no test accuracy rows (regression targets or no test rows)")


def _lambda_schedule(an):
    c = an.sweep.config
    dense, every = c.get("lambda_dense_steps"), c.get("lambda_every")
    try:
        dense, every = int(dense or 0), int(every) if every is not None else None
    except (TypeError, ValueError):
        return ""
    if every is None:
        return ""
    sched = ("λ recorded at every step t < %d, then every %d steps" % (dense, every) if dense > 0
             else "λ recorded every %d steps" % every if every > 0 else "λ recorded at the first and last step")
    return sched + ". "


@figure("lambda_curves", "(b) Top NTK eigenvalue during training",
        lambda an: "λ_t, the largest eigenvalue of the empirical NTK, at every recorded step, on a log(1 + step) "
                   "axis; " + _lambda_schedule(an) + _measured(an, "lambda_ratio", "λ_T/λ_0")
                   + _n_divergent(an) + _SPREAD % an.xshort)
def lambda_curves(an):
    def get(r):
        if r.lam is not None and "value" in r.lam:
            return r.lam["step"], r.lam["value"]
        return None
    return _eta_curve_figure(an, "lambda_curves", "(b) Top NTK eigenvalue λ_t vs step (log(1 + t) axis), per learning rate",
                             get, "λ_t", logy="auto", log1p=True, nodata="no lambda/ datasets in the file")


@figure("sharpness_curves", "Sharpness during training, with 2/η",
        lambda an: "Sharpness s_t (largest Hessian eigenvalue) at every recorded step; dashed lines of "
                   "the same colour: 2/η for that learning rate (edge of stability). " + _SPREAD % an.xshort)
def sharpness_curves(an):
    def get(r):
        if r.hessian is not None and "sharpness" in r.hessian:
            return r.hessian["step"], r.hessian["sharpness"]
        return None

    def ref(runs):
        return 2.0 / float(np.mean([r.eta for r in runs]))
    return _eta_curve_figure(an, "sharpness_curves", "Sharpness s_t vs step, per learning rate (dashed: 2/η)",
                             get, "sharpness s_t", logy="auto", refs=ref,
                             nodata="no hessian/sharpness datasets in the file")


# -- scalar vs eta*lambda0 figures ----------------------------------------------------------------
def _xplot(ax, an, field, series, wcol, label_series=True):
    """One curve per (cfg, param, width): group mean of `field` vs group x, band min-max, over the
    finished non-divergent runs (a divergent run's final numbers are those of the step where it
    was stopped; its x range is shaded instead)."""
    n = 0
    for panel, gs in series.items():
        pts = []
        for key, idx in gs:
            idx = [i for i in idx if an.rows[i]["phase"] in SETTLED]
            vals = np.array([an.rows[i][field] for i in idx], float)
            vals = vals[np.isfinite(vals)]
            x = an.group_x(idx)
            if vals.size and np.isfinite(x):
                pts.append((x, vals.mean(), vals.min(), vals.max(), vals.size))
        if not pts:
            continue
        pts.sort()
        a = np.array(pts)
        cfg, param, width = panel
        lab = "%s w=%s%s" % (param, "inf" if width == 0 else width, (" [%s]" % cfg) if cfg else "")  # width 0: infinite
        agg = {"mean": a[:, 1], "lo": a[:, 2], "hi": a[:, 3], "n_curves": int(a[:, 4].max())}
        _plot_agg(ax, agg, wcol[width], label=lab if label_series else None,
                  ls=PARAM_LINES.get(param, "-"), marker=PARAM_MARKERS.get(param, "o"), x=a[:, 0])
        n += 1
    return n


def _xfigure(an, title, specs, series=None, extra=None):
    """specs: [(field, ylabel, logy, hlines)], one axis each, curves per (param, width)."""
    series = series or _series(an)
    wcol = width_colors(an)
    fig, axes = _grid(len(specs), len(specs), title, size=(5.2, 3.9))
    handles = None
    for ax, (field, ylabel, logy, hlines) in zip(axes, specs):
        n = _xplot(ax, an, field, series, wcol)
        if n == 0:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            continue
        _xscale(ax, [an.group_x(idx) for gs in series.values() for _, idx in gs])
        if logy:
            _set_logy_if_positive(ax, [l.get_ydata() for l in ax.lines], force=True)
        for y, lab in hlines:
            ax.axhline(y, color="k", lw=0.9, ls="--", gid="ref")
            ax.text(1.0, y, lab + " ", ha="right", va="bottom", fontsize=7,
                    transform=ax.get_yaxis_transform())
        # x range over every group, divergent ones included (their region is shaded)
        xs = np.array([an.group_x(idx) for gs in series.values() for _, idx in gs], float)
        xs = xs[np.isfinite(xs) & ((xs > 0) if ax.get_xscale() == "log" else np.isfinite(xs))]
        if xs.size:
            if ax.get_xscale() == "log":
                ax.set_xlim(xs.min() / 1.15, xs.max() * 1.15)
            else:
                pad = 0.05 * (xs.max() - xs.min() or abs(xs.max()) or 1)
                ax.set_xlim(xs.min() - pad, xs.max() + pad)
        if extra is not None:
            extra(ax, field)
        all_idx = [idx for gs in series.values() for _, idx in gs]
        bounds = _phase_bounds(ax, an, all_idx)
        shade = _shade_phases(ax, an, all_idx)
        ax.set_xlabel(an.xlabel if len(specs) == 1 else an.xshort + ("" if an.xkind == "eta_lambda0" else " (λ₀ unknown)"))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, lw=0.5)
        if handles is None:
            handles = [h for h in ax.get_legend_handles_labels()[0]] + bounds + shade
    if handles is None:
        plt.close(fig)
        raise NoData("no finite values")
    if len(specs) > 1:
        fig.text(0.5, 0.005, an.xlabel, ha="center", fontsize=8, color="0.3")
    return _finish(fig, handles, "param, width")


def _need_groups(an):
    if not an.groups():
        raise NoData("no runs with data")


def _spike_line(an):
    """(y, label) of the peak-ratio reference line: the spike a catapult must exceed when
    catapult_factor > 1, else L_peak = L_0."""
    cf = an.th.catapult_factor
    if cf > 1:
        return cf, "spike required for a catapult: %g" % cf
    return 1.0, "L_peak = L_0 (no spike required)"


@figure("peak_ratio", "(e) Loss peak L_peak/L_0 vs learning rate",
        lambda an: "Largest recorded training loss within the first %s steps divided by the initial loss, "
                   "mean over seeds (band min-max) of the finished non-divergent runs, one curve per parameterization and width. "
                   "The spike is recorded, not what defines a catapult; dashed horizontal line: %s. "
                   % (an.th.catapult_window if an.th.catapult_window is not None else "(all)", _spike_line(an)[1])
                   + _measured(an, "peak_ratio", "L_peak/L_0") + _bounds_text(an)
                   + "Background: measured phase (seed majority, pooled). x axis: %s." % an.xlabel)
def peak_ratio(an):
    _need_groups(an)
    return _xfigure(an, "(e) Loss peak within the catapult window, L_peak / L_0, vs %s" % an.xshort,
                    [("peak_ratio", "L_peak / L_0 (log)", True, [_spike_line(an)])])


@figure("test_accuracy", "Final test accuracy vs learning rate",
        lambda an: "Test accuracy at the last test evaluation, mean over seeds (band min-max), one curve "
                   "per parameterization and width; background: measured phase. x axis: %s." % an.xlabel)
def test_accuracy(an):
    _need_groups(an)
    if not any(np.isfinite(row["test_acc_T"]) for row in an.rows):
        raise NoData("no test accuracy")
    return _xfigure(an, "Final test accuracy vs %s" % an.xshort,
                    [("test_acc_T", "final test accuracy", False, [])])


def _lambda_final_caption(an):
    return ("Left: λ_T/λ_0 (final over initial top NTK eigenvalue); right: η·λ_T (dotted: the diagonal "
            "η·λ_T = η·λ₀, no change). Mean over seeds of the finished non-divergent runs, band min-max. "
            + _measured(an, "lambda_ratio", "λ_T/λ_0") + _measured(an, "eta_lambda_T", "η·λ_T")
            + _bounds_text(an) + "Background: measured phase (seed majority).")


@figure("lambda_final", "(d) Final NTK eigenvalue vs η·λ₀", _lambda_final_caption)
def lambda_final(an):
    _need_groups(an)
    if not any(np.isfinite(row["lambda_ratio"]) for row in an.rows):
        raise NoData("λ_T/λ_0 unknown (no lambda/ datasets or no lambda0)")

    def extra(ax, field):
        if field == "eta_lambda_T":
            lo, hi = ax.get_xlim()
            ylo, yhi = ax.get_ylim()
            ax.plot([lo, hi], [lo, hi], color="0.5", ls=":", lw=1, gid="diag")
            ax.set_xlim(lo, hi)
            ax.set_ylim(ylo, max(yhi, 2.6))  # the diagonal leaves through the top
    return _xfigure(an, "(d) λ_T/λ_0 and η·λ_T vs %s, with the phase boundaries" % an.xshort,
                    [("lambda_ratio", "λ_T / λ_0", False, [(1.0, "λ_T = λ_0")]),
                     ("eta_lambda_T", "η·λ_T", False, [(2.0, "η·λ_T = 2")])], extra=extra)


@figure("kernel_distance", "(f) Kernel distance vs η·λ₀",
        lambda an: "How far the NTK moved: ‖Θ_T − Θ_0‖_F / ‖Θ_0‖_F at the last lambda step, on the NTK batch, "
                   "mean over seeds of the finished non-divergent runs (band min-max), log y. "
                   + _measured(an, "kernel_distance_T", "kernel distance") + _bounds_text(an)
                   + "Background: measured phase (seed majority). x axis: %s." % an.xlabel)
def kernel_distance(an):
    _need_groups(an)
    if not any(np.isfinite(row["kernel_distance_T"]) for row in an.rows):
        raise NoData("no lambda/kernel_distance values (ntkhpc -kernel_distance, exact Gram matrix)")
    return _xfigure(an, "(f) Kernel distance ‖Θ_T − Θ_0‖_F / ‖Θ_0‖_F vs %s" % an.xshort,
                    [("kernel_distance_T", "‖Θ_T − Θ_0‖_F / ‖Θ_0‖_F (log)", True, [])])


WIDTH_SPECS = (("lambda0", "λ_0", "initial top NTK eigenvalue λ_0"),
               ("sharpness0", "s_0", "initial sharpness s_0"))
MIN_WIDTHS = 3  # a power law needs at least three widths


def _width_have(an):
    """The WIDTH_SPECS with values for at least MIN_WIDTHS widths of one parameterization."""
    have = []
    for spec in WIDTH_SPECS:
        by = {}
        for i, r in enumerate(an.sweep.runs):
            v = an.rows[i][spec[0]]
            if r.width > 0 and np.isfinite(v) and v > 0:  # width 0: the kernel limit, drawn as a line
                by.setdefault((r.cfg_label, r.param), set()).add(r.width)
        if any(len(ws) >= MIN_WIDTHS for ws in by.values()):
            have.append(spec)
    return have


def _width_caption(an):
    have = _width_have(an)
    what = " and ".join(s[2] for s in have) or "nothing"
    return ("%s vs width n, log-log, mean over seeds (band min-max) per parameterization with at least %d widths; "
            "the legend gives the fitted power-law exponent (slope of log value vs log n). η_crit = 2/λ_0, so "
            "the slope of λ_0 is minus that of η_crit. A dotted line: the infinite-width kernel run's value (n = ∞), "
            "when the file has one." % (what[0].upper() + what[1:], MIN_WIDTHS))


def _param_colors(params):
    """A colour per parameterization, in the order given (any names: new ones get the next colour)."""
    base = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000"]
    return {p: base[i % len(base)] for i, p in enumerate(params)}


@figure("width_scaling", "(h) Width scaling at initialisation", _width_caption)
def width_scaling(an):
    have = _width_have(an)
    if not have:
        raise NoData("λ_0 or initial sharpness known for fewer than %d widths" % MIN_WIDTHS)
    title = "(h) %s vs width n (log-log)" % " and ".join(s[2] for s in have)
    fig, axes = _grid(len(have), len(have), size=(4.6, 3.6), title=title[0:4] + title[4].upper() + title[5:])
    pcol = _param_colors(an.sweep.params)
    for ax, (field, short, long_) in zip(axes, have):
        by, limit = OrderedDict(), {}
        for i, r in enumerate(an.sweep.runs):
            v = an.rows[i][field]
            if not (np.isfinite(v) and v > 0):
                continue
            if r.width <= 0:  # the infinite-width kernel run (-kernel_regression): its value as a line
                limit[(r.cfg_label, r.param)] = v
                continue
            # one value per instance
            by.setdefault((r.cfg_label, r.param), {}).setdefault(r.width, {})[(r.file_index, r.instance, r.seed)] = v
        by = OrderedDict((k, d) for k, d in by.items() if len(d) >= MIN_WIDTHS)
        for (cfg, param), d in by.items():
            ws = np.array(sorted(d), float)
            vals = [np.array(list(d[w].values())) for w in sorted(d)]
            agg = {"mean": np.array([v.mean() for v in vals]), "lo": np.array([v.min() for v in vals]),
                   "hi": np.array([v.max() for v in vals]), "n_curves": max(v.size for v in vals)}
            slope = np.polyfit(np.log(ws), np.log(agg["mean"]), 1)[0]
            lab = param + ((" [%s]" % cfg) if cfg else "") + "  (slope %.2f)" % slope
            _plot_agg(ax, agg, pcol.get(param, "k"), label=lab, marker=PARAM_MARKERS.get(param, "o"),
                      ls=PARAM_LINES.get(param, "-"), x=ws)
            if (cfg, param) in limit:
                ax.axhline(limit[(cfg, param)], color=pcol.get(param, "k"), ls=":", lw=1,
                           label="%s, n = ∞ (%.4g)" % (param, limit[(cfg, param)]))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ws_all = sorted({w for d in by.values() for w in d})
        ax.set_xticks(ws_all)
        ax.set_xticklabels([str(w) for w in ws_all])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        fmt = matplotlib.ticker.FuncFormatter(lambda v, _: "%g" % v)
        ax.yaxis.set_major_formatter(fmt)
        lo, hi = ax.get_ylim()
        if lo > 0 and hi / lo < 10:  # less than a decade: label the minor ticks, else only the decades
            ax.yaxis.set_minor_formatter(fmt)
            ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_xlabel("width n (log)")
        ax.set_ylabel("%s (log)" % short)
        ax.set_title(long_[0].upper() + long_[1:], fontsize=10)
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(fontsize=8)
    return _finish(fig)


@figure("ntk_spectrum", "(g) Top-k NTK eigenvalues at initialisation and at the end",
        "Top-k eigenvalues of the empirical NTK (lambda/topk) vs their index, log scale: black = at "
        "initialisation (shared by every learning rate of an instance), colours = at the last recorded step "
        "per learning rate (mean over seeds, band min-max).")
def ntk_spectrum(an):
    def get(r):
        if r.lam is not None and "topk" in r.lam and r.lam["topk"].ndim == 2 and r.lam["step"].size:
            return r.lam["step"], r.lam["topk"]
        return None
    return _spectrum_figure(an, "ntk_spectrum", {"NTK top-k": get},
                            "(g) NTK spectrum: top-k eigenvalues at init (black) and at the end (colours)",
                            "no lambda/topk datasets in the file")


@figure("spectra", "Recorded spectra (spectra/ group)",
        "Every 2-D dataset under the runs' spectra/ group: eigenvalues vs index at the first recorded step "
        "(black) and the last (colours, per learning rate, mean over seeds, band min-max).")
def spectra(an):
    names = sorted({n for r in an.sweep.runs for n in r.spectra})
    if not names:
        raise NoData("no spectra/ group in the file")

    def mk(n):
        def get(r):
            s = r.spectra.get(n)
            return (s["step"], s["values"]) if s is not None and s["step"].size else None
        return get
    return _spectrum_figure(an, "spectra", OrderedDict((n, mk(n)) for n in names),
                            "Spectra: first recorded step (black) and last (colours)", "no spectra")


def _spectrum_figure(an, name, sources, title, nodata):
    colors = eta_colors(an)
    items = []
    for sname, get in sources.items():
        for panel, gs in _series(an).items():
            curves, init = [], None
            for key, idx in gs:
                finals = []
                for r in an.runs_of(idx):
                    d = get(r)
                    if d is None:
                        continue
                    vals = d[1]
                    ok = np.isfinite(vals).any(axis=1)
                    if not ok.any():
                        continue
                    rows = np.nonzero(ok)[0]
                    if init is None:
                        init = vals[rows[0]]
                    finals.append(vals[rows[-1]])
                if finals:
                    k = min(len(f) for f in finals)
                    M = np.array([np.sort(f[:k])[::-1] for f in finals])
                    curves.append((key, idx, {"mean": M.mean(0), "lo": M.min(0), "hi": M.max(0),
                                              "n_curves": len(finals)}))
            if curves:
                items.append((sname, panel, init, curves))
    if not items:
        raise NoData(nodata)
    items = _limit_panels(items, name)
    fig, axes = _grid(len(items), _ncols(an, [it[1] for it in items]), title)
    used = set()
    for ax, (sname, panel, init, curves) in zip(axes, items):
        if init is not None:
            iv = np.sort(init[np.isfinite(init)])[::-1]
            ax.plot(np.arange(1, iv.size + 1), iv, color="k", lw=2, marker="o", ms=3, gid="init")
        calm = [iv] if init is not None else []
        for key, idx, agg in curves:
            ph = an.group_phase(idx)
            if ph == "divergent":  # no band: the spread of blown-up spectra only clutters
                agg = dict(agg, n_curves=1)
            _plot_agg(ax, agg, colors[key], x=np.arange(1, agg["mean"].size + 1), lw=1.2,
                      ls=":" if ph == "divergent" else "-")
            used.add(key)
            if ph != "divergent":
                calm += [agg["lo"], agg["hi"]]
        # divergent spectra (taken where the run was stopped) leave through the top
        if _set_logy_if_positive(ax, calm or [l.get_ydata() for l in ax.lines], force=True) and calm:
            ax.set_ylim(top=ax.get_ylim()[1] * 3)
        ax.set_title("%s: %s" % (sname, an.panel_title(panel)) if len(sources) > 1 else an.panel_title(panel),
                     fontsize=9)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("eigenvalue index")
        ax.set_ylabel("eigenvalue")
        ax.grid(alpha=0.3, lw=0.5)
    h = [Line2D([], [], color="k", lw=2, marker="o", ms=3, label="initialisation")] + _eta_handles(an, colors, used)
    return _finish(fig, h, an.xshort)


def _broadened(nodes, weights, grid, sigma):
    """SLQ nodes and weights as a density on grid: a sum of Gaussians of width sigma."""
    ok = np.isfinite(nodes) & np.isfinite(weights) & (weights > 0)
    d = (grid[:, None] - nodes[ok][None, :]) / sigma
    return (np.exp(-0.5 * d * d) * weights[ok][None, :]).sum(axis=1) / (sigma * np.sqrt(2 * np.pi))


@figure("hessian_density", "Hessian spectral density (stochastic Lanczos quadrature)",
        "SLQ estimate of the loss Hessian's eigenvalue density (nodes and weights from density/, "
        "Gaussian-broadened with sigma = 1% of the range), at the first recorded step (black) and the "
        "last (colours, per learning rate, first seed of each group); log density.")
def hessian_density(an):
    items = []
    for panel, gs in _series(an).items():
        init, curves = None, []
        for key, idx in gs:
            runs = [r for r in an.runs_of(idx) if getattr(r, "density", None) is not None]
            if not runs:
                continue
            d = runs[0].density
            if init is None:
                init = (d["nodes"][0], d["weights"][0])
            curves.append((key, idx, (d["nodes"][-1], d["weights"][-1])))
        if curves:
            items.append((panel, init, curves))
    if not items:
        raise NoData("no density/ datasets in the file (ntkhpc -density_steps)")
    items = _limit_panels(items, "hessian_density")
    colors = eta_colors(an)
    fig, axes = _grid(len(items), _ncols(an, [it[0] for it in items]),
                      "Hessian spectral density (SLQ): first recorded step (black) and last (colours)")
    used = set()
    for ax, (panel, init, curves) in zip(axes, items):
        allnodes = np.concatenate([n[np.isfinite(n)] for n, _ in [init] + [c[2] for c in curves]])
        lo, hi = float(allnodes.min()), float(allnodes.max())
        span = max(hi - lo, 1e-12)
        grid = np.linspace(lo - 0.05 * span, hi + 0.05 * span, 600)
        sigma = 0.01 * span
        ax.plot(grid, _broadened(*init, grid, sigma), color="k", lw=2, gid="init")
        for key, idx, (n, w) in curves:
            ax.plot(grid, _broadened(n, w, grid, sigma), color=colors[key], lw=1.2, gid="curve",
                    ls=":" if an.group_phase(idx) == "divergent" else "-")
            used.add(key)
        ax.set_yscale("log")
        ax.set_ylim(bottom=1e-4 / span)
        ax.set_title(an.panel_title(panel), fontsize=9)
        ax.set_xlabel("Hessian eigenvalue")
        ax.set_ylabel("density")
        ax.grid(alpha=0.3, lw=0.5)
    h = [Line2D([], [], color="k", lw=2, label="initialisation")] + _eta_handles(an, colors, used)
    return _finish(fig, h, an.xshort)


@figure("phase_diagram", "(c) Phase diagram: width × learning rate",
        lambda an: "Each cell is one (width, learning rate) of one parameterization; colour: phase of the "
                   "seed majority (lazy / catapult / unresolved / divergent; grey: still running); a fraction "
                   "k/n is shown where seeds disagree; vertical lines: the phase boundaries of the theory and of the "
                   "data (legend). " + _bounds_text(an) + "Phases: %s (thresholds: %s). x axis: %s."
                   % (phase_rule_text(an.th), ", ".join("%s from %s" % kv for kv in an.th.source.items()),
                      an.xlabel))
def phase_diagram(an):
    _need_groups(an)
    by = OrderedDict()
    for (cfg, param, width, key), idx in an.groups().items():
        by.setdefault((cfg, param), []).append((width, key, idx))
    fig, axes = _grid(len(by), min(3, len(by)),
                      "(c) Phase diagram: width × %s (seed majority)" % an.xshort)
    used, bound_handles = [], []
    for ax, ((cfg, param), cells) in zip(axes, by.items()):
        # The width-0 (kernel regression) runs get a row of their own above the widest net, "inf".
        finite = [c[0] for c in cells if c[0] > 0]
        y_inf = 4 * max(finite) if finite else 1
        has_inf = len(finite) < len(cells)
        cells = [(w if w > 0 else y_inf, key, idx) for w, key, idx in cells]
        pts = OrderedDict((p, []) for p in PHASE_COLORS)
        for width, key, idx in cells:
            ph = an.group_phase(idx)
            x = an.group_x(idx)
            if not np.isfinite(x):
                continue
            pts.setdefault(ph, []).append((x, width))
            phases = [an.rows[i]["phase"] for i in idx]
            k = phases.count(ph)
            if k != len(phases):
                ax.annotate("%d/%d" % (k, len(phases)), (x, width), fontsize=6, ha="center",
                            va="center", color="k")
        for ph, xy in pts.items():
            if xy:
                a = np.array(xy)
                ax.scatter(a[:, 0], a[:, 1], marker="s", s=170, c=PHASE_COLORS.get(ph, OTHER_PHASE_COLOR),
                           edgecolors="white", linewidths=0.5, gid="cells", label=ph)
                if ph not in used:
                    used.append(ph)
        ax.set_yscale("log", base=2)
        ws = sorted({c[0] for c in cells})
        ax.set_yticks(ws)
        ax.set_yticklabels(["inf" if has_inf and w == y_inf else str(w) for w in ws])
        ax.minorticks_off()
        _xscale(ax, [an.group_x(c[2]) for c in cells])
        if len(ws) == 1:
            ax.set_ylim(ws[0] / 1.6, ws[0] * 1.6)
        else:
            ax.set_ylim(ws[0] / 1.4, ws[-1] * 1.4)
        if ax.get_xscale() == "linear":
            xl = ax.get_xlim()
            ax.set_xlim(xl[0] - 0.03 * (xl[1] - xl[0]), xl[1] + 0.03 * (xl[1] - xl[0]))
        bounds = _phase_bounds(ax, an, [c[2] for c in cells])
        for h in bounds:
            if h.get_label() not in [b.get_label() for b in bound_handles]:
                bound_handles.append(h)
        ax.set_title("%s%s" % (param, (" [%s]" % cfg) if cfg else ""), fontsize=10)
        ax.set_xlabel(an.xshort if an.xkind == "eta_lambda0" else "η (λ₀ unknown)")
        ax.set_ylabel("width n")
        ax.grid(alpha=0.3, lw=0.5)
    used.sort(key=lambda p: list(PHASE_COLORS).index(p) if p in PHASE_COLORS else len(PHASE_COLORS))
    handles = [Patch(color=PHASE_COLORS.get(p, OTHER_PHASE_COLOR), label=p) for p in used] + bound_handles
    return _finish(fig, handles, "phase")

@figure("coord_check", "(j) Coordinate check: |dz_l| vs width",
        "The muP coordinate check (features/dz_rms): |dz_l| = RMS(z_l(t) - z_l(0)) of each dense layer "
        "(z_1 .. z_L hidden, f the output) on the NTK batch against the width, log-log, one row per "
        "parameterization (and learning rate), one panel per step; mean over seeds, band min-max. The "
        "legend gives the width exponent fitted over all widths at that step (mean of the per-seed "
        "slopes). Flat: order-1 feature updates (muP); falling like n^-1/2: the kernel regime (ntk); "
        "rising: an unstable parameterization at this learning rate (sp). coord_check.csv lists the "
        "exponents with 95% confidence intervals.")
def coord_check(an, max_steps=5):
    from .coordcheck import coord_data, fit, layer_label
    data = coord_data(an.sweep)
    if not data:
        raise NoData("no features/ group (run with -features_every)")
    groups = [(k, v) for k, v in data.items() if any(s > 0 for s in v)]
    if not groups:
        raise NoData("no feature records after step 0")
    steps = sorted({s for _, v in groups for s in v if s > 0})[:max_steps]
    fig, axes = plt.subplots(len(groups), len(steps), squeeze=False,
                             figsize=(2.9 * len(steps) + 0.6, 2.5 * len(groups) + 0.9))
    fig.suptitle("(j) Coordinate check: |dz_l| = RMS(z_l(t) − z_l(0)) vs width (log-log)", fontsize=12)
    cmap = plt.get_cmap("viridis")
    for gi, ((cfg, param, eta), by_step) in enumerate(groups):
        n_layers = max(len(v) for v in by_step.values())
        for si, step in enumerate(steps):
            ax = axes[gi][si]
            layers = by_step.get(step, {})
            for l in sorted(layers):
                ws = np.array(sorted(layers[l]), float)
                vals = [np.array([v for v in layers[l][w].values() if np.isfinite(v) and v > 0]) for w in sorted(layers[l])]
                ok = np.array([v.size > 0 for v in vals])
                if ok.sum() < 1:
                    continue
                agg = {"mean": np.array([v.mean() for v in vals if v.size]), "lo": np.array([v.min() for v in vals if v.size]),
                       "hi": np.array([v.max() for v in vals if v.size]), "n_curves": max(v.size for v in vals)}
                f = fit(layers[l])
                lab = "%s (%+.2f)" % (layer_label(l, n_layers), f["slope"]) if np.isfinite(f["slope"]) else layer_label(l, n_layers)
                _plot_agg(ax, agg, cmap(l / max(1, n_layers - 1) * 0.9), label=lab, marker="o", x=ws[ok])
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            wall = sorted({w for l in layers for w in layers[l]})
            if wall:
                ax.set_xticks(wall)
                ax.set_xticklabels([str(int(w)) for w in wall], fontsize=7, rotation=45)
            ax.grid(alpha=0.3, lw=0.5)
            ax.set_title("%s%s, t = %d" % (param, (" [%s]" % cfg) if cfg else "", step), fontsize=9)
            if si == 0:
                ax.set_ylabel("|dz_l|  (%s)" % eta_key_label(eta), fontsize=8)
            if gi == len(groups) - 1:
                ax.set_xlabel("width n", fontsize=8)
            ax.legend(fontsize=6, loc="best", title="layer (slope)", title_fontsize=6)
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=0.7 / w, right=1 - 0.15 / w, bottom=0.75 / h, top=1 - 0.7 / h, wspace=0.35, hspace=0.55)
    return fig



# -- all of them ----------------------------------------------------------------------------------
# Order of the HTML report, the story: the loss (the catapult), lambda, the phases, the ratios, the
# kernel distance, the spectrum, the width; then the rest, and the feature-learning studies.
ORDER = ("catapult_curves", "lambda_curves", "phase_diagram", "lambda_final", "peak_ratio", "kernel_distance",
         "ntk_spectrum", "width_scaling", "test_accuracy", "test_accuracy_curves", "sharpness_curves", "spectra",
         "hessian_density", "coord_check", "mutransfer", "width_convergence", "linearized", "accuracy_width",
         "eta_max", "catapult_time", "batchnorm", "explr", "kernel_prior")


def make_all(an, outdir, dpi=110, names=None, keep_figures=False):
    """Draw every figure, save <outdir>/<name>.png. Returns a list of dicts (name, title, caption,
    path or None, skipped reason or None, figure if keep_figures). Never raises for one figure."""
    os.makedirs(outdir, exist_ok=True)
    out = []
    for name in (names or ORDER):
        fn = FIGURES[name]
        res = {"name": name, "title": fn.title, "caption": "", "path": None, "skipped": None,
               "figure": None}
        try:
            fig = fn(an)
        except Exception as e:  # a bug in one figure must not lose the others
            log.exception("figure %s failed", name)
            res["skipped"] = "error: %s: %s" % (type(e).__name__, e)
            out.append(res)
            continue
        if fig is None:
            res["skipped"] = fn.last_skip
        else:
            res["caption"] = fig.ntk_caption
            res["path"] = os.path.join(outdir, name + ".png")
            fig.savefig(res["path"], dpi=dpi, bbox_inches="tight", pad_inches=0.1)  # wide tick labels stay in
            if keep_figures:
                res["figure"] = fig
            else:
                plt.close(fig)
            log.info("wrote %s", res["path"])
        out.append(res)
    return out
