"""The tiny CNTK of tests/test_cntk.c (two 4x4 images of 2 channels, two 3x3 same-padded conv +
relu layers, global average pooling, dense readout, ntk parameterization) against

  1. a direct numpy implementation of Arora et al.'s recursion over pixel pairs, written here on
     4-D arrays (h, w, h', w') with the 3x3 patch sums as np.pad + slicing: 1e-12 relative;
  2. the empirical NTK J J^T of the same net at width n = 1024 channels in PyTorch (ntk
     parameterization: weights N(0, 1) scaled by sigma_w / sqrt(fan-in), biases by sigma_b),
     averaged over 4 seeds: within 4 / sqrt(n) relative (the finite-width fluctuation).

usage: cntk_check.py FILE (written by test_cntk FILE)"""
import math
import sys

import numpy as np
import torch

vals = open(sys.argv[1]).read().split()
n, C, H, W, L = (int(v) for v in vals[:5])
sw, sb = float(vals[5]), float(vals[6])
x = np.array([float(v) for v in vals[7:7 + n * C * H * W]]).reshape(n, C, H, W)
out = np.array([float(v) for v in vals[7 + n * C * H * W:]]).reshape(n, n, 2)
Kc, Tc = out[..., 0], out[..., 1]


def patch(a):
    """sum over the 3x3 offsets o of a[p + o, p' + o], zero outside: a has axes (h, w, h', w')"""
    b = np.pad(a, 1)
    r = np.zeros_like(a)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            r += b[1 + dy:1 + dy + H, 1 + dx:1 + dx + W, 1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
    return r


def cntk(x1, x2, same):
    s0 = np.einsum("chw,cij->hwij", x1, x2) / C
    v1 = np.einsum("chw,chw->hw", x1, x1) / C
    v2 = np.einsum("chw,chw->hw", x2, x2) / C
    k = sw ** 2 / 9 * patch(s0) + sb ** 2
    th = k.copy()
    # the variances q(x, p) are the diagonal of the same recursion for (x, x): patch sums of the diagonal
    def pd(v):
        b = np.pad(v, 1)
        return sum(b[1 + dy:1 + dy + H, 1 + dx:1 + dx + W] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    q1, q2 = sw ** 2 / 9 * pd(v1) + sb ** 2, sw ** 2 / 9 * pd(v2) + sb ** 2
    for l in range(L):
        s = np.sqrt(q1[:, :, None, None] * q2[None, None, :, :])
        rho = np.clip(k / s, -1, 1)
        if same:
            for h in range(H):
                for w in range(W):
                    rho[h, w, h, w] = 1.0
        t = np.arccos(rho)
        e = s / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t))
        ed = (np.pi - t) / (2 * np.pi)
        if l == L - 1:
            K = sw ** 2 * e.mean() + sb ** 2
            return K, K + sw ** 2 * (ed * th).mean()
        k = sw ** 2 / 9 * patch(e) + sb ** 2
        th = k + sw ** 2 / 9 * patch(ed * th)
        q1, q2 = sw ** 2 / 9 * pd(q1 / 2) + sb ** 2, sw ** 2 / 9 * pd(q2 / 2) + sb ** 2


ok = True
worst = 0.0
for i in range(n):
    for j in range(n):
        K, T = cntk(x[i], x[j], i == j)
        e = max(abs(K - Kc[i, j]) / abs(K), abs(T - Tc[i, j]) / abs(T))
        worst = max(worst, e)
        ok &= bool(np.isfinite(Kc[i, j]) and np.isfinite(Tc[i, j]) and e < 1e-12)
print("numpy recursion: worst relative difference %.2e (tolerance 1e-12)" % worst)

# the empirical NTK of a wide CNN
torch.set_default_dtype(torch.float64)
width, seeds = 1024, 4
xt = torch.tensor(x)
emp = np.zeros((n, n))
for seed in range(seeds):
    g = torch.Generator().manual_seed(seed)
    params = []
    cin = C
    for l in range(L):
        params += [torch.randn(width, cin, 3, 3, generator=g), torch.randn(width, generator=g)]
        cin = width
    params += [torch.randn(1, width, generator=g), torch.randn(1, generator=g)]
    params = [p.requires_grad_(True) for p in params]

    def f(xb):
        h, cin = xb, C
        for l in range(L):
            h = torch.relu(torch.nn.functional.conv2d(h, params[2 * l], padding=1) * sw / math.sqrt(9 * cin) + sb * params[2 * l + 1][None, :, None, None])
            cin = width
        h = h.mean(dim=(2, 3))
        return (h @ params[-2].T * sw / math.sqrt(width) + sb * params[-1]).squeeze(1)

    J = []
    for i in range(n):
        gr = torch.autograd.grad(f(xt[i:i + 1])[0], params)
        J.append(torch.cat([q.reshape(-1) for q in gr]).detach().numpy())
    J = np.array(J)
    emp += J @ J.T / seeds
rel = np.abs(emp - Tc).max() / np.abs(Tc).max()
tol = 4 / math.sqrt(width)
print("empirical NTK of width %d (mean of %d seeds) vs CNTK: %.3f relative (tolerance 4/sqrt(n) = %.3f)" % (width, seeds, rel, tol))
print("  CNTK", Tc.ravel(), "empirical", emp.ravel())
ok &= rel < tol
sys.exit(0 if ok else 1)
