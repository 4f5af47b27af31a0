#!/usr/bin/python3
"""Checks ntk_analytic/ (the empirical NTK at initialisation against the infinite-width one).

Usage: ntk_analytic_check.py OUT.h5 [OUT2.h5 ...]

Each file is an output of tests/test_features_dump.c (ntkhpc plus a measurement recording theta_t
and the probe batch) for fc nets in the ntk parameterization, probe batch = NTK batch. numpy
recomputes, independently of the C code:
  - the analytic NTK Theta_{L+1}(X, X) by the layer recursion with the arc-cosine (relu), arcsine
    (erf) and linear (identity) closed forms written here, lambda_0(inf) = its top eigenvalue / N;
  - the empirical Gram matrix J J^T / N from the explicit Jacobian of the net at theta_0
    (features_check.Net), in the deck's variant, and |Theta_n - Theta_inf|_F / |Theta_inf|_F;
  - |lambda_0(n) / lambda_0(inf) - 1| with the recorded lambda_0(n) against numpy's eigvalsh.
All to 1e-10 relative; then the finite-width errors must be below 4 sqrt(L / width) (4/sqrt(n) for
one hidden layer). With several
files (other rank counts) the records must agree to 1e-10. Last line: "N passed, M failed".
"""
import os
import sys

import h5py
import numpy as np
from scipy.special import erf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import features_check  # noqa: E402
from checklib import check, close, summary_exit  # noqa: E402

features_check.ACTS["erf"] = (erf, lambda z: 2 / np.sqrt(np.pi) * np.exp(-z * z))



def expectations(act, q1, q2, c):
    """E[phi(u) phi(v)], E[phi'(u) phi'(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]), elementwise."""
    if act == "identity":
        return c, np.ones_like(c)
    if act == "relu":  # arc-cosine kernels of degree 1 and 0 (Cho & Saul)
        s = np.sqrt(q1 * q2)
        th = np.arctan2(np.sqrt(np.maximum(q1 * q2 - c * c, 0)), c)  # arccos(c / s), accurate near c = s
        return (s * np.sin(th) + (np.pi - th) * c) / (2 * np.pi), (np.pi - th) / (2 * np.pi)
    if act == "erf":  # arcsine kernels (Williams 1997)
        a1, a2 = 1 + 2 * q1, 1 + 2 * q2
        e = 2 / np.pi * np.arcsin(2 * c / np.sqrt(a1 * a2))
        de = 4 / np.pi / np.sqrt(a1 * a2 - 4 * c * c)
        return e, de
    raise ValueError(act)


def analytic_ntk(x, deck):
    L, act = int(deck["depth"]), deck["activation"]
    sw = float(deck["sigma_w"])
    sb = float(deck["sigma_b"]) if deck["bias"] == "true" else 0.0
    K = sw ** 2 * x @ x.T / x.shape[1] + sb ** 2
    Th = K.copy()
    for _ in range(L):
        q = np.diag(K)
        e, de = expectations(act, q[:, None], q[None, :], K)
        K = sw ** 2 * e + sb ** 2
        Th = K + sw ** 2 * de * Th
    return Th


def check_run(f, deck, name):
    g = f["runs"][name]
    s = f["summary"][()][int(name.split("_")[1])]
    width = int(s["width"])
    probe, rec = g["probe"], g["ntk_analytic"]
    N = int(deck["ntk_batch"])
    x = probe["x"][0].reshape(N, -1)
    y = probe["y"][0].reshape(N, -1)
    d, k = x.shape[1], y.shape[1]
    Th = analytic_ntk(x, deck)
    lam_inf = np.linalg.eigvalsh(Th)[-1] / N
    check(f"{name} lambda0_inf", close(rec["lambda0_inf"][0], lam_inf), f"{rec['lambda0_inf'][0]} vs {lam_inf}")
    net = features_check.Net(deck, width, 0, d, k)
    J, _ = net.jacobian(probe["theta"][0][:net.P], x)
    traced = deck.get("ntk_variant", "full") == "traced"
    if traced:
        G = np.einsum("aip,bip->ab", J, J) / (N * k)
        ref = Th / N
    else:
        Jf = J.reshape(N * k, -1)
        G = Jf @ Jf.T / N
        ref = np.kron(Th, np.eye(k)) / N
    lam_n = np.linalg.eigvalsh(G)[-1]
    check(f"{name} lambda0 (the instance's) against eigvalsh", close(rec["lambda0"][0], lam_n, 1e-9), f"{rec['lambda0'][0]} vs {lam_n}")
    kerr = np.linalg.norm(G - ref) / np.linalg.norm(ref)
    check(f"{name} kernel_rel_err", close(rec["kernel_rel_err"][0], kerr), f"{rec['kernel_rel_err'][0]} vs {kerr}")
    lerr = abs(lam_n / lam_inf - 1)
    check(f"{name} lambda0_rel_err", close(rec["lambda0_rel_err"][0], lerr, 1e-8), f"{rec['lambda0_rel_err'][0]} vs {lerr}")
    # 4/sqrt(n) for one hidden layer (the criterion); the NTK's relative fluctuation grows with
    # depth / width (Hanin & Nica 2019), so deeper nets get 4 sqrt(L / n)
    bound = 4 * np.sqrt(int(deck["depth"]) / width)
    check(f"{name} finite-width errors below 4 sqrt(L/n) = {bound:.4f}", kerr < bound and lerr < bound, f"kernel {kerr:.4g}, lambda {lerr:.4g}")
    print(f"{name}: {deck['activation']} depth {deck['depth']} width {width} {'traced' if traced else 'full'}: lambda0(n) {lam_n:.6f} "
          f"lambda0(inf) {lam_inf:.6f} |ratio - 1| {lerr:.3g}, kernel error {kerr:.3g} (bound {bound:.3g})")


def main():
    ref = None
    for path in sys.argv[1:]:
        with h5py.File(path, "r") as f:
            deck = features_check.deck_of(f)
            names = sorted(f["runs"])
            check(f"{path}: runs", len(names) > 0)
            for name in names:
                check_run(f, deck, name)
            got = {n: {k: f["runs"][n]["ntk_analytic"][k][()] for k in f["runs"][n]["ntk_analytic"]} for n in names}
        if ref is None:
            ref = got
        else:
            for n in ref:
                for key in ref[n]:
                    a, b = got[n][key], ref[n][key]
                    check(f"{path} {n} {key} agrees across rank counts", bool(np.all(np.abs(a - b) <= 1e-10 * np.abs(b))))
    summary_exit()


if __name__ == "__main__":
    main()
