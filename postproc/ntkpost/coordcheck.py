"""The coordinate check (docs/conventions.md "Feature learning"; the mup package's coord check):
|dz_l| = RMS(z_l(t) - z_l(0)) of every dense layer against the width, per step, from the features/
group of a sweep, and the fitted width exponents with confidence intervals from the seeds.

    data = coord_data(sweep)       # {(cfg, param, eta_key): {step: {layer: {width: {seed: value}}}}}
    rows = exponent_rows(sweep)    # one row per (cfg, param, eta, step, layer, width range)

A width exponent is the least-squares slope of log|dz_l| against log n. It is fitted per seed
(over the widths where that seed has a positive finite value) and averaged over the seeds; the
95% confidence interval is the Student t interval of that mean (NaN with one seed). The slope of the
seed-mean curve is given beside it.
"""
import math
from collections import OrderedDict

import numpy as np

from .io import eta_key_label

PARAM_ORDER = {"ntk": 0, "sp": 1, "mup": 2}
# The width range of the tolerances (fitted over the widest widths, 1024 to 4096).
WIDE_FROM = 1024


def layer_label(l, n_layers):
    """z_1 .. z_L for the hidden layers, f for the output."""
    return "f" if l == n_layers - 1 else "z_%d" % (l + 1)


def coord_data(sweep, field="dz_rms"):
    out = {}
    for r in sweep.runs:
        f = r.measurements.get("features")
        if not f or field not in f or not len(f["step"]):
            continue
        vals = np.asarray(f[field], float)
        vals = vals.reshape(len(f["step"]), -1)
        key = (r.cfg_label, r.param, r.eta_key)
        for s, row in zip(f["step"], vals):
            for l, v in enumerate(row):
                d = out.setdefault(key, {}).setdefault(int(s), {}).setdefault(l, {}).setdefault(r.width, {})
                d[(r.file_index, r.seed)] = float(v)
    keyf = lambda k: (k[0], PARAM_ORDER.get(k[1], 9), k[1], k[2])
    return OrderedDict((k, out[k]) for k in sorted(out, key=keyf))


def _slope(ws, vs):
    ws, vs = np.asarray(ws, float), np.asarray(vs, float)
    ok = np.isfinite(vs) & (vs > 0)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(ws[ok]), np.log(vs[ok]), 1)[0])


def _t975(dof):
    try:
        from scipy.stats import t
        return float(t.ppf(0.975, dof))
    except ImportError:  # the table's values
        table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
        return table.get(dof, 1.96 + 2.5 / dof)


def fit(by_width, lo=None, hi=None):
    """by_width {width: {seed: value}} -> dict slope (mean over seeds), ci95, n_seeds, slope_of_mean,
    width_lo, width_hi."""
    ws = sorted(w for w in by_width if (lo is None or w >= lo) and (hi is None or w <= hi))
    seeds = sorted({s for w in ws for s in by_width[w]})
    per_seed = [_slope(ws, [by_width[w].get(s, math.nan) for w in ws]) for s in seeds]
    per_seed = np.array([p for p in per_seed if np.isfinite(p)])
    n = per_seed.size
    mean_curve = [np.mean([v for v in by_width[w].values() if np.isfinite(v)] or [math.nan]) for w in ws]
    out = {"width_lo": ws[0] if ws else 0, "width_hi": ws[-1] if ws else 0, "n_widths": len(ws), "n_seeds": int(n),
           "slope": float(per_seed.mean()) if n else math.nan,
           "ci95": float(_t975(n - 1) * per_seed.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
           "slope_of_mean": _slope(ws, mean_curve)}
    return out


def exponent_rows(sweep, field="dz_rms"):
    """The width-exponent table: per (cfg, param, eta, step > 0, layer), over all widths and, when
    at least two widths are >= WIDE_FROM and narrower ones exist, over those alone."""
    rows = []
    for (cfg, param, eta), steps in coord_data(sweep, field).items():
        for step in sorted(s for s in steps if s > 0):
            layers = steps[step]
            for l in sorted(layers):
                by_width = layers[l]
                ranges = [(None, None)]
                wide = [w for w in by_width if w >= WIDE_FROM]
                if len(wide) >= 2 and len(wide) < len(by_width):
                    ranges.append((WIDE_FROM, None))
                for lo, hi in ranges:
                    f = fit(by_width, lo, hi)
                    if f["n_widths"] < 2:
                        continue
                    row = OrderedDict([("cfg", cfg), ("param", param), ("eta", eta_key_label(eta, unicode=False)),
                                       ("step", step), ("layer", layer_label(l, len(layers))), ("quantity", field)])
                    row.update(f)
                    rows.append(row)
    return rows


__all__ = ["coord_data", "exponent_rows", "fit", "layer_label"]
