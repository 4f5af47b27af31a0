"""Reading ntkhpc HDF5 output (layout: docs/output.md).

Everything a run records along its trajectory is a measurement: a group /runs/run_%06d/<group>
whose datasets follow a schema declared by the trainer (src/io/schema.h). The file lists the
groups in the root attribute "measurements"; each group has a "description" attribute, each
dataset "units" and "description"; the first dataset is "step" (int64, -1 = row not written).
This module reads the schema from the file, so a measurement added on the C side (or registered by
a user) is loaded with no change here:

    run.measurements[group][dataset]   numpy array of the valid rows (step >= 0), sorted by step
    run.schema[group]                  {"description", "datasets": {name: {units, description,
                                        dtype, width}}}

Files written before the schema (no "measurements" attribute) are read the same way: every
subgroup of a run with a 1-D "step" dataset is a measurement, with empty units/descriptions.

Robust to partial output: a killed or still-running job leaves runs that are pending (no rows) or
running (rows up to some step, then the fill values step = -1 / NaN). Only rows with step >= 0 are
kept. Groups absent from a file are left as None ({} for spectra).

    sweep = load(["job1.h5", "job2.h5"])     # combine the runs of several jobs
    for run in sweep.runs: run.width, run.param, run.eta, run.train["loss"], run.lam, ...
"""
import logging
import math
import os

import h5py
import numpy as np

log = logging.getLogger("ntkpost")

# The values of the file's parameterization enum (docs/output.md); files store the names too, as
# HDF5 enum members, which _param_name prefers when h5py hands them over as strings.
PARAM_NAMES = {0: "ntk", 1: "sp", 2: "mup", 3: "abc", 4: "mf"}
PARAM_ORDER = {"ntk": 0, "sp": 1, "mup": 2, "abc": 3, "mf": 4}
STATUS_NAMES = {-1: "unknown", 0: "pending", 1: "running", 2: "done", 3: "diverged"}

# Summary fields that describe results (the identity fields come from the run group's attrs);
# those a file lacks (older files: no lambda0/lambda_final, no peak_step) are left out.
SUMMARY_RESULT_FIELDS = ("status", "steps_done", "n_train_records", "n_test_records", "loss0",
                         "loss_peak", "loss_final", "acc_final", "test_loss_final",
                         "test_acc_final", "wall_seconds", "lambda0", "lambda_final", "peak_step")
# /config and root attrs that legitimately differ between the files of one sweep.
_CONFIG_IGNORE = {"output", "overwrite", "n_runs", "n_instances", "world_size", "ranks_per_run",
                  "created", "flush_seconds", "progress_seconds", "quiet", "widths", "seeds",
                  "params", "etas", "eta", "eta_factors", "width", "seed", "param"}


def _decode(v):
    """h5py attribute value -> plain Python (str for strings, scalar for 0-d/1-element arrays)."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "SO":
            v = np.array([_decode(x) for x in v.ravel()], dtype=object).reshape(v.shape)
        if v.shape == () or v.size == 1:
            return _decode(v.reshape(-1)[0] if v.size else v[()])
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _attrs(obj):
    out = {}
    for k in obj.attrs:
        try:
            out[k] = _decode(obj.attrs[k])
        except Exception as e:  # unreadable attribute type: keep going
            log.debug("attribute %s of %s unreadable: %s", k, obj.name, e)
    return out


def _float(v, default=math.nan):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return f


def _param_name(v):
    if isinstance(v, str):
        return v.strip().lower()
    try:
        return PARAM_NAMES.get(int(v), str(v))
    except (TypeError, ValueError):
        return str(v)


def _measurement_names(f, run_group):
    """The measurement groups of a run: those named in the root attribute "measurements" (in that
    order), or for older files without it every subgroup with a 1-D "step" dataset."""
    if "measurements" in f.attrs:
        v = _decode(f.attrs["measurements"])
        items = v if isinstance(v, list) else str(v).split(",")
        names = []
        for n in (str(x).strip() for x in items):
            if n and n not in names:
                names.append(n)
        return names
    return [n for n in run_group if isinstance(run_group[n], h5py.Group) and "step" in run_group[n]
            and isinstance(run_group[n]["step"], h5py.Dataset) and run_group[n]["step"].ndim == 1]


def _text_attr(obj, name):
    """String attribute `name` of obj, "" when absent or unreadable."""
    try:
        return str(_decode(obj.attrs[name])) if name in obj.attrs else ""
    except Exception as e:
        log.debug("attribute %s of %s unreadable: %s", name, obj.name, e)
        return ""


def _read_measurement(g, texts=None):
    """(rows, schema) of one measurement group: rows = {dataset: array of the rows with step >= 0,
    sorted by step}, "step" first, int64 or float64 (other integer/float types are widened);
    schema = {"description", "datasets": {name: {"units", "description", "dtype", "width"}}}.
    Datasets that are not 1-D/2-D numbers with one row per step are skipped with a warning.
    None when g has no 1-D "step" dataset. texts: a dict caching the description/units strings
    by (group, dataset) across the runs of one file (every run group of a file is created from the
    same schema), or None to read them each time."""
    sd = g.get("step") if g is not None else None
    if not isinstance(sd, h5py.Dataset) or sd.ndim != 1:
        return None
    step = np.asarray(sd[()]).astype(np.int64)
    ok = step >= 0
    order = np.argsort(step[ok], kind="stable")
    texts = {} if texts is None else texts
    gname = g.name.rsplit("/", 1)[-1]
    rows, ds = {}, {}
    for name in ["step"] + [n for n in g if n != "step"]:
        d = sd if name == "step" else g[name]
        if not isinstance(d, h5py.Dataset):
            continue
        kind = d.dtype.kind
        if kind not in "iuf" or d.ndim not in (1, 2):
            log.warning("%s: not a 1-D/2-D numeric dataset: ignored", d.name)
            continue
        if d.shape[0] != step.size:
            log.warning("%s has %d rows, step has %d: ignored", d.name, d.shape[0], step.size)
            continue
        a = np.asarray(d[()])
        a = a.astype(np.float64 if kind == "f" else np.int64, copy=False)
        rows[name] = a[ok][order]
        key = (gname, name)
        if key not in texts:
            texts[key] = (_text_attr(d, "units"), _text_attr(d, "description"))
        ds[name] = {"units": texts[key][0], "description": texts[key][1], "dtype": a.dtype,
                    "width": 1 if d.ndim == 1 else int(d.shape[1])}
    if (gname,) not in texts:
        texts[(gname,)] = _text_attr(g, "description")
    return rows, {"description": texts[(gname,)], "datasets": ds}


class Run:
    """One training run (instance + learning rate) of one file.

    Identity: file, index (run number in its file), instance, width, seed, param ("ntk"/"sp"/"mup"),
    eta (absolute base lr), eta_factor (eta*lambda_0 when the deck gave a factor, else NaN).
    measurements: {group: {dataset: array}} of every measurement group of the run (the file's
      root "measurements" attribute), valid rows only (step >= 0), sorted by step.
    schema: {group: {"description": str, "datasets": {name: {"units", "description", "dtype",
      "width"}}}}, as declared in the file.
    Convenience views of measurements (the same dicts; None when the file has no such group):
      train: measurements["train"]   {step, loss, accuracy, param_norm, dist_init, lr, ...}
      test:  measurements["test"]    {step, loss, accuracy, ...}
      lam:   measurements["lambda"]  {step, value, kernel_distance, nconv, topk, resid, ...};
             None when it has no rows
      hessian: measurements["hessian"] {step, sharpness, min_eig, lambda, lr, topk, ...}; None when
             it has no rows
      spectra: {name: {step, values (R x k)}}: every 2-D float dataset of spectrum/ (named
             "spectrum/<dataset>") and any under a spectra/ group, rows with a finite value only
      density: measurements["density"] restricted to rows with a finite weight, or None
    summary: dict of the /summary row (raw values from the file), {} when there is none.
    status: int (-1 unknown, 0 pending, 1 running, 2 done, 3 diverged).
    config: the file's /config attrs.
    """

    def __init__(self, file_index, path, index, attrs, summary, config):
        self.file_index = file_index
        self.path = path
        self.index = int(index)
        self.attrs = attrs
        self.summary = summary or {}
        self.config = config
        self.instance = int(attrs.get("instance", self.summary.get("instance", -1)))
        self.width = int(attrs.get("width", self.summary.get("width", 0)))
        self.seed = int(attrs.get("seed", self.summary.get("seed", 0)))
        self.param = _param_name(attrs.get("param", self.summary.get("param", "?")))
        self.eta = _float(attrs.get("eta", self.summary.get("eta")))
        self.eta_factor = _float(attrs.get("eta_factor", self.summary.get("eta_factor")))
        self.n_params = int(_float(attrs.get("n_params", -1), -1))
        st = self.summary.get("status")
        self.status = int(st) if st is not None else -1
        self.measurements = {}
        self.schema = {}
        self.train = self.test = self.lam = self.hessian = None
        self.spectra = {}
        self.density = None  # {step, nodes (D x m), weights (D x m), trace, trace_stderr}: Hessian SLQ
        self.cfg_label = ""  # set by load() when files with different configs are combined

    # -- derived identity -------------------------------------------------------------------------
    @property
    def status_name(self):
        return STATUS_NAMES.get(self.status, str(self.status))

    @property
    def eta_key(self):
        """Grouping key of the learning rate: ("c", eta_factor) or ("eta", eta), rounded to 10
        significant digits so equal decks give equal keys."""
        if math.isfinite(self.eta_factor):
            return ("c", float("%.10g" % self.eta_factor))
        return ("eta", float("%.10g" % self.eta))

    @property
    def lambda0(self):
        """lambda_0 from (in order) the run attr, the summary field, lambda/value at step 0, or
        eta_factor / eta (exact for runs whose lr was given as a factor); NaN when unknown."""
        for v in (self.attrs.get("lambda0"), self.summary.get("lambda0")):
            f = _float(v)
            if math.isfinite(f) and f > 0:
                return f
        if self.lam is not None and "value" in self.lam and self.lam["step"].size:
            if self.lam["step"][0] == 0 and math.isfinite(self.lam["value"][0]):
                return float(self.lam["value"][0])
        # eta = eta_factor / lambda_0 by definition (docs/conventions.md), so a factor-given run
        # carries the lambda_0 the trainer measured
        if math.isfinite(self.eta_factor) and self.eta > 0 and self.eta_factor > 0:
            return self.eta_factor / self.eta
        return math.nan

    @property
    def has_data(self):
        return self.train is not None and self.train["step"].size > 0

    @property
    def label(self):
        # width 0 is the infinite width: the muP limit (-mup_limit) or the kernel limit (-kernel_regression)
        w = "inf" if self.width == 0 else str(self.width)
        return "%s w=%s seed=%d %s" % (self.param, w, self.seed, eta_key_label(self.eta_key))

    def __repr__(self):
        return "<Run %s#%d %s status=%s rows=%d>" % (os.path.basename(self.path), self.index,
                                                      self.label, self.status_name,
                                                      self.train["step"].size if self.train else 0)


def eta_key_label(key, unicode=True):
    kind, v = key
    if kind == "c":
        return ("ηλ₀=%g" if unicode else "eta*lambda0=%g") % v
    return ("η=%g" if unicode else "eta=%g") % v


class FileInfo:
    """Metadata of one ntkhpc file: path, root attrs, /config attrs, the /deck text."""

    def __init__(self, path, root, config, deck, n_summary):
        self.path, self.root, self.config, self.deck = path, root, config, deck
        self.n_summary = n_summary

    def __repr__(self):
        return "<FileInfo %s %s>" % (self.path, self.root.get("n_runs"))


class Sweep:
    """All runs of one or several files. `config` holds the /config attrs common to every file
    (differing keys are listed in `config_diff`, and runs get a `cfg_label` naming them)."""

    def __init__(self, files, runs, config, config_diff):
        self.files, self.runs, self.config, self.config_diff = files, runs, config, config_diff

    def select(self, **kw):
        """Runs whose attributes equal the given values, e.g. select(param="ntk", width=256)."""
        return [r for r in self.runs if all(getattr(r, k) == v for k, v in kw.items())]

    @property
    def widths(self):
        return sorted({r.width for r in self.runs})

    @property
    def params(self):
        return sorted({r.param for r in self.runs}, key=lambda p: (PARAM_ORDER.get(p, 9), p))

    def status_counts(self):
        out = {}
        for r in self.runs:
            out[r.status_name] = out.get(r.status_name, 0) + 1
        return out

    def __repr__(self):
        return "<Sweep %d file(s), %d runs, %s>" % (len(self.files), len(self.runs),
                                                    self.status_counts())


def _read_summary(f):
    if "summary" not in f or not isinstance(f["summary"], h5py.Dataset):
        return None
    s = f["summary"][()]
    if s.dtype.names is None:
        log.warning("%s: /summary is not a compound dataset: ignored", f.filename)
        return None
    return s


def _summary_row(s, i):
    """The /summary row of run i: the row whose `run` field is i and whose status is not pending
    (rows are written by run), else row i by position. Returns a dict or None."""
    if s is None:
        return None
    names = s.dtype.names
    row = None
    if "run" in names and "status" in names:
        hit = np.nonzero((s["run"] == i) & (s["status"] != 0))[0]
        if hit.size:
            row = s[hit[0]]
    if row is None and i < s.shape[0]:
        row = s[i]
    if row is None:
        return None
    return {n: _decode(row[n]) for n in names}


def _read_spectra(g):
    out = {}
    if g is None:
        return out

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim == 2 and obj.dtype.kind == "f":
            parent = obj.parent
            step = None
            for cand in (name.rsplit("/", 1)[-1] + "_step", "step"):
                if cand in parent and parent[cand].ndim == 1:
                    step = np.asarray(parent[cand][()], dtype=np.int64)
                    break
            vals = np.asarray(obj[()], dtype=np.float64)
            if step is None or step.shape[0] != vals.shape[0]:
                step = np.arange(vals.shape[0], dtype=np.int64)
            ok = step >= 0
            ok &= np.isfinite(vals).any(axis=1)
            key = name if not name.endswith("/values") else name[: -len("/values")]
            out[key] = {"step": step[ok], "values": vals[ok]}
    g.visititems(visit)
    return out


def _spectra_of(rows, prefix):
    """{prefix + name: {step, values}} of the 2-D float datasets of a measurement's rows, keeping
    the rows with a finite value."""
    out = {}
    for name, a in (rows or {}).items():
        if name != "step" and a.ndim == 2 and a.dtype.kind == "f":
            ok = np.isfinite(a).any(axis=1)
            out[prefix + name] = {"step": rows["step"][ok], "values": a[ok]}
    return out


def _density_of(rows):
    """density/ (Hutchinson trace and SLQ nodes/weights of the Hessian): its rows with a finite
    weight, or None."""
    if rows is None or "nodes" not in rows or "weights" not in rows:
        return None
    w = rows["weights"]
    ok = np.isfinite(w).any(axis=1) if w.ndim == 2 else np.isfinite(w)
    if not ok.any():
        return None
    return {k: a[ok] for k, a in rows.items()}


def _set_measurements(r, f, g, texts=None):
    """Fill r.measurements / r.schema from run group g, and the convenience views from them.
    texts: the file's cache of schema strings (_read_measurement)."""
    for name in _measurement_names(f, g):
        sub = g.get(name)
        got = _read_measurement(sub, texts) if isinstance(sub, h5py.Group) else None
        if got is None:
            log.warning("%s/%s: measurement listed in the file but no group with a 1-D step: ignored",
                        g.name, name)
            continue
        r.measurements[name], r.schema[name] = got
    m = r.measurements
    r.train, r.test = m.get("train"), m.get("test")
    r.lam = m["lambda"] if "lambda" in m and m["lambda"]["step"].size else None
    r.hessian = m["hessian"] if "hessian" in m and m["hessian"]["step"].size else None
    # spectra/ is not a measurement (no step of its own): read as before
    r.spectra = _read_spectra(g.get("spectra"))
    r.spectra.update(_spectra_of(m.get("spectrum"), "spectrum/"))
    r.density = _density_of(m.get("density"))


def read_file(path, file_index=0):
    """(FileInfo, [Run]) of one ntkhpc file."""
    with h5py.File(path, "r") as f:
        root = _attrs(f)
        if root.get("program") not in (None, "ntkhpc"):
            log.warning("%s: program attribute is %r, not 'ntkhpc'", path, root.get("program"))
        config = _attrs(f["config"]) if "config" in f else {}
        deck = ""
        if "deck" in f:
            try:
                deck = _decode(f["deck"][()])
                if not isinstance(deck, str):
                    deck = str(deck)
            except Exception as e:
                log.warning("%s: /deck unreadable: %s", path, e)
        summ = _read_summary(f)
        info = FileInfo(path, root, config, deck, 0 if summ is None else summ.shape[0])
        runs = []
        texts = {}  # schema strings, read once per file
        if "runs" not in f:
            log.warning("%s: no /runs group", path)
            return info, runs
        for name in sorted(f["runs"]):
            g = f["runs"][name]
            if not isinstance(g, h5py.Group):
                continue
            attrs = _attrs(g)
            try:
                idx = int(attrs.get("run", name.rsplit("_", 1)[-1]))
            except ValueError:
                idx = len(runs)
            r = Run(file_index, path, idx, attrs, _summary_row(summ, idx), config)
            _set_measurements(r, f, g, texts)
            if r.status == -1:  # no summary: infer what we can
                r.status = 1 if r.has_data else 0
            runs.append(r)
    return info, runs


def _status_rank(r):
    return (r.status in (2, 3), r.status == 1, r.train["step"].size if r.train else 0)


def load(paths, dedup=True):
    """Sweep of the runs of one or several ntkhpc files.

    paths: one path (str, bytes or os.PathLike) or an iterable of paths. Each run carries every
    measurement its file records (run.measurements, e.g. train/dist_init, lambda/kernel_distance)
    with its schema (run.schema). Runs are combined; if the same run (same config, width,
    param, seed and learning rate) appears in several files (a job rerun after a kill), the most
    complete copy is kept (finished > running > pending, then more rows) and the choice is logged.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    paths = [os.fsdecode(p) for p in paths]
    files, runs = [], []
    for i, p in enumerate(paths):
        info, rs = read_file(p, i)
        files.append(info)
        runs.extend(rs)
        log.info("%s: %d runs (%s)", p, len(rs),
                 ", ".join("%s %d" % kv for kv in sorted(Sweep(None, rs, {}, {}).status_counts().items())))
    # configs: common part, and labels of the differing keys
    config, diff = {}, {}
    if files:
        keys = set().union(*(fi.config.keys() for fi in files))
        for k in sorted(keys):
            vals = [fi.config.get(k) for fi in files]
            if all(repr(v) == repr(vals[0]) for v in vals):
                config[k] = vals[0]
            elif k not in _CONFIG_IGNORE:
                diff[k] = vals
    if diff:
        log.warning("files differ in config %s: runs are kept apart (cfg_label)", sorted(diff))
        for r in runs:
            r.cfg_label = ",".join("%s=%s" % (k, r.config.get(k)) for k in sorted(diff))
    if dedup and len(files) > 1:
        best = {}
        for r in runs:
            key = (r.cfg_label, r.width, r.param, r.seed, r.eta_key)
            if key in best:
                other = best[key]
                if other.file_index == r.file_index:  # same file: not a rerun, keep both
                    best[key + (r.index,)] = r
                    continue
                keep, drop = (r, other) if _status_rank(r) > _status_rank(other) else (other, r)
                log.info("duplicate run %s in %s and %s: keeping the copy in %s (%s)", r.label,
                         other.path, r.path, keep.path, keep.status_name)
                best[key] = keep
            else:
                best[key] = r
        kept = set(id(r) for r in best.values())
        runs = [r for r in runs if id(r) in kept]
    return Sweep(files, runs, config, diff)
