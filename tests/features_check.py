#!/usr/bin/python3
"""Checks features/ (docs/conventions.md "Feature learning") against numpy.

Usage: features_check.py OUT.h5 [OUT2.h5 ...]

Each file is an output of tests/test_features_dump.c (ntkhpc plus a measurement "probe" recording
theta_t and the probe batch at every step) for fc nets. For every run and recorded step, numpy
rebuilds the net from the flat theta with the multipliers of the conventions' table (not the C
table), and recomputes from theta_0 and theta_t: |z_l|, |dz_l|, the relative Frobenius and the
spectral norm (SVD) of the effective weight change, the NTK Gram matrices from an explicit
Jacobian, Fort's S, the centred kernel-target alignments of the logit-traced NTK and of
Phi = h_L h_L^T / n, and linear CKA by Kornblith's feature-space formula. Every value must agree
to 1e-10 relative (absolute 1e-13 for values that vanish at step 0) and be finite. With several
files (the same deck at other rank counts) the features/ datasets must agree to 1e-10.

The NTK checks use Theta = J D J^T / N with D = diag(lr_scale) (conventions "Empirical NTK"): for
ntk and sp D = I; for mup, until the operators weight by D (issue #16 item 1), the plain J J^T / N
is accepted too, and the script says which one matched. Last line: "N passed, M failed".
"""
import sys

import h5py
import numpy as np

RTOL, ATOL = 1e-10, 1e-13
ACTS = {"tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2), "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0),
        "identity": (lambda z: z, lambda z: np.ones_like(z))}
passed = failed = 0
worst = {}


def check(name, got, ref, run):
    global passed, failed
    got, ref = np.asarray(got, float), np.asarray(ref, float)
    err = np.abs(got - ref)
    ok = np.all(np.isfinite(got)) and np.all(err <= RTOL * np.abs(ref) + ATOL)
    rel = float(np.max(err / np.maximum(np.abs(ref), 1e-300))) if np.any(ref != 0) else float(np.max(err))
    worst[name] = max(worst.get(name, 0.0), float(np.max(err / np.maximum(np.abs(ref), ATOL / RTOL))))
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {run}: {name}: got {got} want {ref} (max rel {rel:.3g})")


def deck_of(f):
    d = {}
    for line in f["deck"][()].decode().splitlines():
        k, _, v = line.partition(" ")
        d[k.lstrip("-")] = v
    return d


class Net:
    """The fc net of the conventions' table: per dense layer z = mW W h + mb b, W n_out x n_in."""

    def __init__(self, deck, width, param, d, k):
        self.L = int(deck["depth"])
        self.bias = deck["bias"] == "true"
        self.phi, self.dphi = ACTS[deck["activation"]]
        sw, sb, n0 = float(deck["sigma_w"]), float(deck["sigma_b"]), int(deck["base_width"])
        dims = [d] + [width] * self.L + [k]
        r = width / n0
        self.layers = []  # (n_in, n_out, mult W, mult b, lr W, lr b)
        for l in range(self.L + 1):
            n_in, n_out = dims[l], dims[l + 1]
            if param == 0:  # ntk
                mw, mb, lw, lb = sw / np.sqrt(n_in), sb, 1.0, 1.0
            else:  # sp, mup: no multipliers
                mw, mb, lw, lb = 1.0, 1.0, 1.0, 1.0
            if param == 2:  # mup learning rates: input W and biases r, hidden W 1, output W 1/r
                lw = r if l == 0 else (1 / r if l == self.L else 1.0)
                lb = r
            self.layers.append((n_in, n_out, mw, mb, lw, lb))
        self.P = sum(i * o + (o if self.bias else 0) for i, o, *_ in self.layers)

    def split(self, theta):
        out, p = [], 0
        for n_in, n_out, *_ in self.layers:
            W = theta[p:p + n_in * n_out].reshape(n_out, n_in)
            p += n_in * n_out
            b = np.zeros(n_out)
            if self.bias:
                b = theta[p:p + n_out]
                p += n_out
            out.append((W, b))
        return out

    def forward(self, theta, x):
        hs, zs, h = [x], [], x
        for l, ((W, b), (n_in, n_out, mw, mb, *_)) in enumerate(zip(self.split(theta), self.layers)):
            z = mw * h @ W.T + mb * b
            zs.append(z)
            h = self.phi(z) if l < self.L else z
            hs.append(h)
        return zs, hs

    def jacobian(self, theta, x):
        """J[a, i, p] = d f_i(x_a) / d theta_p, and the per-parameter learning-rate scales."""
        zs, hs = self.forward(theta, x)
        N, k = x.shape[0], self.layers[-1][1]
        Wb = self.split(theta)
        delta = np.broadcast_to(np.eye(k), (N, k, k)).copy()  # [a, i, unit of z_{L+1}]
        blocks, lrs = [None] * (self.L + 1), [None] * (self.L + 1)
        for l in range(self.L, -1, -1):
            n_in, n_out, mw, mb, lw, lb = self.layers[l]
            dW = mw * np.einsum("aiu,av->aiuv", delta, hs[l]).reshape(N, k, n_out * n_in)
            parts, lr = [dW], [np.full(n_out * n_in, lw)]
            if self.bias:
                parts.append(mb * delta)
                lr.append(np.full(n_out, lb))
            blocks[l], lrs[l] = np.concatenate(parts, axis=2), np.concatenate(lr)
            if l > 0:
                delta = mw * np.einsum("aiu,uv->aiv", delta, Wb[l][0]) * self.dphi(zs[l - 1])[:, None, :]
        return np.concatenate(blocks, axis=2), np.concatenate(lrs)


def centred(K):
    N = K.shape[0]
    C = np.eye(N) - np.ones((N, N)) / N
    return C @ K @ C


def alignment(K, Y):
    Kc, Lc = centred(K), centred(Y @ Y.T)
    return np.sum(Kc * Lc) / (np.linalg.norm(Kc) * np.linalg.norm(Lc))


def cka(X, Z):
    X, Z = X - X.mean(0), Z - Z.mean(0)
    return np.linalg.norm(Z.T @ X) ** 2 / (np.linalg.norm(X.T @ X) * np.linalg.norm(Z.T @ Z))


def ntk(J, lr, N):
    k = J.shape[1]
    Jf = J.reshape(N * k, -1)
    return (Jf * lr) @ Jf.T / N


def check_run(f, deck, name):
    g, probe = f["runs"][name], f["runs"][name]["probe"]
    width, param = int(g.attrs["width"]), int(g.attrs["param"])
    feats = {key: g["features"][key][()] for key in g["features"]}
    N = int(deck["ntk_batch"])
    y0 = probe["y"][0]
    k = y0.size // N
    d = probe["x"][0].size // N
    x, Y = probe["x"][0].reshape(N, d), y0.reshape(N, k)
    net = Net(deck, width, param, d, k)
    steps = probe["step"][()]
    theta0 = probe["theta"][0][:net.P]
    zs0, hs0 = net.forward(theta0, x)
    J0, lr = net.jacobian(theta0, x)
    T0 = {"lr": ntk(J0, lr, N), "plain": ntk(J0, np.ones_like(lr), N)}
    tag = f"{name} ({['ntk', 'sp', 'mup'][param]}, n={width})"
    for r, t in enumerate(feats["step"]):
        theta = probe["theta"][int(np.nonzero(steps == t)[0][0])][:net.P]
        zs, hs = net.forward(theta, x)
        check("z_rms", feats["z_rms"][r], [np.sqrt(np.mean(z ** 2)) for z in zs], f"{tag} step {t}")
        check("dz_rms", feats["dz_rms"][r], [np.sqrt(np.mean((z - z0) ** 2)) for z, z0 in zip(zs, zs0)], f"{tag} step {t}")
        rel, spec = [], []
        for (W, _), (W0, _), (_, _, mw, *_) in zip(net.split(theta), net.split(theta0), net.layers):
            rel.append(np.linalg.norm(mw * (W - W0)) / np.linalg.norm(mw * W0))
            spec.append(np.linalg.norm(mw * (W - W0), 2))
        check("w_change_rel", feats["w_change_rel"][r], rel, f"{tag} step {t}")
        check("w_change_spec", feats["w_change_spec"][r], spec, f"{tag} step {t}")
        J, _ = net.jacobian(theta, x)
        kinds = ["lr"] if param != 2 else ["lr", "plain"]
        best = None
        for kind in kinds:  # mup: whichever weighting the operator uses (see the docstring)
            Tt = ntk(J, lr if kind == "lr" else np.ones_like(lr), N)
            Kbar = np.einsum("aibi->ab", Tt.reshape(N, k, N, k)) / k
            A, B = T0[kind], Tt  # S of the Gram matrices as lambda/ holds them: full or traced
            if deck["ntk_variant"] == "traced":
                A, B = np.einsum("aibi->ab", A.reshape(N, k, N, k)) / k, Kbar
            S = 1 - np.sum(A * B) / (np.linalg.norm(A) * np.linalg.norm(B))
            if S < 1e-3:  # the same, without the cancellation of 1 - cos
                S = np.sum((A / np.linalg.norm(A) - B / np.linalg.norm(B)) ** 2) / 2
            ref = (S, alignment(Kbar, Y))
            e = abs(feats["kernel_fort"][r] - S) + abs(feats["ntk_alignment"][r] - ref[1])
            if best is None or e < best[0]:
                best = (e, kind, ref)
        if param == 2 and t == feats["step"][-1]:
            print(f"{tag}: the NTK measures match the {best[1]} kernel")
        check("kernel_fort", feats["kernel_fort"][r], best[2][0], f"{tag} step {t}")
        check("ntk_alignment", feats["ntk_alignment"][r], best[2][1], f"{tag} step {t}")
        hL, hL0 = hs[-2], hs0[-2]
        check("feature_alignment", feats["feature_alignment"][r], alignment(hL @ hL.T / width, Y), f"{tag} step {t}")
        check("cka", feats["cka"][r], cka(hL0, hL), f"{tag} step {t}")
    return feats


def main():
    global passed, failed
    results = []
    for path in sys.argv[1:]:
        with h5py.File(path, "r") as f:
            deck = deck_of(f)
            results.append({name: check_run(f, deck, name) for name in sorted(f["runs"])})
    print("max relative error vs numpy: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    for other, path in zip(results[1:], sys.argv[2:]):
        dmax = 0.0
        for name, feats in results[0].items():
            for key, a in feats.items():
                b = other[name][key]
                d = np.max(np.abs(a - b) / np.maximum(np.abs(a), ATOL / RTOL))
                dmax = max(dmax, float(d))
                if a.shape == b.shape and np.all(np.abs(a - b) <= RTOL * np.abs(a) + ATOL):
                    passed += 1
                else:
                    failed += 1
                    print(f"FAIL {path} {name} {key}: differs from {sys.argv[1]}")
        print(f"{path} vs {sys.argv[1]}: max relative difference {dmax:.2e}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
