#!/usr/bin/python3
"""Checks ntkhpc's uv model against the exact equations of docs/conventions.md "uv model".

  uv_check.py recursion out.h5   every run's recorded loss L_t = f_t^2/2 and lambda_t follow
                                 f_{t+1} = (1 - eta l_t + eta^2 f_t^2/n) f_t,
                                 l_{t+1} = l_t + (eta f_t^2/n)(eta l_t - 4) step by step
  uv_check.py etamax out.h5 TOL  -eta_max_search brackets eta_max * lambda_0 = 4 to TOL
  uv_check.py hessian out.h5 TOL most negative Hessian eigenvalue = -|f|/sqrt(n) (exact) and
                                 sharpness = lambda once f = 0 (H = G there)
  uv_check.py phases out.h5      the eta_factor sweep is lazy below 2, catapult between 2 and 4,
                                 divergent above 4, each boundary within 0.1
Prints "N passed, N failed"; exit status 1 on any failure.
"""
import sys

import h5py
import numpy as np

from checklib import expect as check, summary

def recursion(path, rtol):
    """One step of the exact recursion from each recorded (f_t^2, lambda_t) must give the recorded
    (f_{t+1}^2, lambda_{t+1}) to round-off. Errors are relative to the size of the terms of each
    update (a backward-error bound): near eta*lambda = 1 the factor of f nearly cancels and a
    relative error in f alone would measure that cancellation, not the code."""
    with h5py.File(path, "r") as f:
        s = f["summary"][:]
        for row in s:
            g = f["runs"][f"run_{int(row['run']):06d}"]
            n, eta = int(g.attrs["width"]), float(g.attrs["eta"])
            loss, lam = g["train/loss"][:], g["lambda/value"][:]
            steps, lsteps = g["train/step"][:], g["lambda/step"][:]
            T = min(int(np.sum((steps >= 0) & np.isfinite(loss))), int(np.sum((lsteps >= 0) & np.isfinite(lam))))
            check(T > 4, f"run {row['run']}: only {T} recorded steps")
            check(np.array_equal(steps[:T], np.arange(T)) and np.array_equal(lsteps[:T], np.arange(T)), "records every step")
            worst = 0.0
            for t in range(T - 1):
                f2, l = 2 * loss[t], lam[t]
                m = 1 - eta * l + eta * eta * f2 / n
                l_next = l + (eta * f2 / n) * (eta * l - 4)
                # |f| is recorded through L = f^2/2. The forward pass computes f = sum_i v_i u_i x/sqrt(n),
                # whose round-off is absolute, ~eps * |u||v|/sqrt(n) <= eps * lambda sqrt(n)/2: that
                # floor joins the relative scale of the update's terms.
                scale_f = (1 + eta * l + eta * eta * f2 / n) * np.sqrt(f2) + l * np.sqrt(n)
                scale_l = l + (eta * f2 / n) * (eta * l + 4)
                ef = abs(np.sqrt(2 * loss[t + 1]) - abs(m) * np.sqrt(f2)) / scale_f
                el = abs(lam[t + 1] - l_next) / scale_l
                worst = max(worst, ef, el)
            check(worst <= rtol, f"run {row['run']} (eta*lambda0 {row['eta_lambda0']:.2f}): worst one-step error {worst:.2e} > {rtol:g}")
            print(f"run {int(row['run'])}: eta*lambda0 = {row['eta_lambda0']:.3f}, {T} steps, worst one-step error {worst:.2e}")


def phases(path):
    with h5py.File(path, "r") as f:
        s = f["summary"][:]
    c = np.round(s["eta_factor"], 6)
    ph = s["phase"]
    names = {0: "lazy", 1: "catapult", 2: "divergent"}
    check(np.all(s["status"] >= 2), "every run finished")
    check(np.all(np.isfinite(s["lambda0"])) and np.allclose(s["eta_lambda0"], s["eta_factor"], rtol=1e-12), "eta * lambda0 = eta_factor")
    for ci, p in sorted(zip(c, ph)):
        want = 0 if ci < 2.0 else 1 if ci < 4.0 else 2
        near = abs(ci - 2.0) <= 0.1 + 1e-9 or abs(ci - 4.0) <= 0.1 + 1e-9
        if not near:
            check(p == want, f"eta_factor {ci}: phase {names.get(p, p)}, expected {names[want]}")
    lazy_max = max(ci for ci, p in zip(c, ph) if p == 0)
    cat = [ci for ci, p in zip(c, ph) if p == 1]
    div_min = min(ci for ci, p in zip(c, ph) if p == 2)
    check(abs(lazy_max - 2.0) <= 0.1 + 1e-9, f"lazy/catapult boundary: last lazy at {lazy_max}")
    check(abs(min(cat) - 2.0) <= 0.1 + 1e-9, f"lazy/catapult boundary: first catapult at {min(cat)}")
    check(abs(max(cat) - 4.0) <= 0.1 + 1e-9, f"catapult/divergent boundary: last catapult at {max(cat)}")
    check(abs(div_min - 4.0) <= 0.1 + 1e-9, f"catapult/divergent boundary: first divergent at {div_min}")
    # after a catapult the NTK has come down below 2/eta
    sel = ph == 1
    check(np.all(s["eta_lambda_final"][sel] < 2.0), f"catapult runs end with eta*lambda_T < 2: {s['eta_lambda_final'][sel]}")
    print(f"last lazy {lazy_max}, catapult {min(cat)}..{max(cat)}, first divergent {div_min}")


def etamax(path, tol):
    """-eta_max_search on the uv model must bracket the exact boundary eta_max * lambda_0 = 4."""
    with h5py.File(path, "r") as f:
        inst = f["instances"][:]
    for row in inst:
        lo, hi = float(row["eta_max_lo"]), float(row["eta_max_hi"])
        check(lo < 4.0 <= hi + 1e-12, f"instance {row['instance']}: bracket ({lo}, {hi}] misses 4")
        check(hi - lo <= tol + 1e-12, f"instance {row['instance']}: bracket width {hi - lo} > {tol}")
        check(row["eta_max_probes"] >= 3, f"instance {row['instance']}: {row['eta_max_probes']} probes")
        print(f"instance {int(row['instance'])} (width {int(row['width'])}): eta_max * lambda_0 in ({lo:.4f}, {hi:.4f}] after {int(row['eta_max_probes'])} probes")


def hessian(path, rtol):
    """uv model, L = f^2/2: H = grad f grad f^T + f Hess f, and Hess f = [[0, I], [I, 0]] x / sqrt(n)
    has eigenvalues +-1/sqrt(n) on vectors orthogonal to u and v, so the most negative eigenvalue of
    H is exactly -|f|/sqrt(n) (n > 2); at convergence (f = 0) H = G and the sharpness equals lambda."""
    with h5py.File(path, "r") as f:
        s = f["summary"][:]
        for row in s:
            g = f["runs"][f"run_{int(row['run']):06d}"]
            n = int(g.attrs["width"])
            hs, ls = g["hessian/step"][:], g["train/step"][:]
            loss = g["train/loss"][:]
            for q, step in enumerate(hs):
                if step < 0:
                    continue
                fabs = np.sqrt(2 * loss[list(ls).index(step)])
                want = -fabs / np.sqrt(n)
                got = g["hessian/min_eig"][q]
                check(abs(got - want) <= rtol * max(abs(want), 1e-12) + 1e-13, f"run {row['run']} step {step}: min eig {got!r}, exact -|f|/sqrt(n) = {want!r}")
            q = int(np.sum(hs >= 0)) - 1
            sh, lam = g["hessian/sharpness"][q], g["hessian/lambda"][q]
            check(abs(sh - lam) <= rtol * lam, f"run {row['run']}: converged sharpness {sh!r} != lambda {lam!r}")
            check(abs(lam - g["lambda/value"][int(np.sum(g['lambda/step'][:] >= 0)) - 1]) <= 1e-12 * lam, "lambda recorded twice agrees")
            print(f"run {int(row['run'])}: min eig matches -|f|/sqrt(n) at {int(np.sum(hs >= 0))} steps; final sharpness {sh:.10g} = lambda {lam:.10g}")


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "recursion":
        recursion(path, float(sys.argv[3]) if len(sys.argv) > 3 else 1e-10)
    elif mode == "hessian":
        hessian(path, float(sys.argv[3]))
    elif mode == "etamax":
        etamax(path, float(sys.argv[3]))
    else:
        phases(path)
    sys.exit(summary())
