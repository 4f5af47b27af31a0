#!/usr/bin/python3
"""Tests of postproc/ntkpost on synthetic ntkhpc files (tests/postproc_synth.py) and, with
--real out.h5 [more.h5 ...], the same generic checks on real ntkhpc output.

    /usr/bin/python3 -m pytest -q tests/test_postproc.py     # synthetic files, one test per group
    /usr/bin/python3 tests/test_postproc.py                  # the same, standalone
    /usr/bin/python3 tests/test_postproc.py --real out.h5    # also a real file
    /usr/bin/python3 tests/test_postproc.py --real out.h5 --no-synth --keep /tmp/pp

Each check_* function is a group of named checks (check()); under pytest each test_* function runs
one group and fails with the names of its failed checks, standalone main() runs every test_*
function (SYNTH_TESTS) and ends with the line "N passed, N failed" (exit 1 on failure). The
synthetic files are written once per process. The expected numbers (curves per figure, summary
values) are computed here from the HDF5 files with h5py directly, not through ntkpost.
"""
import argparse
import atexit
import base64
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import traceback

import matplotlib

matplotlib.use("Agg")
import h5py  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("NTK_SOURCE_DIR", os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "postproc"))
sys.path.insert(0, HERE)
import ntkpost  # noqa: E402
import ntkpost.cli  # noqa: E402,F401  (the command line, not imported by the package)
import postproc_synth as synth  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

PASSED, FAILED = [], []
SUMMARY_FIELDS = ("status", "steps_done", "n_train_records", "n_test_records", "loss0", "loss_peak",
                  "loss_final", "acc_final", "test_loss_final", "test_acc_final", "wall_seconds",
                  "lambda_final", "peak_step")
CFG_IGNORE = {"output", "overwrite", "widths", "seeds", "params", "etas", "eta_factors", "created",
              "flush_seconds", "progress_seconds", "quiet", "n_runs", "n_instances", "world_size",
              "ranks_per_run", "width", "seed", "param", "eta"}
CURVE_FIGS = ("catapult_curves", "test_accuracy_curves", "lambda_curves", "sharpness_curves")


def check(name, cond, detail=""):
    if cond:
        PASSED.append(name)
    else:
        FAILED.append(name)
        print("FAIL %s %s" % (name, detail))
    return cond


def section(fn):
    """Run a test function; an exception is one failure (with traceback), never the end."""
    def run(*a, **kw):
        try:
            return fn(*a, **kw)
        except Exception:
            FAILED.append(fn.__name__)
            print("FAIL %s raised:" % fn.__name__)
            traceback.print_exc()
    run.__name__ = fn.__name__
    return run


# -- independent reading with h5py ----------------------------------------------------------------
def _s(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def _key(g):
    ef = float(g.attrs["eta_factor"]) if "eta_factor" in g.attrs else math.nan
    lr = ("c", float("%.10g" % ef)) if math.isfinite(ef) else ("eta", float("%.10g" % float(g.attrs["eta"])))
    p = g.attrs["param"]
    p = _s(p) if not isinstance(p, (int, np.integer)) else {0: "ntk", 1: "sp", 2: "mup"}[int(p)]
    return p, int(g.attrs["width"]), lr


def _summary_row(s, i):
    if s is None:
        return None
    hit = np.nonzero((s["run"] == i) & (s["status"] != 0))[0]
    if hit.size:
        return s[hit[0]]
    return s[i] if i < s.shape[0] else None


def _valid(g, sub, field):
    if sub not in g or "step" not in g[sub] or field not in g[sub]:
        return None
    st = g[sub]["step"][()]
    ok = st >= 0
    if not ok.any():
        return None
    v = g[sub][field][()][ok]
    return st[ok], v


def expected(paths):
    """Per run (from h5py): key, has train/test/lambda/hessian/topk data, independent phase."""
    runs = []
    for path in paths:
        with h5py.File(path, "r") as f:
            cfg = dict(f["config"].attrs) if "config" in f else {}
            cfgkey = repr(sorted((k, _s(v) if isinstance(v, bytes) else repr(v)) for k, v in cfg.items()
                                 if k not in CFG_IGNORE))
            cf = float(cfg.get("catapult_factor", 1.0))  # 1: no spike required (trainer default)
            df = float(cfg.get("diverge_factor", 1e6))
            win = cfg.get("catapult_window")
            s = f["summary"][()] if "summary" in f else None
            for name in sorted(f["runs"]):
                g = f["runs"][name]
                i = int(g.attrs["run"])
                row = _summary_row(s, i)
                status = int(row["status"]) if row is not None else -1
                tr = _valid(g, "train", "loss")
                rec = {"file": path, "run": i, "key": _key(g), "status": status, "row": row,
                       "attrs": dict(g.attrs), "train": tr is not None,
                       "test": (_valid(g, "test", "accuracy") is not None
                                and np.isfinite(_valid(g, "test", "accuracy")[1]).any()),
                       "lambda": _valid(g, "lambda", "value") is not None,
                       "hessian": _valid(g, "hessian", "sharpness") is not None,
                       "topk": _valid(g, "lambda", "topk") is not None,
                       "spectra": sorted(k for k in g.get("spectra", {}) if "spectra" in g)
                                  + (["spectrum/ntk"] if "spectrum" in g and (g["spectrum/step"][()] >= 0).any() else []),
                       "density": "density" in g and bool((g["density/step"][()] >= 0).any())}
                lam0 = g.attrs.get("lambda0", row["lambda0"] if row is not None and "lambda0" in row.dtype.names else math.nan)
                if not (np.isfinite(lam0) and lam0 > 0) and rec["lambda"]:
                    st, v = _valid(g, "lambda", "value")
                    lam0 = v[0] if st[0] == 0 else math.nan
                ef, eta = float(g.attrs.get("eta_factor", math.nan)), float(g.attrs["eta"])
                if not (np.isfinite(lam0) and lam0 > 0) and np.isfinite(ef) and ef > 0 and eta > 0:
                    lam0 = ef / eta  # eta = eta_factor / lambda0 by definition
                rec["lambda0"] = float(lam0)
                # lambda_T: the last finite lambda/value, else the summary's lambda_final
                lamT = math.nan
                if rec["lambda"]:
                    v = _valid(g, "lambda", "value")[1]
                    lamT = float(v[np.isfinite(v)][-1]) if np.isfinite(v).any() else math.nan
                if not np.isfinite(lamT) and row is not None and "lambda_final" in row.dtype.names:
                    lamT = float(row["lambda_final"])
                rec["lambda_T"] = lamT
                # the phase rule of docs/conventions.md ("Learning rates and phases")
                el0 = eta * lam0 if np.isfinite(lam0) else ef
                elT = eta * lamT
                ph = "pending"
                if tr is not None:
                    st, L = tr
                    L0 = L[0] if st[0] == 0 else math.nan
                    w = st <= int(win) if win is not None and int(win) > 0 else np.ones(st.size, bool)
                    spike = cf <= 1 or L[w].max() > cf * L0
                    if status == 3 or not np.isfinite(L).all() or L.max() > df * L0:
                        ph = "divergent"
                    elif status != 2:
                        ph = "incomplete"
                    elif L[-1] > L0:
                        ph = "divergent"
                    elif el0 <= 2:
                        ph = "lazy"
                    elif el0 > 2 and elT < 2 and spike:
                        ph = "catapult"
                    else:
                        ph = "unresolved"
                rec["phase"] = ph
                rec["cfg"] = cfgkey
                rec["seed"] = int(g.attrs["seed"])
                rec["nrows"] = 0 if tr is None else tr[0].size
                runs.append(rec)
    if len(paths) > 1:  # the same run in several files (a rerun): the most complete copy is kept
        best = {}
        for r in runs:
            k = (r["cfg"], r["key"], r["seed"])
            rank = (r["status"] in (2, 3), r["status"] == 1, r["nrows"])
            o = best.get(k)
            if o is None or (o["file"] != r["file"] and rank > (o["status"] in (2, 3), o["status"] == 1, o["nrows"])):
                best[k] = r
            elif o["file"] == r["file"]:
                best[k + (r["run"],)] = r
        keep = {id(r) for r in best.values()}
        runs = [r for r in runs if id(r) in keep]
    return runs


def groups_with(runs, flag):
    return {r["key"] for r in runs if r["train"] and r[flag]}


def series_with(runs, pred):
    """(param, width) series of the scalar figures: finished runs that did not diverge."""
    return {r["key"][:2] for r in runs if r["phase"] in ("lazy", "catapult", "unresolved") and pred(r)}


def count(fig, gid, kind="line"):
    n = 0
    for ax in fig.axes:
        arts = ax.lines if kind == "line" else ax.collections
        n += sum(1 for a in arts if a.get_gid() == gid)
    return n


def count_offsets(fig, gid):
    return sum(len(c.get_offsets()) for ax in fig.axes for c in ax.collections if c.get_gid() == gid)


# -- generic checks (synthetic and real) ----------------------------------------------------------
@section
def check_dataset(tag, paths, outdir):
    exp = expected(paths)
    sweep = ntkpost.load(paths)
    an = ntkpost.Analysis(sweep)
    check("%s: run count" % tag, len(sweep.runs) == len(exp), "%d vs %d" % (len(sweep.runs), len(exp)))
    got_ph = {(os.path.abspath(row["file"]), row["run"]): row["phase"] for row in an.rows}
    bad_ph = [(os.path.basename(e["file"]), e["run"], e["phase"], got_ph.get((os.path.abspath(e["file"]), e["run"])))
              for e in exp if got_ph.get((os.path.abspath(e["file"]), e["run"])) != e["phase"]]
    check("%s: phases follow the rule (computed here from the file)" % tag, not bad_ph, str(bad_ph[:5]))
    F = ntkpost.figures
    # the report draws every figure once; its Figure objects are inspected here
    out = ntkpost.write_report(an, outdir, quiet=True, keep_figures=True)
    figs = {r["name"]: r["figure"] for r in out["figures"]}
    why = {r["name"]: r["skipped"] for r in out["figures"]}
    # -- figure objects: number of curves
    groups = groups_with(exp, "train")
    want = {
        "catapult_curves": groups,
        "test_accuracy_curves": groups_with(exp, "test"),
        "lambda_curves": groups_with(exp, "lambda"),
        "sharpness_curves": groups_with(exp, "hessian"),
        "ntk_spectrum": groups_with(exp, "topk"),
    }
    for name in F.ORDER:
        fig = figs.get(name)
        if name in want:
            n = len(want[name])
            if n == 0:
                check("%s: %s skipped without data" % (tag, name), fig is None)
                continue
            if not check("%s: %s drawn" % (tag, name), fig is not None, why[name]):
                continue
            got = count(fig, "curve")
            check("%s: %s has %d curves" % (tag, name, n), got == n, "got %d" % got)
            multi = sum(1 for k in want[name] if sum(1 for r in exp if r["key"] == k and r["train"]) > 1)
            nb = count(fig, "band", "coll")
            check("%s: %s bands <= curves, present with seeds" % (tag, name),
                  nb <= got and (nb > 0 or multi == 0), "bands %d, multi-seed groups %d" % (nb, multi))
            if name == "sharpness_curves":
                check("%s: sharpness 2/eta lines" % tag, count(fig, "ref") == n)
            if name == "ntk_spectrum":
                check("%s: spectrum init lines" % tag, count(fig, "init") == len({k[:2] for k in want[name]}))
        elif name == "phase_diagram":
            if check("%s: phase_diagram drawn" % tag, fig is not None):
                got = count_offsets(fig, "cells")
                check("%s: phase_diagram has one cell per group" % tag, got == len(groups),
                      "%d vs %d" % (got, len(groups)))
        elif name in ("peak_ratio", "test_accuracy"):
            ser = series_with(exp, (lambda r: True) if name == "peak_ratio" else (lambda r: r["test"]))
            if not ser:
                check("%s: %s skipped or empty" % (tag, name), fig is None or count(fig, "curve") == 0)
                continue
            if check("%s: %s drawn" % (tag, name), fig is not None, why[name]):
                got = count(fig, "curve")
                check("%s: %s has %d curves" % (tag, name, len(ser)), got == len(ser), "got %d" % got)
        elif name == "lambda_final":
            ser = series_with(exp, lambda r: np.isfinite(r["lambda_T"]) and np.isfinite(r["lambda0"]))
            if not ser:
                check("%s: lambda_final skipped" % tag, fig is None)
                continue
            if check("%s: lambda_final drawn" % tag, fig is not None):
                per_ax = [sum(1 for l in ax.lines if l.get_gid() == "curve") for ax in fig.axes]
                check("%s: lambda_final %d curves per panel" % (tag, len(ser)), per_ax == [len(ser)] * 2,
                      str(per_ax))
        elif name == "width_scaling":
            # a curve per parameterization known at >= 3 widths (a power law needs three)
            def at3(pred):
                ws = {}
                for r in exp:
                    if pred(r):
                        ws.setdefault(r["key"][0], set()).add(r["key"][1])
                return {p for p, w in ws.items() if len(w) >= 3}
            params = at3(lambda r: np.isfinite(r["lambda0"]))
            hparams = at3(lambda r: r["hessian"])
            if not params and not hparams:
                check("%s: width_scaling skipped" % tag, fig is None)
                continue
            if check("%s: width_scaling drawn" % tag, fig is not None):
                got = [sum(1 for l in ax.lines if l.get_gid() == "curve") for ax in fig.axes]
                wantn = [len(p) for p in (params, hparams) if p]
                check("%s: width_scaling curves per param" % tag, got == wantn, "%s vs %s" % (got, wantn))
        elif name == "kernel_distance":
            ser = series_with(exp, lambda r: r["lambda"] and np.isfinite(r["lambda0"]))
            if not ser:
                check("%s: kernel_distance skipped or empty" % tag, fig is None or count(fig, "curve") == 0)
            elif check("%s: kernel_distance drawn" % tag, fig is not None, why[name]):
                check("%s: kernel_distance has %d curves" % (tag, len(ser)), count(fig, "curve") == len(ser),
                      "got %d" % count(fig, "curve"))
        elif name == "hessian_density":
            groups_d = {r["key"] for r in exp if r["density"]}
            if not groups_d:
                check("%s: hessian_density skipped" % tag, fig is None)
            elif check("%s: hessian_density drawn" % tag, fig is not None):
                got = count(fig, "curve")
                check("%s: hessian_density has %d curves" % (tag, len(groups_d)), got == len(groups_d), "got %d" % got)
        elif name == "spectra":
            names = {n for r in exp for n in r["spectra"]}
            if not names:
                check("%s: spectra skipped" % tag, fig is None)
            else:
                check("%s: spectra drawn" % tag, fig is not None and count(fig, "curve") > 0)
        if fig is not None and name in ("catapult_curves", "lambda_curves"):
            check("%s: %s on a log(1 + step) axis from step 0" % (tag, name),
                  all(ax.get_xscale() == "function" and ax.get_xlim()[0] == 0 for ax in fig.axes if ax.get_visible()))
        if fig is not None and name == "ntk_spectrum":
            ticks = [t for ax in fig.axes for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            check("%s: ntk_spectrum integer index ticks" % tag, ticks and all(float(t).is_integer() for t in ticks), str(ticks))
        if fig is not None and name == "lambda_final":
            # the caption states the measured range of lambda_T/lambda_0 per phase, computed here
            cap = next(r["caption"] for r in out["figures"] if r["name"] == name)
            for ph in ("lazy", "catapult"):
                v = [r["lambda_T"] / r["lambda0"] for r in exp if r["phase"] == ph
                     and np.isfinite(r["lambda_T"]) and r["lambda0"] > 0]
                if v:
                    lo, hi = "%.3g" % min(v), "%.3g" % max(v)
                    want_txt = "%s %s (%d runs)" % (ph, lo if lo == hi else "%s–%s" % (lo, hi), len(v))
                    check("%s: lambda_final caption states the measured %s range" % (tag, ph), want_txt in cap,
                          "%r not in %r" % (want_txt, cap[:300]))
        if fig is not None:
            plt.close(fig)
    # -- group means: results over the seeds that did not diverge only
    bad_means = []
    by_run = {(os.path.abspath(r["file"]), r["run"]): r for r in exp}
    for idx, g in zip(an.groups().values(), an.group_rows()):
        mine = [by_run[(os.path.abspath(an.rows[i]["file"]), an.rows[i]["run"])] for i in idx]
        v = [r["lambda_T"] / r["lambda0"] for r in mine
             if r["phase"] in ("lazy", "catapult", "unresolved") and np.isfinite(r["lambda_T"]) and r["lambda0"] > 0]
        m = g["lambda_ratio_mean"]
        if (v and not math.isclose(m, float(np.mean(v)), rel_tol=1e-12)) or (not v and np.isfinite(m)):
            bad_means.append((g["param"], g["width"], g["lr"], m, v))
    check("%s: lambda_ratio_mean over the non-divergent seeds" % tag, not bad_means, str(bad_means[:3]))
    # -- the report: PNGs, CSV, HTML
    made = [r for r in out["figures"] if r["path"]]
    for r in out["figures"]:
        if r["path"]:
            with open(r["path"], "rb") as fh:
                head = fh.read(8)
            check("%s: %s.png is a PNG" % (tag, r["name"]), head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(r["path"]) > 5000)
        else:
            check("%s: %s not drawn only for lack of data" % (tag, r["name"]),
                  not (r["skipped"] or "").startswith("error"), r["skipped"])
    for must in ("catapult_curves", "test_accuracy_curves"):
        if groups_with(exp, "test" if "test" in must else "train"):
            check("%s: always-figure %s made" % (tag, must), any(r["name"] == must for r in made))
    check_summary_csv(tag, exp, out["runs.csv"])
    check_html(tag, out["report.html"], made)
    return an


def _eq(a, b):
    a, b = float(a), float(b)
    return (math.isnan(a) and math.isnan(b)) or a == b


@section
def check_summary_csv(tag, exp, csv_path):
    rows = ntkpost.report.read_csv(csv_path)
    check("%s: runs.csv one row per run" % tag, len(rows) == len(exp), "%d vs %d" % (len(rows), len(exp)))
    by = {(os.path.abspath(r["file"]), int(r["run"])): r for r in rows}
    bad = []
    n_cmp = 0
    for e in exp:
        r = by.get((os.path.abspath(e["file"]), e["run"]))
        if r is None:
            bad.append("missing run %d" % e["run"])
            continue
        for k, attr in (("width", "width"), ("seed", "seed"), ("eta", "eta"), ("eta_factor", "eta_factor")):
            if attr in e["attrs"] and not _eq(r[k], e["attrs"][attr]):
                bad.append("run %d %s %s != %s" % (e["run"], k, r[k], e["attrs"][attr]))
        if e["row"] is None:
            continue
        for k in SUMMARY_FIELDS:
            if k in e["row"].dtype.names:
                n_cmp += 1
                if k not in r or not _eq(r[k], e["row"][k]):
                    bad.append("run %d %s: csv %s != h5 %r" % (e["run"], k, r.get(k), e["row"][k]))
    check("%s: runs.csv equals /summary and run attrs (%d values)" % (tag, n_cmp), not bad, "; ".join(bad[:5]))


@section
def check_html(tag, path, made):
    with open(path, encoding="utf-8") as fh:
        h = fh.read()
    srcs = re.findall(r'\bsrc\s*=\s*["\']([^"\']*)', h, re.I)
    hrefs = re.findall(r'\bhref\s*=\s*["\']([^"\']*)', h, re.I)
    check("%s: html src only data:" % tag, all(s.startswith("data:") for s in srcs), str(srcs[:3]))
    check("%s: html href only #anchors" % tag, all(s.startswith("#") for s in hrefs), str(hrefs[:3]))
    check("%s: html no external css/js" % tag,
          not re.search(r"<script|<link|@import|url\(|<iframe", h, re.I))
    imgs = re.findall(r'<img[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', h)
    check("%s: html has every figure (%d)" % (tag, len(made)), len(imgs) == len(made) and
          all('id="fig-%s"' % r["name"] in h for r in made), "%d imgs" % len(imgs))
    check("%s: html images are PNGs" % tag, all(base64.b64decode(b)[:4] == b"\x89PNG" for b in imgs))
    pos = [h.find('id="fig-%s"' % r["name"]) for r in made]
    check("%s: html figures in the story's order" % tag, pos == sorted(pos) and
          [r["name"] for r in made] == [n for n in ntkpost.figures.ORDER if n in {r["name"] for r in made}])
    check("%s: html images shrink to the page, tables scroll in their box" % tag,
          re.search(r"figure img\{max-width:100%", h) is not None
          and h.count("<table>") == h.count('<div class="scroll"><table>'))


# -- measurements and their schema ----------------------------------------------------------------
def _nan_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        a, b = a.astype(float), b.astype(float)
        return bool(((a == b) | (np.isnan(a) & np.isnan(b))).all())
    return bool((a == b).all())


def _file_groups(f, g):
    """The measurement groups of run group g: the root attribute, else subgroups with a 1-D step."""
    if "measurements" in f.attrs:
        return [n for n in _s(f.attrs["measurements"]).split(",") if n]
    return [n for n in g if isinstance(g[n], h5py.Group) and "step" in g[n] and g[n]["step"].ndim == 1]


@section
def check_measurements(tag, path):
    """run.measurements and run.schema hold every group and dataset of the file (read here with
    h5py), valid rows only and sorted by step; the convenience views are the same dicts."""
    sweep = ntkpost.load(path)
    by = {r.index: r for r in sweep.runs}
    bad, n_ds, n_rows = [], 0, 0
    with h5py.File(path, "r") as f:
        legacy = "measurements" not in f.attrs
        for name in sorted(f["runs"]):
            g = f["runs"][name]
            run = by.get(int(g.attrs["run"]))
            if run is None:
                bad.append("%s not loaded" % name)
                continue
            groups = _file_groups(f, g)
            if list(run.measurements) != groups or list(run.schema) != groups:
                bad.append("%s groups %s / %s != %s" % (name, list(run.measurements), list(run.schema), groups))
            for grp in groups:
                m, sc, h = run.measurements.get(grp, {}), run.schema.get(grp, {}), g[grp]
                st = h["step"][()]
                ok = st >= 0
                order = np.argsort(st[ok], kind="stable")
                if set(m) != set(h) or set(sc.get("datasets", {})) != set(h):
                    bad.append("%s/%s datasets %s != %s" % (name, grp, sorted(m), sorted(h)))
                if sc.get("description") != (_s(h.attrs["description"]) if "description" in h.attrs else ""):
                    bad.append("%s/%s description %r" % (name, grp, sc.get("description")))
                for ds in h:
                    n_ds += 1
                    want = h[ds][()][ok][order]
                    got = m.get(ds)
                    if got is None or not _nan_equal(got, want) or got.dtype != np.dtype(h[ds].dtype.kind == "f" and "f8" or "i8"):
                        bad.append("%s/%s/%s rows differ" % (name, grp, ds))
                    n_rows += 0 if got is None else got.shape[0]
                    spec = sc.get("datasets", {}).get(ds, {})
                    for a in ("units", "description"):
                        if spec.get(a) != (_s(h[ds].attrs[a]) if a in h[ds].attrs else ""):
                            bad.append("%s/%s/%s %s %r" % (name, grp, ds, a, spec.get(a)))
                    if spec.get("width") != (1 if h[ds].ndim == 1 else h[ds].shape[1]):
                        bad.append("%s/%s/%s width %r" % (name, grp, ds, spec.get("width")))
                    if not legacy and not spec.get("description"):
                        bad.append("%s/%s/%s has no description" % (name, grp, ds))
            ms = run.measurements
            views = ((run.train, ms.get("train")), (run.test, ms.get("test")),
                     (run.lam, ms["lambda"] if "lambda" in ms and ms["lambda"]["step"].size else None),
                     (run.hessian, ms["hessian"] if "hessian" in ms and ms["hessian"]["step"].size else None))
            if not all(a is b for a, b in views):
                bad.append("%s: train/test/lam/hessian are not run.measurements' dicts" % name)
    check("%s: run.measurements/run.schema = the file (%d datasets, %d rows)" % (tag, n_ds, n_rows),
          not bad and n_ds > 0, "; ".join(bad[:5]))
    return sweep


@section
def check_schema_content(files):
    """The new datasets are loaded, units and descriptions come from the file, an extra
    measurement is read with no code naming it, and older files fall back to their subgroups."""
    sw = ntkpost.load(files["lambda"])
    done = [r for r in sw.runs if r.status == 2]
    r = done[0]
    check("schema: groups in declaration order", list(r.measurements) ==
          ["train", "test", "spectrum", "lambda", "hessian", "density", "toy"], str(list(r.measurements)))
    check("schema: dist_init loaded", all("dist_init" in x.train and x.train["dist_init"].size == x.train["step"].size
                                          for x in sw.runs if x.has_data))
    check("schema: dist_init = ||theta_t - theta_0||", r.train["dist_init"][0] == 0 and np.all(r.train["dist_init"][1:] > 0))
    check("schema: kernel_distance loaded", all("kernel_distance" in x.lam and x.lam["kernel_distance"][0] == 0
                                                and np.isfinite(x.lam["kernel_distance"]).all() for x in done))
    check("schema: lambda nconv/resid loaded", r.lam["nconv"].dtype == np.int64 and r.lam["resid"].shape == r.lam["topk"].shape)
    check("schema: hessian lambda/lr/topk/resid/nconv loaded",
          {"lambda", "lr", "topk", "resid", "nconv", "min_resid"} <= set(r.hessian)
          and r.hessian["topk"].shape == (r.hessian["step"].size, 3) and np.all(r.hessian["lr"] == r.eta))
    ds = r.schema["lambda"]["datasets"]
    check("schema: units and descriptions", r.schema["train"]["datasets"]["step"]["units"] == "steps"
          and ds["value"]["units"] == "1" and ds["kernel_distance"]["description"].startswith("||Theta_t - Theta_0||_F")
          and r.schema["lambda"]["description"].startswith("top of the empirical NTK")
          and ds["topk"]["width"] == 5 and ds["value"]["width"] == 1 and ds["nconv"]["dtype"] == np.int64)
    toy = r.measurements.get("toy", {})
    n = r.train["step"].size
    check("schema: extra group toy read", set(toy) == {"step", "theta_sum", "count", "moments"}
          and toy["moments"].shape == (n, 2) and toy["count"].dtype == np.int64
          and np.array_equal(toy["count"], np.arange(1, n + 1)) and np.array_equal(toy["step"], r.train["step"])
          and r.schema["toy"]["datasets"]["moments"]["width"] == 2
          and r.schema["toy"]["description"] == "a measurement registered by tests/test_registry.c")
    pkg = os.path.join(SRC, "postproc", "ntkpost")
    named = [fn for fn in sorted(os.listdir(pkg)) if fn.endswith(".py")
             and re.search(r"\btoy\b", open(os.path.join(pkg, fn), encoding="utf-8").read())]
    check("schema: no ntkpost code names the toy group", not named, str(named))
    check("schema: spectrum and density from measurements",
          r.spectra["spectrum/ntk"]["values"].shape == (3, 8) and "hessian" in r.spectra
          and set(r.density) == {"step", "trace", "trace_stderr", "nodes", "weights"}
          and r.density["nodes"].shape == (3, 12))
    div = [x for x in sw.runs if x.status == 3]
    check("schema: diverged run keeps only its written spectrum/density rows", div and all(
        x.density["step"].size == (x.spectra["spectrum/ntk"]["step"] <= x.train["step"][-1]).sum() < 3 for x in div))
    # older files (no "measurements" attribute): every subgroup with a 1-D step, empty units
    old = ntkpost.load(files["partial_nan"])
    o = [x for x in old.runs if x.has_data][0]
    check("schema fallback: groups of an older file", list(o.measurements) == ["hessian", "lambda", "test", "train"]
          and set(o.lam) == {"step", "value", "topk"} and o.schema["lambda"]["description"] == ""
          and o.schema["train"]["datasets"]["loss"]["units"] == "" and "spectra" not in o.measurements,
          str(list(o.measurements)))


@section
def check_rows_in_place(outdir):
    """Rows out of step order, holes (step -1), a listed group missing and a dataset of the wrong
    length: valid rows sorted by step, the rest ignored with a warning, never an error."""
    path = os.path.join(outdir, "odd.h5")
    with h5py.File(path, "w") as f:
        f.attrs["program"] = "ntkhpc"
        f.attrs["measurements"] = np.array(b"train,odd,missing", dtype="S17")
        g = f.create_group("runs/run_000000")
        for k, v in (("run", 0), ("width", 8), ("seed", 0), ("eta", 0.1)):
            g.attrs[k] = v
        g.attrs["param"] = "ntk"
        t = g.create_group("train")
        t.create_dataset("step", data=np.array([0, 1, -1], np.int64))
        t.create_dataset("loss", data=np.array([1.0, 0.5, np.nan]))
        o = g.create_group("odd")
        o.attrs["description"] = np.array(b"out of order", dtype="S12")
        o.create_dataset("step", data=np.array([5, -1, 0, 3, -1], np.int64))
        o.create_dataset("x", data=np.array([5.0, 9.0, 0.0, 3.0, 9.0])).attrs["units"] = np.array(b"m", dtype="S1")
        o.create_dataset("pair", data=np.arange(10, dtype=np.int32).reshape(5, 2))
        o.create_dataset("short", data=np.zeros(2))
    r = ntkpost.load(path).runs[0]
    m = r.measurements.get("odd", {})
    check("rows: sorted by step, holes dropped", list(r.measurements) == ["train", "odd"]
          and m["step"].tolist() == [0, 3, 5] and m["x"].tolist() == [0.0, 3.0, 5.0]
          and m["pair"].tolist() == [[4, 5], [6, 7], [0, 1]] and m["pair"].dtype == np.int64
          and "short" not in m and r.schema["odd"]["datasets"]["x"]["units"] == "m"
          and r.schema["odd"]["description"] == "out of order" and r.train["loss"].tolist() == [1.0, 0.5])


# -- synthetic-only checks ------------------------------------------------------------------------
@section
def check_phases_theory(files):
    """uv model: lazy below eta*lambda0 = 2, catapult in (2, 4), divergent above 4."""
    an = ntkpost.Analysis(ntkpost.load(files["lambda"]))
    wrong = []
    for row in an.rows:
        c = row["eta_factor"]
        th = "lazy" if c < 2 else ("catapult" if c < 4 else "divergent")
        if row["phase"] != th:
            wrong.append((row["run"], c, row["phase"]))
    check("uv phases match theory", not wrong, str(wrong[:5]))
    crit = an.critical_rows()
    check("critical rows per (param, width)", len(crit) == 9)
    check("x_crit = 2.5, x_max = 5, last lazy 1.5",
          all(r["x_crit"] == 2.5 and r["x_max"] == 5.0 and r["x_last_lazy"] == 1.5 for r in crit))
    check("eta_crit_theory = 2/lambda0", all(abs(r["eta_crit_theory"] * r["lambda0_mean"] - 2) < 1e-12 for r in crit))
    check("xkind eta_lambda0 with lambda", an.xkind == "eta_lambda0")
    # lambda0 read from the file equals the synthetic generator's
    r0 = an.sweep.runs[0]
    check("lambda0 from file", abs(r0.lambda0 - synth.lambda0_of(r0.width, r0.seed, r0.param)) < 1e-12)
    check("eta*lambda0 == eta_factor", all(abs(row["eta_lambda0"] - row["eta_factor"]) < 1e-9 for row in an.rows))
    # seed aggregation: group means equal the mean over the group's runs
    g = an.group_rows()[4]
    vals = [row["peak_ratio"] for row in an.rows if row["param"] == g["param"] and row["width"] == g["width"]
            and abs(row["eta_factor"] - g["eta_factor"]) < 1e-12]
    check("group mean = mean over seeds", len(vals) == g["n_seeds"] == 3 and abs(np.mean(vals) - g["peak_ratio_mean"]) < 1e-12
          and abs(np.min(vals) - g["peak_ratio_min"]) == 0)
    # the theory: a catapult brings lambda below 2/eta, whatever the spike
    check("uv catapults end with eta*lambda_T < 2, lazy runs with eta*lambda_0 <= 2",
          all(row["eta_lambda_T"] < 2 < row["eta_lambda0"] for row in an.rows if row["phase"] == "catapult")
          and all(row["eta_lambda0"] <= 2 for row in an.rows if row["phase"] == "lazy"))
    # threshold override reclassifies: a catapult_factor > 1 no run's spike exceeds makes the
    # catapults unresolved
    an2 = ntkpost.Analysis(an.sweep, catapult_factor=1e9)
    n_cat = an.phase_counts()["catapult"]
    check("threshold override: no catapult", an2.phase_counts()["catapult"] == 0 and an2.th.source["catapult_factor"] == "override")
    check("threshold override: the catapults without the required spike are unresolved",
          n_cat > 0 and an2.phase_counts()["unresolved"] == n_cat + an.phase_counts()["unresolved"]
          and all(b["phase"] == ("unresolved" if a["phase"] == "catapult" else a["phase"]) for a, b in zip(an.rows, an2.rows)))
    check("thresholds from config", an.th.source["catapult_window"] == "config" and an.th.catapult_window == 100
          and an.th.source["catapult_factor"] == "config" and an.th.catapult_factor == 1.0)


def _window_peak(run, window):
    """(peak ratio, step of the first largest loss) over the recorded rows at step <= window."""
    st, L = run.train["step"], run.train["loss"]
    w = st <= window
    return L[w].max() / L[0], int(st[w][np.argmax(L[w])])


@section
def check_phases_rule(files, outdir):
    """The phase rule of docs/conventions.md beyond the uv theory: no lambda (unresolved), a mild
    catapult and a required spike (catapult_factor > 1), lambda staying at the edge, peak_step."""
    # a file with no lambda at all: eta*lambda_0 is known (eta_factor), lambda_T is not
    an = ntkpost.Analysis(ntkpost.load(files["full"]))
    wrong = [(row["run"], row["eta_factor"], row["phase"]) for row in an.rows
             if row["phase"] != ("lazy" if row["eta_factor"] < 2 else "unresolved" if row["eta_factor"] < 4 else "divergent")]
    check("no lambda: lazy below 2, unresolved in (2, 4), divergent above 4", not wrong, str(wrong[:5]))
    check("no lambda: lambda_T unknown, no catapult", an.phase_counts()["catapult"] == 0
          and all(math.isnan(row["lambda_T"]) for row in an.rows))
    # lambda0/lambda_final in the summary only (no lambda/ group): the theory holds
    an = ntkpost.Analysis(ntkpost.load(files["second"]))
    wrong = [(row["run"], row["eta_factor"], row["phase"]) for row in an.rows
             if row["phase"] != ("lazy" if row["eta_factor"] < 2 else "catapult" if row["eta_factor"] < 4 else "divergent")]
    check("summary lambda only: uv phases match theory", not wrong and an.sweep.runs[0].lam is None, str(wrong[:5]))
    # mild catapults (width 64 just above eta*lambda0 = 2): lambda falls below 2/eta with little or
    # no spike; /config asks for a spike of 1.5, so those are unresolved
    sw = ntkpost.load(files["mild"])
    an = ntkpost.Analysis(sw)
    check("mild: catapult_factor 1.5 from /config", an.th.catapult_factor == 1.5 and an.th.source["catapult_factor"] == "config")
    wrong, n_nospike = [], 0
    for r, row in zip(sw.runs, an.rows):
        c = row["eta_factor"]
        pk, _ = _window_peak(r, 100)
        if c < 2:
            want = "lazy"
        elif pk > 1.5:
            want = "catapult"
        else:
            want, n_nospike = "unresolved", n_nospike + 1
        if row["phase"] != want or not (c < 2 or row["eta_lambda_T"] < 2):
            wrong.append((row["run"], c, pk, row["phase"]))
    check("mild: catapult_factor > 1 without the spike gives unresolved", not wrong and n_nospike >= 3,
          "%s, %d without spike" % (wrong[:5], n_nospike))
    an1 = ntkpost.Analysis(sw, catapult_factor=1.0)
    check("mild: no spike required (catapult_factor 1): every run above 2 is a catapult",
          [row["phase"] for row in an1.rows] == ["lazy" if row["eta_factor"] < 2 else "catapult" for row in an1.rows])
    # lambda staying at the edge: eta*lambda_0 > 2 and eta*lambda_T >= 2 is unresolved
    edge = synth.make_file(os.path.join(outdir, "edge.h5"), widths=(64,), seeds=(0,), params=("ntk",),
                           eta_factors=(1.5, 2.5, 3.0), with_lambda=True)
    moved = synth.hover_at_edge(edge, level=1.05)
    an = ntkpost.Analysis(ntkpost.load(edge))
    check("edge: eta*lambda_0 > 2 with eta*lambda_T >= 2 is unresolved", len(moved) == 2 and all(
        row["phase"] == "unresolved" and row["eta_lambda_T"] >= 2 and row["peak_ratio"] > 1.5
        for row in an.rows if row["run"] in moved) and an.rows[0]["phase"] == "lazy",
          str([(row["eta_factor"], row["eta_lambda_T"], row["phase"]) for row in an.rows]))
    # peak_step: read from /summary (step of the window's peak); absent in older files
    an = ntkpost.Analysis(ntkpost.load(files["lambda"]))
    bad = [(r.index, row.get("peak_step"), _window_peak(r, 100)[1]) for r, row in zip(an.sweep.runs, an.rows)
           if r.has_data and row.get("peak_step") != _window_peak(r, 100)[1]]
    check("peak_step read from /summary (= the step of the window's largest loss)",
          not bad and all(isinstance(row["peak_step"], int) for row in an.rows), str(bad[:5]))
    check("peak_step > 0 for the catapults of wide nets, 0 for lazy runs",
          all(row["peak_step"] > 0 for row in an.rows if row["phase"] == "catapult" and row["width"] >= 256)
          and all(row["peak_step"] == 0 for row in an.rows if row["phase"] == "lazy"))
    old = ntkpost.Analysis(ntkpost.load(files["second"]))
    check("peak_step absent in older files", all("peak_step" not in row for row in old.rows)
          and "peak_step" not in ntkpost.report.read_csv(ntkpost.write_report(old, os.path.join(outdir, "old"), quiet=True)["runs.csv"])[0])


@section
def check_partial(files, outdir):
    sw = ntkpost.load(files["partial"])
    st = sw.status_counts()
    check("partial: 17 finished, 1 running, 66 pending",
          st.get("done", 0) + st.get("diverged", 0) == 17 and st.get("running") == 1 and st.get("pending") == 66, str(st))
    an = ntkpost.Analysis(sw)
    running = [(r, row) for r, row in zip(sw.runs, an.rows) if r.status == 1][0]
    check("partial: running run trimmed to its rows", running[0].train["step"].size == 74
          and running[0].train["step"][-1] == 73 and np.isfinite(running[0].train["loss"]).all())
    check("partial: running run is incomplete", running[1]["phase"] == "incomplete")
    check("partial: pending runs have no data and phase pending",
          all(row["phase"] == "pending" for r, row in zip(sw.runs, an.rows) if r.status == 0))
    check("partial: lambda figures skipped", ntkpost.figures.lambda_curves(an) is None
          and ntkpost.figures.lambda_curves.last_skip)
    sw2 = ntkpost.load(files["partial_nan"])
    an2 = ntkpost.Analysis(sw2)
    check("partial (NaN summary rows, lambda): loads", an2.phase_counts()["pending"] > 0 and an2.xkind == "eta_lambda0")
    out = ntkpost.write_report(an2, os.path.join(outdir, "partial_nan"), quiet=True)
    check("partial (NaN summary rows): report", os.path.exists(out["report.html"]))


@section
def check_combine(files):
    a, b = ntkpost.load(files["full"]), ntkpost.load(files["second"])
    c = ntkpost.load([files["full"], files["second"]])
    check("combine: runs add up", len(c.runs) == len(a.runs) + len(b.runs))
    check("combine: widths union", c.widths == sorted(set(a.widths) | set(b.widths)), str(c.widths))
    an = ntkpost.Analysis(c)
    check("combine: critical rows for every width", {r["width"] for r in an.critical_rows()} == set(c.widths))
    # the same file twice: duplicates dropped, keep one copy of each
    d = ntkpost.load([files["full"], files["full"]])
    check("combine: duplicate runs dropped", len(d.runs) == len(a.runs))
    # a rerun that finished beats the killed copy
    e = ntkpost.load([files["partial"], files["full"]])
    check("combine: finished copy preferred over killed", len(e.runs) == len(a.runs)
          and all(r.status in (2, 3) for r in e.runs))


@section
def check_absolute(files, outdir):
    an = ntkpost.Analysis(ntkpost.load(files["absolute"]))
    check("absolute lr: x is eta", an.xkind == "eta" and "unknown" in an.xlabel)
    fig = ntkpost.figures.peak_ratio(an)
    check("absolute lr: axis says eta / lambda0 unknown",
          fig is not None and "unknown" in fig.axes[0].get_xlabel())
    if fig is not None:
        plt.close(fig)
    check("absolute lr: lambda_final skipped", ntkpost.figures.lambda_final(an) is None)


@section
def check_load_api(files):
    """ntkpost.load at package level: one path (str, bytes, pathlib) or a list; every run carries
    every recorded quantity, the distance from initialisation and the kernel distance."""
    p = files["lambda"]
    one = ntkpost.load(p)
    same = [ntkpost.load([p]), ntkpost.load(pathlib.Path(p)), ntkpost.load(os.fsencode(p)),
            ntkpost.load((q for q in [p]))]
    ids = [(r.index, r.width, r.seed, r.param, r.eta_key) for r in one.runs]
    check("load: one path, a list, a Path, bytes, an iterable give the same runs",
          ids and all([(r.index, r.width, r.seed, r.param, r.eta_key) for r in s.runs] == ids for s in same)
          and all(s.files[0].path == p for s in same))
    check("load: package-level names", ntkpost.load is ntkpost.io.load and callable(ntkpost.cli.main)
          and ntkpost.Sweep is ntkpost.io.Sweep and isinstance(one, ntkpost.Sweep))
    with h5py.File(p, "r") as f:
        groups = [n for n in _s(f.attrs["measurements"]).split(",") if n]
    data = [r for r in one.runs if r.has_data]
    check("load: every run has every recorded group", data and all(list(r.measurements) == groups for r in one.runs),
          str(groups))
    check("load: distance from initialisation (train/dist_init) in every run with rows",
          all(r.measurements["train"]["dist_init"].shape == r.train["step"].shape and r.train["dist_init"][0] == 0
              for r in data))
    check("load: kernel distance (lambda/kernel_distance) in every run with lambda rows",
          all(r.lam is not None and r.measurements["lambda"]["kernel_distance"].shape == r.lam["step"].shape
              for r in data))
    two = ntkpost.load([files["full"], files["second"]])
    check("load: a list combines files", len(two.files) == 2
          and len(two.runs) == len(ntkpost.load(files["full"]).runs) + len(ntkpost.load(files["second"]).runs))


@section
def check_cli(files, outdir):
    """postproc/ntkplot, the checkout launcher: with the interpreter under test, executed through
    its #!/usr/bin/env python3 line, and python3 -m ntkpost."""
    exe = os.path.join(SRC, "postproc", "ntkplot")
    d = os.path.join(outdir, "cli")
    p = subprocess.run([sys.executable, exe, files["full"], files["second"], "--out", d, "-q"],
                       capture_output=True, text=True)
    check("cli: exit 0", p.returncode == 0, p.stderr[-2000:])
    check("cli: report and csv", all(os.path.exists(os.path.join(d, f)) for f in
                                     ("report.html", "runs.csv", "groups.csv", "critical.csv", "summary.txt")))
    p = subprocess.run([sys.executable, exe, os.path.join(outdir, "nonexistent.h5"), "--out", d],
                       capture_output=True, text=True)
    check("cli: missing file is an error", p.returncode != 0)
    p = subprocess.run([sys.executable, exe, files["full"], "--out", d], capture_output=True, text=True)
    check("cli: prints summary", "Critical learning rates" in p.stdout and p.returncode == 0)
    with open(exe, encoding="utf-8") as fh:
        text = fh.read()
    check("cli: launcher shebang is #!/usr/bin/env python3", text.startswith("#!/usr/bin/env python3\n"))
    check("cli: launcher is executable", os.access(exe, os.X_OK))
    check("cli: launcher calls ntkpost.cli.main", "from ntkpost.cli import main" in text)
    p = subprocess.run([exe, files["full"], "--out", os.path.join(outdir, "cli_exec"), "-q", "--figures", "catapult_curves"],
                       capture_output=True, text=True)
    check("cli: launcher runs through its shebang", p.returncode == 0
          and os.path.exists(os.path.join(outdir, "cli_exec", "catapult_curves.png")), p.stderr[-2000:])
    env = dict(os.environ, PYTHONPATH=os.path.join(SRC, "postproc"))
    p = subprocess.run([sys.executable, "-m", "ntkpost", "--help"], capture_output=True, text=True, env=env,
                       cwd=outdir)
    check("cli: python3 -m ntkpost --help", p.returncode == 0 and p.stdout.startswith("usage: ntkplot"),
          p.stderr[-2000:])


# -- the synthetic test set: one pytest test per group of checks ----------------------------------
_STATE = {}


def _workdir():
    """The directory of this process's outputs (main() --keep, else a temporary one)."""
    if "tmp" not in _STATE:
        _STATE["tmp"] = tempfile.mkdtemp(prefix="ntkpost_test_")
        atexit.register(shutil.rmtree, _STATE["tmp"], True)
    return _STATE["tmp"]


def _files():
    """The standard synthetic files, written once per process."""
    if "files" not in _STATE:
        _STATE["files"] = synth.make_standard_set(os.path.join(_workdir(), "h5"))
    return _STATE["files"]


def _passes(fn, *args):
    """Run one group of checks; fail (AssertionError) with the names of its failed checks."""
    n = len(FAILED)
    fn(*args)
    assert not FAILED[n:], "failed checks: %s" % "; ".join(FAILED[n:])


def _dataset(tag, keys):
    files = _files()
    _passes(check_dataset, tag, [files[k] for k in keys], os.path.join(_workdir(), tag))


def test_dataset_full():
    _dataset("full", ["full"])


def test_dataset_lambda():
    _dataset("lambda", ["lambda"])


def test_dataset_partial():
    _dataset("partial", ["partial"])


def test_dataset_combined():
    _dataset("combined", ["full", "second"])


def test_dataset_absolute():
    _dataset("absolute", ["absolute"])


def test_dataset_mild():
    _dataset("mild", ["mild"])


def test_measurements():
    files = _files()
    n = len(FAILED)
    for k in sorted(files):
        check_measurements(k, files[k])
    assert not FAILED[n:], "failed checks: %s" % "; ".join(FAILED[n:])


def test_schema_content():
    _passes(check_schema_content, _files())


def test_rows_in_place():
    _passes(check_rows_in_place, _workdir())


def test_phases_theory():
    _passes(check_phases_theory, _files())


def test_phases_rule():
    _passes(check_phases_rule, _files(), _workdir())


def test_partial():
    _passes(check_partial, _files(), _workdir())


def test_combine():
    _passes(check_combine, _files())


def test_absolute():
    _passes(check_absolute, _files(), _workdir())


def test_load_api():
    _passes(check_load_api, _files())


def test_cli():
    _passes(check_cli, _files(), _workdir())


SYNTH_TESTS = (test_dataset_full, test_dataset_lambda, test_dataset_partial, test_dataset_combined,
               test_dataset_absolute, test_dataset_mild, test_measurements, test_schema_content,
               test_rows_in_place, test_phases_theory, test_phases_rule, test_partial, test_combine, test_absolute, test_load_api, test_cli)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", nargs="+", help="real ntkhpc output file(s), checked as one sweep")
    ap.add_argument("--no-synth", action="store_true", help="skip the synthetic files")
    ap.add_argument("--keep", help="write into this directory and keep it")
    args = ap.parse_args()
    if args.keep:
        _STATE["tmp"] = args.keep
    tmp = _workdir()
    os.makedirs(tmp, exist_ok=True)
    try:
        if not args.no_synth:
            for t in SYNTH_TESTS:
                try:
                    t()
                except AssertionError:
                    pass  # the failed checks are in FAILED, printed as they failed
        if args.real:
            check_dataset("real", [os.path.abspath(p) for p in args.real], os.path.join(tmp, "real"))
            for p in args.real:
                check_measurements("real %s" % os.path.basename(p), os.path.abspath(p))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("outputs in %s" % tmp)
    print("%d passed, %d failed" % (len(PASSED), len(FAILED)))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
