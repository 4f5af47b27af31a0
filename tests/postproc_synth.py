#!/usr/bin/python3
"""Synthetic ntkhpc output files in the agreed HDF5 layout (docs/output.md), for postproc tests.

Like the trainer's files, every trajectory group is a measurement declared by a schema (SCHEMAS
below, copied from src/measure/*.c): the root attribute "measurements" lists the groups, each group
has a "description" attribute and each dataset "units" and "description" (fixed-length strings).
Besides the built-in groups the files carry "toy", a measurement as a user would register it
(tests/test_registry.c), which postproc must read without naming it. make_file(legacy=True)
writes a file as older ntkhpc versions did: no such attributes, and only the datasets postproc
used to know.

The trajectories are exact gradient descent on the uv model of docs/conventions.md
(f = v.u/sqrt(n), one sample (1, 0), L = f^2/2, lambda = (|u|^2+|v|^2)/n), so the phases are
known: lazy for eta*lambda0 < 2, catapult for 2 < eta*lambda0 < 4 (lambda falls below 2/eta),
divergent above 4. The phase rule (docs/conventions.md) needs lambda_0 and lambda_T: a file has them
in lambda/ (with_lambda) or only in the summary (summary_lambda); without either, its finished
runs above eta*lambda0 = 2 are "unresolved". Parameterizations only change the initial scale of
u, v (so lambda_0 depends on width for sp). Narrow nets just above eta*lambda0 = 2 make a mild
catapult: lambda falls below 2/eta with hardly a loss spike (make_standard_set's "mild" file).

    /usr/bin/python3 tests/postproc_synth.py out_dir     # writes the standard set of files
"""
import math
import os
import sys

import h5py
import numpy as np

PARAM_ID = {"ntk": 0, "sp": 1, "mup": 2}
SUMMARY_BASE = [("run", "<i4"), ("instance", "<i4"), ("width", "<i4"), ("param", "<i4"),
                ("seed", "<i8"), ("eta", "<f8"), ("eta_factor", "<f8"), ("status", "<i4"),
                ("steps_done", "<i8"), ("n_train_records", "<i4"), ("n_test_records", "<i4"),
                ("loss0", "<f8"), ("loss_peak", "<f8"), ("loss_final", "<f8"), ("acc_final", "<f8"),
                ("test_loss_final", "<f8"), ("test_acc_final", "<f8"), ("wall_seconds", "<f8")]
SUMMARY_LAMBDA = [("lambda0", "<f8"), ("lambda_final", "<f8")]
SUMMARY_PEAK = [("peak_step", "<i8")]  # newer files: the step of the loss peak in the catapult window

# group -> (description, [(dataset, dtype, units, description)]), as declared in src/measure/*.c and
# tests/test_registry.c; "step" first. A dataset's width comes from the data.
SCHEMAS = {
    "train": ("train metrics on the training subset, every -record_every steps and at the last step", [
        ("step", "<i8", "steps", "training step t of the record"),
        ("loss", "<f8", "1", "train loss (1/2N) sum ||f(x) - y||^2 on the training subset at theta_t"),
        ("accuracy", "<f8", "1", "fraction of training samples whose argmax output is the label (NaN for regression)"),
        ("param_norm", "<f8", "1", "||theta_t||_2"),
        ("dist_init", "<f8", "1", "||theta_t - theta_0||_2"),
        ("lr", "<f8", "1", "base learning rate in force at step t (schedule and warm-up applied)")]),
    "test": ("test metrics on the test set, every -test_every steps and at the first and last step", [
        ("step", "<i8", "steps", "training step t of the record"),
        ("loss", "<f8", "1", "test loss (1/2M) sum ||f(x) - y||^2 on the test set at theta_t"),
        ("accuracy", "<f8", "1", "fraction of test samples whose argmax output is the label (NaN for regression)")]),
    "spectrum": ("full spectrum of the NTK Gram matrix at the steps of -spectrum_steps", [
        ("step", "<i8", "steps", "training step t of the row (-1: not measured)"),
        ("ntk", "<f8", "1", "all eigenvalues of Theta_t, largest first")]),
    "lambda": ("top of the empirical NTK Theta = J J^T / N on the NTK batch", [
        ("step", "<i8", "steps", "training step t of the record"),
        ("value", "<f8", "1", "lambda_t, the top eigenvalue of the NTK at theta_t"),
        ("kernel_distance", "<f8", "1", "||Theta_t - Theta_0||_F / ||Theta_0||_F (NaN when the exact Gram matrix is not affordable)"),
        ("nconv", "<i8", "1", "eigenpairs the solver converged"),
        ("topk", "<f8", "1", "top -ntk_nev eigenvalues, largest first (NaN where not converged)"),
        ("resid", "<f8", "1", "relative residuals ||Theta x - l x|| / |l| of topk")]),
    "hessian": ("top and bottom of the loss Hessian on the Hessian batch", [
        ("step", "<i8", "steps", "training step t of the record"),
        ("sharpness", "<f8", "1", "top eigenvalue of the loss Hessian at theta_t"),
        ("min_eig", "<f8", "1", "most negative eigenvalue (NaN unless -hess_min_eig)"),
        ("min_resid", "<f8", "1", "relative residual of min_eig"),
        ("lambda", "<f8", "1", "lambda_t of the NTK at the same theta"),
        ("lr", "<f8", "1", "learning rate in force at step t (2/lr: the edge of stability)"),
        ("nconv", "<i8", "1", "eigenpairs the solver converged"),
        ("topk", "<f8", "1", "top -hess_nev eigenvalues, largest first (NaN where not converged)"),
        ("resid", "<f8", "1", "relative residuals of topk")]),
    "density": ("Hessian trace (Hutchinson) and spectral density (SLQ) at the steps of -density_steps", [
        ("step", "<i8", "steps", "training step t of the row (-1: not measured)"),
        ("trace", "<f8", "1", "Hutchinson estimate of tr H with -trace_probes Rademacher probes"),
        ("trace_stderr", "<f8", "1", "standard error of trace"),
        ("nodes", "<f8", "1", "SLQ quadrature nodes (Ritz values), -slq_lanczos per start"),
        ("weights", "<f8", "1", "SLQ quadrature weights; they sum to 1")]),
    "toy": ("a measurement registered by tests/test_registry.c", [
        ("step", "<i8", "steps", "training step t of the record"),
        ("theta_sum", "<f8", "1", "sum of the parameters"),
        ("count", "<i8", "1", "measurements so far in this run, restored from checkpoints"),
        ("moments", "<f8", "1", "sum of squared parameters and the largest |parameter|")]),
}
# what older files had (no schema attributes): the datasets postproc used to read
LEGACY_FIELDS = {"train": ("step", "loss", "accuracy", "param_norm", "dist_init", "lr"),
                 "test": ("step", "loss", "accuracy"), "lambda": ("step", "value", "topk"),
                 "hessian": ("step", "sharpness", "min_eig")}


def _fixed(text):
    """A fixed-length NUL-terminated string attribute, as ntkhpc writes them."""
    b = text.encode("utf-8")
    return np.array(b, dtype="S%d" % max(1, len(b)))


def write_measurement(rg, group, rows, legacy=False):
    """Group `group` of run group rg with the datasets of rows (dict name -> full-length array,
    fill values included), in SCHEMAS order, with the schema attributes unless legacy."""
    desc, specs = SCHEMAS[group]
    g = rg.create_group(group)
    if not legacy:
        g.attrs["description"] = _fixed(desc)
    for name, dt, units, ddesc in specs:
        if name not in rows or (legacy and name not in LEGACY_FIELDS.get(group, ())):
            continue
        d = g.create_dataset(name, data=np.asarray(rows[name]).astype(dt))
        if not legacy:
            d.attrs["units"] = _fixed(units)
            d.attrs["description"] = _fixed(ddesc)
    return g


def _init(width, seed, param):
    rng = np.random.default_rng([seed, width, PARAM_ID[param]])
    scale = {"ntk": 1.0, "sp": (width / 64.0) ** 0.25, "mup": 1.2}[param]
    while True:
        u = rng.standard_normal(width) * scale
        v = rng.standard_normal(width) * scale
        f0 = v @ u / math.sqrt(width)
        if abs(f0) > 0.5 * scale * scale:  # keep L0 away from 0 so ratios are meaningful
            return u, v


def simulate(width, seed, param, eta, steps, diverge_factor, stop_at=None):
    """Per-step arrays of the uv model under GD. Stops after the step whose loss exceeds
    diverge_factor * L0 (or is non-finite), as the trainer does. Returns dict of arrays over
    steps 0..T and diverged flag."""
    u, v = _init(width, seed, param)
    u0, v0 = u.copy(), v.copy()
    n = width
    out = {k: [] for k in ("loss", "lam", "f", "pnorm", "dist", "tsum", "tmax")}
    diverged = False
    L0 = None
    with np.errstate(all="ignore"):
        for t in range(steps + 1):
            f = v @ u / math.sqrt(n)
            L = 0.5 * f * f
            lam = (u @ u + v @ v) / n
            if L0 is None:
                L0 = L
            out["loss"].append(L)
            out["lam"].append(lam)
            out["f"].append(f)
            out["pnorm"].append(math.sqrt(u @ u + v @ v))
            out["dist"].append(math.sqrt((u - u0) @ (u - u0) + (v - v0) @ (v - v0)))
            out["tsum"].append(u.sum() + v.sum())
            out["tmax"].append(max(np.abs(u).max(), np.abs(v).max()))
            if not math.isfinite(L) or L > diverge_factor * L0:
                diverged = True
                break
            if t == steps or (stop_at is not None and t >= stop_at):
                break
            gu, gv = f * v / math.sqrt(n), f * u / math.sqrt(n)
            u, v = u - eta * gu, v - eta * gv
    return {k: np.array(a) for k, a in out.items()}, diverged


def lambda0_of(width, seed, param):
    u, v = _init(width, seed, param)
    return (u @ u + v @ v) / width


def make_file(path, widths=(64, 256, 1024), seeds=(0, 1), params=("ntk", "sp"),
              eta_factors=(0.5, 1.0, 1.5, 2.5, 3.0, 3.5, 5.0), absolute_etas=None, steps=200,
              record_every=1, test_every=20, lambda_every=5, hessian_every=10, topk=5,
              with_lambda=False, with_hessian=False, with_spectra=False, with_spectrum=False,
              with_density=False, with_toy=True, legacy=False, spectrum_steps=None,
              density_steps=None, hess_nev=3, slq=(2, 6), kill_after_runs=None,
              running_stop=73, zero_pending_summary=True, diverge_factor=1e6,
              catapult_factor=1.0, catapult_window=100, extra_config=None, summary_lambda=None):
    """Write one synthetic file. Measurement groups: train, test, and with_spectrum (spectrum/ at
    spectrum_steps), with_lambda (lambda/), with_hessian (hessian/), with_density (density/ at
    density_steps), with_toy (toy/, every record_every steps); with_spectra adds a spectra/hessian
    group (not a measurement). legacy: an older file (no "measurements"/"description"/"units"
    attributes, no spectrum/density/toy, only LEGACY_FIELDS). absolute_etas: list of absolute
    learning rates (eta_factor NaN) instead of eta_factors. kill_after_runs=k: runs 0..k-1 finish, run k is left running at step
    running_stop, the others are pending (their summary rows all zero when zero_pending_summary,
    as an unwritten compound row would be, else run ids with status 0 and NaN numbers).
    summary_lambda (default: with_lambda): the summary carries lambda0 and lambda_final (lambda
    at steps 0 and T), with or without a lambda/ group. The summary has peak_step (the step of
    the largest loss at step <= catapult_window, every step counted, -1 for pending runs) unless
    legacy. catapult_factor 1 (the trainer's default): no loss spike required for a catapult."""
    if summary_lambda is None:
        summary_lambda = with_lambda
    specs = []
    inst = 0
    for w in widths:
        for s in seeds:
            for p in params:
                lrs = absolute_etas if absolute_etas is not None else eta_factors
                for lr in lrs:
                    specs.append(dict(width=w, seed=s, param=p, instance=inst,
                                      lam0=lambda0_of(w, s, p),
                                      eta=lr if absolute_etas is not None else lr / lambda0_of(w, s, p),
                                      eta_factor=math.nan if absolute_etas is not None else lr))
                inst += 1
    n_train = steps // record_every + 1 + (1 if steps % record_every else 0)
    n_test = steps // test_every + 1 + (1 if steps % test_every else 0)
    n_lam = steps // lambda_every + 1 + (1 if steps % lambda_every else 0)
    n_hes = steps // hessian_every + 1 + (1 if steps % hessian_every else 0)
    rec_steps = lambda every: sorted(set(list(range(0, steps + 1, every)) + [steps]))
    if legacy:
        with_spectrum = with_density = with_toy = False
    spectrum_steps = list(spectrum_steps or (0, steps // 2, steps))
    density_steps = list(density_steps or (0, steps // 4, steps))
    groups = ["train", "test"] + [g for g, on in (("spectrum", with_spectrum), ("lambda", with_lambda),
                                                  ("hessian", with_hessian), ("density", with_density),
                                                  ("toy", with_toy)) if on]
    n_slq = slq[0] * slq[1]
    dtype = np.dtype(SUMMARY_BASE + (SUMMARY_LAMBDA if summary_lambda else []) + ([] if legacy else SUMMARY_PEAK))
    summary = np.zeros(len(specs), dtype=dtype)
    with h5py.File(path, "w") as f:
        f.attrs["program"] = "ntkhpc"
        f.attrs["version"] = "0.1.0-synthetic"
        f.attrs["created"] = "2024-01-01T00:00:00Z"
        f.attrs["n_runs"] = np.int32(len(specs))
        f.attrs["n_instances"] = np.int32(inst)
        f.attrs["world_size"] = np.int32(4)
        f.attrs["ranks_per_run"] = np.int32(1)
        if not legacy:
            f.attrs["measurements"] = _fixed(",".join(groups))
        cfg = dict(arch="uv", depth=1, activation="linear", bias=0, sigma_w=1.0, sigma_b=0.0,
                   base_width=64, dataset="uv", n_train=1, n_test=1, optimizer="gd", batch_size=1,
                   steps=steps, momentum=0.0, weight_decay=0.0, lr_schedule="constant",
                   record_every=record_every, test_every=test_every,
                   diverge_factor=diverge_factor, catapult_factor=catapult_factor,
                   catapult_window=catapult_window)
        cfg.update(extra_config or {})
        deck = "\n".join("-%s %s" % (k, v) for k, v in cfg.items()) + "\n"
        f.create_dataset("deck", data=deck, dtype=h5py.string_dtype())
        g = f.create_group("config")
        for k, v in cfg.items():
            g.attrs[k] = v
        runs = f.create_group("runs")
        for i, sp in enumerate(specs):
            status = 2
            stop_at = None
            if kill_after_runs is not None:
                if i == kill_after_runs:
                    status, stop_at = 1, running_stop
                elif i > kill_after_runs:
                    status = 0
            rg = runs.create_group("run_%06d" % i)
            rg.attrs["run"] = np.int32(i)
            rg.attrs["instance"] = np.int32(sp["instance"])
            rg.attrs["width"] = np.int32(sp["width"])
            rg.attrs["seed"] = np.int64(sp["seed"])
            rg.attrs["param"] = sp["param"]
            rg.attrs["eta"] = float(sp["eta"])
            rg.attrs["eta_factor"] = float(sp["eta_factor"])
            rg.attrs["n_params"] = np.int64(2 * sp["width"])
            if with_lambda and status != 0:
                rg.attrs["lambda0"] = float(sp["lam0"])
            tr = {k: np.full(n_train, np.nan) for k in ("loss", "accuracy", "param_norm", "dist_init", "lr")}
            tr_step = np.full(n_train, -1, np.int64)
            te = {k: np.full(n_test, np.nan) for k in ("loss", "accuracy")}
            te_step = np.full(n_test, -1, np.int64)
            la = {"value": np.full(n_lam, np.nan), "kernel_distance": np.full(n_lam, np.nan),
                  "nconv": np.full(n_lam, -1, np.int64), "topk": np.full((n_lam, topk), np.nan),
                  "resid": np.full((n_lam, topk), np.nan)}
            la_step = np.full(n_lam, -1, np.int64)
            he = {k: np.full(n_hes, np.nan) for k in ("sharpness", "min_eig", "min_resid", "lambda", "lr")}
            he.update(nconv=np.full(n_hes, -1, np.int64), topk=np.full((n_hes, hess_nev), np.nan),
                      resid=np.full((n_hes, hess_nev), np.nan))
            he_step = np.full(n_hes, -1, np.int64)
            spec = {"step": np.full(len(spectrum_steps), -1, np.int64),
                    "ntk": np.full((len(spectrum_steps), 8), np.nan)}
            dens = {"step": np.full(len(density_steps), -1, np.int64)}
            dens.update({k: np.full(len(density_steps), np.nan) for k in ("trace", "trace_stderr")})
            dens.update({k: np.full((len(density_steps), n_slq), np.nan) for k in ("nodes", "weights")})
            toy = {"step": np.full(n_train, -1, np.int64), "theta_sum": np.full(n_train, np.nan),
                   "count": np.full(n_train, -1, np.int64), "moments": np.full((n_train, 2), np.nan)}
            row = summary[i]
            if status != 0:
                sim, diverged = simulate(sp["width"], sp["seed"], sp["param"], sp["eta"], steps,
                                         diverge_factor, stop_at)
                if diverged:
                    status = 3
                T = len(sim["loss"]) - 1  # last simulated step
                L, lam = sim["loss"], sim["lam"]
                lam0 = lam[0]
                with np.errstate(all="ignore"):
                    acc = np.clip(1.0 - 0.5 * L / (L + L[0]), 0, 1)
                    tacc = np.clip(0.55 + 0.25 * (1 - np.exp(-np.arange(T + 1) / 30.0))
                                   + 0.1 * np.log(lam0 / lam), 0, 1)
                    tloss = L * 1.1 + 0.05
                    sharp = lam + np.abs(sim["f"]) / math.sqrt(sp["width"])
                    mineig = -np.abs(sim["f"]) / math.sqrt(sp["width"])
                steps_rec = [s for s in rec_steps(record_every) if s <= T]
                if diverged and steps_rec[-1] != T:
                    steps_rec.append(T)  # the trainer records the step that diverged
                for r, s in enumerate(steps_rec):
                    tr_step[r] = s
                    tr["loss"][r] = L[s]
                    tr["accuracy"][r] = acc[s]
                    tr["param_norm"][r] = sim["pnorm"][s]
                    tr["dist_init"][r] = sim["dist"][s]
                    tr["lr"][r] = sp["eta"]
                    toy["step"][r] = s
                    toy["theta_sum"][r] = sim["tsum"][s]
                    toy["count"][r] = r + 1
                    toy["moments"][r] = (sim["pnorm"][s] ** 2, sim["tmax"][s])
                nt = 0
                for s in rec_steps(test_every):
                    if s <= T:
                        te_step[nt] = s
                        te["loss"][nt] = tloss[s]
                        te["accuracy"][nt] = tacc[s]
                        nt += 1
                nl = 0
                for s in rec_steps(lambda_every):
                    if s <= T:
                        la_step[nl] = s
                        la["value"][nl] = lam[s]
                        la["topk"][nl] = lam[s] * np.array([1.0, 0.6, 0.35, 0.2, 0.1][:topk] + [0.05] * max(0, topk - 5))
                        # one sample: Theta_t is the 1x1 matrix lambda_t
                        la["kernel_distance"][nl] = abs(lam[s] - lam0) / lam0
                        la["nconv"][nl] = topk
                        la["resid"][nl] = 1e-12 * (1 + np.arange(topk))
                        nl += 1
                nh = 0
                for s in rec_steps(hessian_every):
                    if s <= T:
                        he_step[nh] = s
                        he["sharpness"][nh] = sharp[s]
                        he["min_eig"][nh] = mineig[s]
                        he["min_resid"][nh] = 1e-9
                        he["lambda"][nh] = lam[s]
                        he["lr"][nh] = sp["eta"]
                        he["nconv"][nh] = hess_nev
                        he["topk"][nh] = sharp[s] * 0.5 ** np.arange(hess_nev)
                        he["resid"][nh] = 1e-10
                        nh += 1
                for r, s in enumerate(spectrum_steps):  # row r: the r-th listed step
                    if s <= T:
                        spec["step"][r] = s
                        spec["ntk"][r] = lam[s] * 0.5 ** np.arange(8)
                for r, s in enumerate(density_steps):
                    if s <= T:
                        dens["step"][r] = s
                        nodes = np.tile(np.linspace(mineig[s], sharp[s], slq[1]), slq[0])
                        w = np.tile(np.linspace(1.0, 2.0, slq[1]), slq[0])
                        dens["nodes"][r], dens["weights"][r] = nodes, w / w.sum()
                        dens["trace"][r] = sharp[s] + mineig[s]
                        dens["trace_stderr"][r] = 0.01 * abs(sharp[s])
                row["status"] = status
                row["steps_done"] = T
                row["n_train_records"] = len(steps_rec)
                row["n_test_records"] = nt
                row["loss0"] = L[0]
                with np.errstate(invalid="ignore"):
                    row["loss_peak"] = np.nanmax(np.where(np.isfinite(L), L, np.inf))
                row["loss_final"] = L[T]
                row["acc_final"] = acc[T]
                row["test_loss_final"] = te["loss"][nt - 1]
                row["test_acc_final"] = te["accuracy"][nt - 1]
                row["wall_seconds"] = 0.01 * T * sp["width"] / 64.0
                if summary_lambda:
                    row["lambda0"] = lam0
                    row["lambda_final"] = math.nan if diverged else lam[T]  # as the trainer writes it
                if not legacy:
                    with np.errstate(invalid="ignore"):
                        Lw = np.where(np.isfinite(L), L, np.inf)[:catapult_window + 1]
                    row["peak_step"] = int(np.argmax(Lw))  # the first step of the window's peak
            if status != 0 or not zero_pending_summary:
                for k, v in (("run", i), ("instance", sp["instance"]), ("width", sp["width"]),
                             ("param", PARAM_ID[sp["param"]]), ("seed", sp["seed"]),
                             ("eta", sp["eta"]), ("eta_factor", sp["eta_factor"])):
                    row[k] = v
                if status == 0:
                    for k in ("loss0", "loss_peak", "loss_final", "acc_final", "test_loss_final",
                              "test_acc_final", "wall_seconds") + (("lambda0", "lambda_final") if summary_lambda else ()):
                        row[k] = np.nan
                    if not legacy:
                        row["peak_step"] = -1
            summary[i] = row
            data = {"train": dict(tr, step=tr_step), "test": dict(te, step=te_step),
                    "spectrum": spec, "lambda": dict(la, step=la_step), "hessian": dict(he, step=he_step),
                    "density": dens, "toy": toy}
            for grp in groups:
                write_measurement(rg, grp, data[grp], legacy)
            if with_spectra:
                t = rg.create_group("spectra").create_group("hessian")
                t.create_dataset("step", data=he_step)
                vals = he["sharpness"][:, None] * (0.5 ** np.arange(8))[None, :]
                t.create_dataset("values", data=vals)
        f.create_dataset("summary", data=summary)
    return path


def hover_at_edge(path, level=1.05):
    """Rewrite a with_lambda file so that every finished run with eta*lambda0 > 2 ends at the edge
    of stability instead of below it: lambda_t (lambda/value, the top of lambda/topk, the summary's
    lambda_final) becomes max(lambda_t, level * 2/eta) from the first step lambda_t would have
    fallen under it. Such runs are "unresolved" (eta*lambda_T >= 2). Returns their run indices."""
    done = []
    with h5py.File(path, "r+") as f:
        s = f["summary"][()]
        for name in sorted(f["runs"]):
            g = f["runs"][name]
            i, eta = int(g.attrs["run"]), float(g.attrs["eta"])
            if int(s["status"][i]) != 2 or not float(g.attrs["lambda0"]) * eta > 2:
                continue
            floor = level * 2.0 / eta
            val = g["lambda/value"][()]
            new = np.where(np.isfinite(val), np.maximum(val, floor), val)
            g["lambda/value"][...] = new
            top = g["lambda/topk"][()]
            top[:, 0] = np.where(np.isfinite(top[:, 0]), np.maximum(top[:, 0], floor), top[:, 0])
            g["lambda/topk"][...] = top
            s["lambda_final"][i] = max(float(s["lambda_final"][i]), floor)
            done.append(i)
        f["summary"][...] = s
    return done


def make_standard_set(d):
    """The files the tests use: full (deliberately no lambda at all: its runs above eta*lambda0 = 2
    are unresolved), lambda (every measurement), partial (killed; lambda0/lambda_final in the
    summary only), partial_nan (killed, lambda/, an older file without schema attributes), second
    (another width, to combine with full; an older file too, lambda in the summary only), absolute
    (absolute learning rates, no lambda: lambda0 unknown), mild (narrow nets just above
    eta*lambda0 = 2: catapults with little or no loss spike, and catapult_factor 1.5 in /config, so
    those are unresolved). All but the older files have the user-registered measurement toy/."""
    os.makedirs(d, exist_ok=True)
    p = {}
    p["full"] = make_file(os.path.join(d, "full.h5"))
    p["lambda"] = make_file(os.path.join(d, "lambda.h5"), with_lambda=True, with_hessian=True,
                            with_spectra=True, with_spectrum=True, with_density=True, params=("ntk", "sp", "mup"), widths=(64, 256, 1024),
                            seeds=(0, 1, 2))
    p["partial"] = make_file(os.path.join(d, "partial.h5"), kill_after_runs=17, summary_lambda=True)
    p["partial_nan"] = make_file(os.path.join(d, "partial_nan.h5"), kill_after_runs=5,
                                 zero_pending_summary=False, with_lambda=True,
                                 with_hessian=True, legacy=True)
    p["second"] = make_file(os.path.join(d, "second.h5"), widths=(4096,), seeds=(0, 1),
                            legacy=True, summary_lambda=True)
    p["absolute"] = make_file(os.path.join(d, "absolute.h5"), absolute_etas=(0.25, 0.5, 0.75, 1.25, 1.5, 3.0),
                              widths=(128, 512), seeds=(0, 1, 2), params=("ntk",), record_every=2)
    p["mild"] = make_file(os.path.join(d, "mild.h5"), widths=(64,), seeds=(0, 1), params=("ntk",),
                          eta_factors=(1.5, 2.05, 2.2, 3.0), with_lambda=True, catapult_factor=1.5)
    return p


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "synth"
    for k, v in make_standard_set(out).items():
        print(k, v)
