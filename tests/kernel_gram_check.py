"""The assembled Gram matrices of test_kernel_inf gram against numpy, and against each other.

usage: kernel_gram_check.py closed FILE             Theta(X, X) and Theta(X*, X) of the 3-hidden-layer
                                                    relu net (sigma_w^2 = 2, sigma_b = 0.1) against the
                                                    arc-cosine recursion in numpy, 1e-12 relative;
                                                    Theta(X, X) exactly symmetric
       kernel_gram_check.py same FILE_A FILE_B TOL  the same matrices to TOL (0: bit for bit)"""
import sys

import numpy as np


def load(path):
    with open(path, "rb") as f:
        N, M, d = np.fromfile(f, np.int32, 3)
        x = np.fromfile(f, np.float64, (N + M) * d).reshape(N + M, d)
        G = np.fromfile(f, np.float64, N * N).reshape(N, N)
        C = np.fromfile(f, np.float64, M * N).reshape(M, N)
    return x, G, C


def relu_ntk(x1, x2, depth=3, sw2=2.0, sb2=0.01, same=False):
    d = x1.shape[1]
    k12 = sw2 * x1 @ x2.T / d + sb2
    q1 = sw2 * (x1 * x1).sum(1) / d + sb2
    q2 = sw2 * (x2 * x2).sum(1) / d + sb2
    th = k12.copy()
    for _ in range(depth):
        s = np.sqrt(np.outer(q1, q2))
        t = np.arccos(np.clip(k12 / s, -1, 1))
        if same:  # a sample with itself: correlation 1 exactly (arccos of 1 - 1e-16 is 1e-8)
            np.fill_diagonal(t, 0.0)
        e = s / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t))
        ed = (np.pi - t) / (2 * np.pi)
        k12 = sw2 * e + sb2
        th = k12 + sw2 * ed * th
        q1, q2 = sw2 * q1 / 2 + sb2, sw2 * q2 / 2 + sb2
    return th


if sys.argv[1] == "closed":
    x, G, C = load(sys.argv[2])
    N = G.shape[0]
    ref_g, ref_c = relu_ntk(x[:N], x[:N], same=True), relu_ntk(x[N:], x[:N])
    eg = np.abs(G - ref_g).max() / np.abs(ref_g).max()
    ec = np.abs(C - ref_c).max() / np.abs(ref_c).max()
    ok = np.all(np.isfinite(G)) and np.all(np.isfinite(C)) and eg < 1e-12 and ec < 1e-12 and np.array_equal(G, G.T)
    print("Gram %dx%d + %d test rows against numpy: %.2e, %.2e relative; symmetric %s" % (N, N, C.shape[0], eg, ec, np.array_equal(G, G.T)))
else:
    _, Ga, Ca = load(sys.argv[2])
    _, Gb, Cb = load(sys.argv[3])
    tol = float(sys.argv[4])
    diff = max(np.abs(Ga - Gb).max(), np.abs(Ca - Cb).max() if Ca.size else 0.0)
    ok = diff <= tol
    print("max difference %.3g (tolerance %g)" % (diff, tol))
sys.exit(0 if ok else 1)
