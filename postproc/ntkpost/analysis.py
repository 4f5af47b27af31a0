"""Phases, raw per-run numbers, seed aggregation and critical learning rates (docs/conventions.md).

    an = Analysis(sweep)                    # thresholds from /config, overridable by keyword
    an.rows                                 # one dict per run (same order as sweep.runs)
    an.group_rows()                         # one dict per (cfg, param, width, eta), seeds aggregated
    an.critical_rows()                      # eta_crit / eta_max estimates per (cfg, param, width)

Phase of a run (docs/conventions.md "Learning rates and phases"; thresholds: diverge_factor,
catapult_factor, catapult_window):
  divergent  a non-finite loss, status "diverged", L_max > diverge_factor * L_0 (L_max the largest
             recorded loss of the run), or (finished) L_T > L_0
  catapult   finished, not divergent, eta*lambda_0 > 2 and eta*lambda_T < 2 (training brought the
             curvature below the edge of stability); when catapult_factor > 1 it also needs a loss
             spike, peak_ratio = L_peak / L_0 > catapult_factor
  lazy       finished, not divergent, eta*lambda_0 <= 2
  unresolved finished, not divergent, eta*lambda_0 > 2 and eta*lambda_T >= 2, or lambda_T (or
             lambda_0) unknown, or the spike catapult_factor > 1 asks for missing
  incomplete has rows but is still running (or the job was killed) and not yet divergent
  pending    no rows
lambda_0 is the run's instance lambda_0 (Run.lambda0); lambda_T the last finite value of the run's
lambda/ trajectory, else the summary's lambda_final. L_peak is the largest recorded loss at step
<= catapult_window (the spike is recorded, not required unless catapult_factor > 1); it comes from
the recorded train rows (every record_every steps), so with record_every > 1 it can miss the true
peak; the summary's loss_peak and peak_step (the step of the peak in the window, tracked by the
trainer at every step; absent in older files) are kept alongside.
"""
import logging
import math
from collections import OrderedDict

import numpy as np

from .io import PARAM_ORDER, SUMMARY_RESULT_FIELDS, eta_key_label

log = logging.getLogger("ntkpost")

PHASES = ("lazy", "catapult", "unresolved", "divergent", "incomplete", "pending")
_SEVERITY = {"pending": 0, "incomplete": 1, "lazy": 2, "catapult": 3, "unresolved": 4, "divergent": 5}
# phases of finished runs that did not diverge (their final numbers are meaningful)
SETTLED = ("lazy", "catapult", "unresolved")

# catapult_factor 1: no spike required (the trainer's default)
DEFAULT_THRESHOLDS = {"catapult_factor": 1.0, "diverge_factor": 1e6, "catapult_window": None}


def _f(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


class Thresholds:
    """catapult_factor (<= 1: no loss spike required for a catapult), diverge_factor,
    catapult_window (steps; None = whole run) and where each came from ("config", "default" or
    "override")."""

    def __init__(self, config=None, **overrides):
        config = config or {}
        self.source = {}
        for k, d in DEFAULT_THRESHOLDS.items():
            if overrides.get(k) is not None:
                v, src = overrides[k], "override"
            elif k in config and math.isfinite(_f(config[k])) and _f(config[k]) > 0:
                v, src = config[k], "config"
            else:
                v, src = d, "default"
            if v is not None:
                v = int(v) if k == "catapult_window" else float(v)
            setattr(self, k, v)
            self.source[k] = src

    def as_dict(self):
        return {k: getattr(self, k) for k in DEFAULT_THRESHOLDS}

    def __repr__(self):
        return "Thresholds(%s)" % ", ".join("%s=%s [%s]" % (k, getattr(self, k), self.source[k])
                                            for k in DEFAULT_THRESHOLDS)


def _last_finite(a):
    if a is None or a.size == 0:
        return math.nan
    ok = np.isfinite(a)
    return float(a[ok][-1]) if ok.any() else math.nan


def run_metrics(run, th):
    """Dict of raw and derived numbers of one run (see module doc for the phase rule)."""
    r = OrderedDict()
    r["file"] = run.path
    r["run"] = run.index
    r["instance"] = run.instance
    r["cfg"] = run.cfg_label
    r["width"] = run.width
    r["param"] = run.param
    r["seed"] = run.seed
    r["eta"] = run.eta
    r["eta_factor"] = run.eta_factor
    r["status_name"] = run.status_name
    # raw /summary values, exactly as stored
    for k in SUMMARY_RESULT_FIELDS:
        if k in run.summary and k != "lambda0":
            r[k] = run.summary[k]
    r.setdefault("status", run.status)
    lam0 = run.lambda0
    r["lambda0"] = lam0
    r["eta_lambda0"] = run.eta * lam0 if math.isfinite(lam0) else (
        run.eta_factor if math.isfinite(run.eta_factor) else math.nan)
    # trajectory numbers
    L0 = Lpk = Lmax = LT = math.nan
    nonfinite = False
    if run.has_data and "loss" in run.train:
        step, loss = run.train["step"], run.train["loss"]
        if step[0] == 0 and math.isfinite(loss[0]):
            L0 = float(loss[0])
        nonfinite = bool((~np.isfinite(loss)).any())
        win = step <= th.catapult_window if th.catapult_window is not None else np.ones_like(step, bool)
        lw = loss[win]
        Lpk = math.inf if (~np.isfinite(lw)).any() else (float(lw.max()) if lw.size else math.nan)
        Lmax = math.inf if nonfinite else float(loss.max())
        LT = float(loss[-1])
    if not math.isfinite(L0):
        L0 = _f(run.summary.get("loss0")) if run.status in (1, 2, 3) else math.nan
    r["L0"], r["L_peak"], r["L_max"], r["L_T"] = L0, Lpk, Lmax, LT
    r["peak_ratio"] = Lpk / L0 if L0 > 0 else math.nan
    r["final_ratio"] = LT / L0 if L0 > 0 else math.nan
    r["last_step"] = int(run.train["step"][-1]) if run.has_data else -1
    # NTK / Hessian
    lamT = _last_finite(run.lam["value"]) if run.lam is not None and "value" in run.lam else math.nan
    if not math.isfinite(lamT):
        lamT = _f(run.summary.get("lambda_final"))
    r["lambda_T"] = lamT
    r["lambda_ratio"] = lamT / lam0 if lam0 > 0 else math.nan
    r["eta_lambda_T"] = run.eta * lamT
    r["kernel_distance_T"] = (_last_finite(run.lam["kernel_distance"]) if run.lam is not None
                              and "kernel_distance" in run.lam else math.nan)
    s0 = sT = mT = math.nan
    if run.hessian is not None and "sharpness" in run.hessian:
        hs = run.hessian
        if hs["step"][0] == 0:
            s0 = _f(hs["sharpness"][0])
        sT = _last_finite(hs["sharpness"])
        if "min_eig" in hs:
            mT = _last_finite(hs["min_eig"])
    r["sharpness0"], r["sharpness_T"], r["min_eig_T"] = s0, sT, mT
    r["eta_sharpness_T"] = run.eta * sT
    r["train_acc_T"] = _last_finite(run.train["accuracy"]) if run.has_data and "accuracy" in run.train else math.nan
    r["test_acc_T"] = (_last_finite(run.test["accuracy"]) if run.test is not None and "accuracy" in run.test
                       and run.test["step"].size else math.nan)
    r["test_loss_T"] = (_last_finite(run.test["loss"]) if run.test is not None and "loss" in run.test
                        and run.test["step"].size else math.nan)
    # phase
    el0, elT = r["eta_lambda0"], r["eta_lambda_T"]
    if not run.has_data:
        ph = "pending"
    elif (run.status == 3 or nonfinite or (L0 > 0 and Lmax > th.diverge_factor * L0)):
        ph = "divergent"
    elif run.status != 2:
        ph = "incomplete"
    elif L0 > 0 and LT > L0:
        ph = "divergent"
    elif el0 <= 2:
        ph = "lazy"
    elif (el0 > 2 and elT < 2
          and (th.catapult_factor <= 1 or r["peak_ratio"] > th.catapult_factor)):
        ph = "catapult"
    else:  # eta*lambda_T >= 2, lambda_0 or lambda_T unknown, or the required spike missing
        ph = "unresolved"
    r["phase"] = ph
    return r


def phase_rule_text(th):
    """One-paragraph statement of the phase rule with the thresholds in force (captions, report)."""
    spike = ("and (catapult_factor = %g) a loss spike L_peak > %g L_0 within %s steps"
             % (th.catapult_factor, th.catapult_factor,
                th.catapult_window if th.catapult_window is not None else "all")
             if th.catapult_factor > 1 else "(no loss spike required: catapult_factor = %g)" % th.catapult_factor)
    return ("divergent: a non-finite loss, L_max > %g L_0 or L_T > L_0; catapult: not divergent, "
            "η·λ₀ > 2 and η·λ_T < 2 %s; lazy: not divergent, η·λ₀ ≤ 2; unresolved: not divergent, "
            "η·λ₀ > 2 but η·λ_T ≥ 2, λ₀ or λ_T unknown, or the required spike missing; incomplete: still running "
            "(or killed)" % (th.diverge_factor, spike))


def majority_phase(phases):
    """Most common phase of a group, ignoring pending; ties go to the more severe phase."""
    ps = [p for p in phases if p != "pending"]
    if not ps:
        return "pending"
    counts = {p: ps.count(p) for p in set(ps)}
    return max(counts, key=lambda p: (counts[p], _SEVERITY[p]))


def stats(values):
    """mean, std (population), min, max and n of the finite values."""
    a = np.asarray([v for v in values], dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
            "max": float(a.max()), "n": int(a.size)}


def aggregate_curves(pairs):
    """Seed aggregate of curves given as [(step, y), ...]: dict step, mean, lo (min), hi (max),
    std, n per step (union of the steps; non-finite values are left out). None if empty."""
    pairs = [(np.asarray(s), np.asarray(y, dtype=np.float64)) for s, y in pairs
             if s is not None and len(s)]
    if not pairs:
        return None
    steps = np.unique(np.concatenate([s for s, _ in pairs]))
    M = np.full((len(pairs), steps.size), np.nan)
    for i, (s, y) in enumerate(pairs):
        M[i, np.searchsorted(steps, s)] = np.where(np.isfinite(y), y, np.nan)
    n = np.isfinite(M).sum(axis=0)
    keep = n > 0
    M, steps, n = M[:, keep], steps[keep], n[keep]
    if steps.size == 0:
        return None
    with np.errstate(all="ignore"):
        return {"step": steps, "mean": np.nanmean(M, axis=0), "std": np.nanstd(M, axis=0),
                "lo": np.nanmin(M, axis=0), "hi": np.nanmax(M, axis=0), "n": n,
                "n_curves": len(pairs)}


class Analysis:
    """Everything the figures and the report need, computed once from a Sweep.

    xkind is "eta_lambda0" when every run with data has eta*lambda_0 (from lambda0, or its
    eta_factor, which is eta*lambda_0 by definition), else "eta"; x is the matching number.
    """

    def __init__(self, sweep, **threshold_overrides):
        self.sweep = sweep
        self.th = Thresholds(sweep.config, **threshold_overrides)
        self.rows = [run_metrics(r, self.th) for r in sweep.runs]
        have = [row for row, r in zip(self.rows, sweep.runs) if r.has_data]
        if have and all(math.isfinite(row["eta_lambda0"]) for row in have):
            self.xkind = "eta_lambda0"
            self.xlabel = "η·λ₀  (learning rate × initial top NTK eigenvalue)"
            self.xshort = "η·λ₀"
        else:
            self.xkind = "eta"
            self.xlabel = "η  (absolute learning rate; λ₀ unknown)"
            self.xshort = "η"
        for row in self.rows:
            row["x"] = row[self.xkind]
        self.lambda0_known = any(math.isfinite(row["lambda0"]) for row in self.rows)
        self._groups = None

    # -- grouping ---------------------------------------------------------------------------------
    def groups(self):
        """OrderedDict (cfg, param, width, eta_key) -> [index into sweep.runs] of runs with data,
        ordered by cfg, param (ntk, sp, mup), width, x."""
        if self._groups is None:
            g = {}
            for i, r in enumerate(self.sweep.runs):
                if r.has_data:
                    g.setdefault((r.cfg_label, r.param, r.width, r.eta_key), []).append(i)
            keyf = lambda k: (k[0], PARAM_ORDER.get(k[1], 9), k[1], k[2], self.group_x(g[k]), k[3])
            self._groups = OrderedDict((k, g[k]) for k in sorted(g, key=keyf))
        return self._groups

    def group_x(self, idx):
        xs = [self.rows[i]["x"] for i in idx if math.isfinite(self.rows[i]["x"])]
        return float(np.mean(xs)) if xs else math.nan

    def panels(self):
        """Ordered list of (cfg, param, width) that have runs with data."""
        out = []
        for k in self.groups():
            if k[:3] not in out:
                out.append(k[:3])
        return out

    def panel_title(self, panel):
        cfg, param, width = panel
        return "%s, width %s%s" % (param, width or "inf", (" [%s]" % cfg) if cfg else "")  # 0: the kernel run

    def panel_groups(self, panel):
        """[(eta_key, [run indices])] of one panel, ordered by x."""
        return [(k[3], idx) for k, idx in self.groups().items() if k[:3] == panel]

    def eta_keys(self):
        """Every learning-rate key with data, ordered by x (then key)."""
        xs = {}
        for k, idx in self.groups().items():
            xs.setdefault(k[3], []).append(self.group_x(idx))
        return sorted(xs, key=lambda k: (np.nanmean(xs[k]) if np.isfinite(xs[k]).any() else k[1], k))

    def eta_label(self, key):
        return eta_key_label(key)

    def runs_of(self, idx):
        return [self.sweep.runs[i] for i in idx]

    def group_phase(self, idx):
        return majority_phase([self.rows[i]["phase"] for i in idx])

    # -- tables -----------------------------------------------------------------------------------
    GROUP_FIELDS = ("x", "eta", "lambda0", "peak_ratio", "final_ratio", "lambda_ratio",
                    "eta_lambda_T", "kernel_distance_T", "sharpness0", "sharpness_T", "eta_sharpness_T", "L_T",
                    "train_acc_T", "test_acc_T", "test_loss_T")
    # known before training: over every seed; the others are results, over the settled seeds only
    # (a divergent run's final numbers are those of the step where it was stopped: one of them in
    # a group would make its mean meaningless)
    INITIAL_FIELDS = ("x", "eta", "lambda0", "sharpness0")

    def group_rows(self):
        """One dict per (cfg, param, width, eta) group: n_seeds, phase (majority) and phase counts,
        n_settled (seeds that finished without diverging), and <field>_mean/_std/_min/_max for
        GROUP_FIELDS: over every seed for INITIAL_FIELDS, over the settled seeds for the results
        (NaN when every seed diverged)."""
        out = []
        for (cfg, param, width, key), idx in self.groups().items():
            row = OrderedDict(cfg=cfg, param=param, width=width,
                              lr=eta_key_label(key, unicode=False), eta_factor=key[1] if key[0] == "c" else math.nan)
            row["n_seeds"] = len(idx)
            phases = [self.rows[i]["phase"] for i in idx]
            row["phase"] = majority_phase(phases)
            row["phase_counts"] = " ".join("%s:%d" % (p, phases.count(p)) for p in PHASES if p in phases)
            settled = [i for i in idx if self.rows[i]["phase"] in SETTLED]
            row["n_settled"] = len(settled)
            for f in self.GROUP_FIELDS:
                s = stats(self.rows[i][f] for i in (idx if f in self.INITIAL_FIELDS else settled))
                for sk in ("mean", "std", "min", "max"):
                    row["%s_%s" % (f, sk)] = s[sk]
            out.append(row)
        return out

    def critical_rows(self):
        """Per (cfg, param, width): lambda0 over instances, the largest lazy x below the first
        catapult, x_crit = smallest x whose seed-majority phase is catapult, x_max = smallest x
        whose majority is divergent, and the matching absolute eta (mean over that group's runs).
        x is eta*lambda0 (theory: x_crit = 2, x_max = 4 for the uv model, ~12 for ReLU nets) or
        eta when lambda0 is unknown."""
        out = []
        for panel in self.panels():
            gs = self.panel_groups(panel)
            idx_all = [i for _, idx in gs for i in idx]
            inst = {}
            for i in idx_all:
                r = self.sweep.runs[i]
                inst.setdefault((r.file_index, r.instance, r.seed), self.rows[i]["lambda0"])
            lam = stats(inst.values())
            seq = [(self.group_x(idx), self.group_phase(idx), idx) for _, idx in gs]
            seq = [s for s in seq if math.isfinite(s[0])]
            seq.sort(key=lambda s: s[0])
            first = lambda ph: next((s for s in seq if s[1] == ph), None)
            cat, div = first("catapult"), first("divergent")
            bound = cat or div
            lazy_below = [s for s in seq if s[1] == "lazy" and (bound is None or s[0] < bound[0])]
            eta_of = lambda s: float(np.mean([self.rows[i]["eta"] for i in s[2]])) if s else math.nan
            row = OrderedDict(cfg=panel[0], param=panel[1], width=panel[2], n_runs=len(idx_all),
                              n_lr=len(seq), lambda0_mean=lam["mean"], lambda0_std=lam["std"],
                              eta_crit_theory=2.0 / lam["mean"] if lam["mean"] > 0 else math.nan,
                              x_last_lazy=lazy_below[-1][0] if lazy_below else math.nan,
                              x_crit=cat[0] if cat else math.nan,
                              x_max=div[0] if div else math.nan,
                              eta_crit=eta_of(cat), eta_max=eta_of(div))
            row["xkind"] = self.xkind
            out.append(row)
        return out

    def boundaries(self, idx_groups=None):
        """Phase boundaries on the x axis measured from the data, pooled over the given groups
        (default: every group), from the seed-majority phase of each x (3 significant digits):
        {"catapult": (a, b), "divergent": (c, d)} where a is the largest lazy x below the first
        catapult-or-unresolved x b, and c the largest settled x below the first divergent x d. A
        boundary that the data does not bracket is absent."""
        idx_groups = list(self.groups().values()) if idx_groups is None else idx_groups
        pooled = OrderedDict()
        for idx in idx_groups:
            x = self.group_x(idx)
            if math.isfinite(x):
                pooled.setdefault(float("%.3g" % x), []).extend(self.rows[i]["phase"] for i in idx)
        seq = sorted((x, majority_phase(p)) for x, p in pooled.items())
        out = OrderedDict()
        above = next((x for x, p in seq if p in ("catapult", "unresolved", "divergent")), None)
        below = [x for x, p in seq if p == "lazy" and (above is None or x < above)]
        if above is not None and below and any(p in ("catapult", "unresolved") for _, p in seq):
            out["catapult"] = (below[-1], next(x for x, p in seq if p in ("catapult", "unresolved")))
        div = next((x for x, p in seq if p == "divergent"), None)
        ok = [x for x, p in seq if p in SETTLED and (div is None or x < div)]
        if div is not None and ok:
            out["divergent"] = (ok[-1], div)
        return out

    def phase_ranges(self, field):
        """{phase: (min, max, n)} of a per-run field over the runs of each settled phase (finite
        values only): what a caption can state about the data."""
        out = OrderedDict()
        for ph in SETTLED:
            v = np.array([r[field] for r in self.rows if r["phase"] == ph], float)
            v = v[np.isfinite(v)]
            if v.size:
                out[ph] = (float(v.min()), float(v.max()), int(v.size))
        return out

    def phase_counts(self):
        out = OrderedDict((p, 0) for p in PHASES)
        for row in self.rows:
            out[row["phase"]] += 1
        return out
