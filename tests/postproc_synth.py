#!/usr/bin/python3
"""Synthetic ntkhpc output files in the agreed HDF5 layout (docs/output.md), for postproc tests.

The trajectories are exact gradient descent on the uv model of CONVENTIONS.md
(f = v.u/sqrt(n), one sample (1, 0), L = f^2/2, lambda = (|u|^2+|v|^2)/n), so the phases are
known: lazy for eta*lambda0 < 2, catapult for 2 < eta*lambda0 < 4, divergent above 4.
Parameterizations only change the initial scale of u, v (so lambda_0 depends on width for sp).

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
    out = {k: [] for k in ("loss", "lam", "f", "pnorm", "dist")}
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
              with_lambda=False, with_hessian=False, with_spectra=False, kill_after_runs=None,
              running_stop=73, zero_pending_summary=True, diverge_factor=1e6,
              catapult_factor=1.5, catapult_window=100, extra_config=None):
    """Write one synthetic file. absolute_etas: list of absolute learning rates (eta_factor NaN)
    instead of eta_factors. kill_after_runs=k: runs 0..k-1 finish, run k is left running at step
    running_stop, the others are pending (their summary rows all zero when zero_pending_summary,
    as an unwritten compound row would be, else run ids with status 0 and NaN numbers)."""
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
    dtype = np.dtype(SUMMARY_BASE + (SUMMARY_LAMBDA if with_lambda else []))
    summary = np.zeros(len(specs), dtype=dtype)
    with h5py.File(path, "w") as f:
        f.attrs["program"] = "ntkhpc"
        f.attrs["version"] = "0.1.0-synthetic"
        f.attrs["created"] = "2024-01-01T00:00:00Z"
        f.attrs["n_runs"] = np.int32(len(specs))
        f.attrs["n_instances"] = np.int32(inst)
        f.attrs["world_size"] = np.int32(4)
        f.attrs["ranks_per_run"] = np.int32(1)
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
            la = {"value": np.full(n_lam, np.nan), "topk": np.full((n_lam, topk), np.nan)}
            la_step = np.full(n_lam, -1, np.int64)
            he = {"sharpness": np.full(n_hes, np.nan), "min_eig": np.full(n_hes, np.nan)}
            he_step = np.full(n_hes, -1, np.int64)
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
                        nl += 1
                nh = 0
                for s in rec_steps(hessian_every):
                    if s <= T:
                        he_step[nh] = s
                        he["sharpness"][nh] = sharp[s]
                        he["min_eig"][nh] = mineig[s]
                        nh += 1
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
                if with_lambda:
                    row["lambda0"] = lam0
                    row["lambda_final"] = lam[T]
            if status != 0 or not zero_pending_summary:
                for k, v in (("run", i), ("instance", sp["instance"]), ("width", sp["width"]),
                             ("param", PARAM_ID[sp["param"]]), ("seed", sp["seed"]),
                             ("eta", sp["eta"]), ("eta_factor", sp["eta_factor"])):
                    row[k] = v
                if status == 0:
                    for k in ("loss0", "loss_peak", "loss_final", "acc_final", "test_loss_final",
                              "test_acc_final", "wall_seconds"):
                        row[k] = np.nan
            summary[i] = row
            t = rg.create_group("train")
            t.create_dataset("step", data=tr_step)
            for k, a in tr.items():
                t.create_dataset(k, data=a)
            t = rg.create_group("test")
            t.create_dataset("step", data=te_step)
            for k, a in te.items():
                t.create_dataset(k, data=a)
            if with_lambda:
                t = rg.create_group("lambda")
                t.create_dataset("step", data=la_step)
                t.create_dataset("value", data=la["value"])
                t.create_dataset("topk", data=la["topk"])
            if with_hessian:
                t = rg.create_group("hessian")
                t.create_dataset("step", data=he_step)
                t.create_dataset("sharpness", data=he["sharpness"])
                t.create_dataset("min_eig", data=he["min_eig"])
            if with_spectra:
                t = rg.create_group("spectra").create_group("hessian")
                t.create_dataset("step", data=he_step)
                vals = he["sharpness"][:, None] * (0.5 ** np.arange(8))[None, :]
                t.create_dataset("values", data=vals)
        f.create_dataset("summary", data=summary)
    return path


def make_standard_set(d):
    """The files the tests use: full (no lambda), lambda (all later datasets), partial (killed),
    second (another width, to combine with full), absolute (absolute learning rates)."""
    os.makedirs(d, exist_ok=True)
    p = {}
    p["full"] = make_file(os.path.join(d, "full.h5"))
    p["lambda"] = make_file(os.path.join(d, "lambda.h5"), with_lambda=True, with_hessian=True,
                            with_spectra=True, params=("ntk", "sp", "mup"), widths=(64, 256, 1024),
                            seeds=(0, 1, 2))
    p["partial"] = make_file(os.path.join(d, "partial.h5"), kill_after_runs=17)
    p["partial_nan"] = make_file(os.path.join(d, "partial_nan.h5"), kill_after_runs=5,
                                 zero_pending_summary=False, with_lambda=True)
    p["second"] = make_file(os.path.join(d, "second.h5"), widths=(4096,), seeds=(0, 1))
    p["absolute"] = make_file(os.path.join(d, "absolute.h5"), absolute_etas=(0.25, 0.5, 0.75, 1.25, 1.5, 3.0),
                              widths=(128, 512), seeds=(0, 1, 2), params=("ntk",), record_every=2)
    return p


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "synth"
    for k, v in make_standard_set(out).items():
        print(k, v)
