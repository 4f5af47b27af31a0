#!/usr/bin/env python3
"""The exact infinite-width muP limit (docs/mup_limit.md) against references written here.

  mup_limit_check.py mkdata DIR            a small MNIST-format data set (IDX, raw) in DIR
  mup_limit_check.py recursion OUT DIR     the width-0 runs of OUT against the moment recursion in
                                           numpy, on the data of DIR (x = byte/255, one-hot y)
  mup_limit_check.py converge OUT          finite widths converge to the limit: max_t RMS(f_n - f_inf),
                                           averaged over seeds, has slope -0.5 +- 0.15 in log n

The recursion: with z = (u, w), w = n v, the muP update of every neuron is z <- A_t z with
A_t = [[I, -(eta/n0) M^T], [-eta n0 M, I]], M = (1/N) sum_a e_a x_a^T, e_a = f(x_a) - y_a,
f(x) = C x, C = Sigma_wu; so Sigma <- A_t Sigma A_t^T from Sigma_0 = diag(sigma_w^2/d I_d,
sigma_w^2 n0 I_k). The lr-weighted NTK of the limit is
Theta = ((1/n0) Sigma_ww (x) K + n0 I_k (x) X Sigma_uu X^T) / N, sample-major.
"""
import os
import sys

import h5py
import numpy as np

N_TRAIN, N_TEST, SIDE = 40, 20, 28


def write_idx(path, arr, magic):
    with open(path, "wb") as f:
        f.write(np.array([magic] + list(arr.shape), dtype=">i4").tobytes())
        f.write(arr.astype(np.uint8).tobytes())


def mkdata(d):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(12345)
    for pre, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        img = rng.integers(0, 256, size=(n, SIDE, SIDE))
        lab = np.arange(n) % 10
        write_idx(os.path.join(d, pre + "-images-idx3-ubyte"), img, 2051)
        write_idx(os.path.join(d, pre + "-labels-idx1-ubyte"), lab, 2049)


def read_train(d):
    raw = open(os.path.join(d, "train-images-idx3-ubyte"), "rb").read()
    x = np.frombuffer(raw[16:], dtype=np.uint8).reshape(N_TRAIN, SIDE * SIDE) / 255.0
    lab = np.frombuffer(open(os.path.join(d, "train-labels-idx1-ubyte"), "rb").read()[8:], dtype=np.uint8)
    y = np.eye(10)[lab]
    return x, y


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def recursion(out, data):
    X, Y = read_train(data)
    worst = {"f": 0.0, "loss": 0.0, "lambda0": 0.0}
    with h5py.File(out, "r") as f:
        cfg = f["config"].attrs
        n0, sw, zero = float(cfg["base_width"]), float(cfg["sigma_w"]), int(cfg["mup_zero_readout"])
        limits = [g for g in f["runs"].values() if int(g.attrs["width"]) == 0]
        assert limits, "no width-0 run"
        for g in limits:
            eta, T = float(g.attrs["eta"]), int(f["config"].attrs["steps"])
            nb, N = int(cfg["ntk_batch"]), X.shape[0]
            d, k = X.shape[1], Y.shape[1]
            S = np.zeros((d + k, d + k))
            S[:d, :d] = np.eye(d) * sw * sw / d
            S[d:, d:] = np.eye(k) * (0.0 if zero else sw * sw * n0)
            f_rec, f_step = g["outputs/f"][()], g["outputs/step"][()]
            loss_rec, loss_step = g["train/loss"][()], g["train/step"][()]
            B = f_rec.shape[1] // k
            # lambda_0 of the limit: the lr-weighted NTK on the NTK batch
            Xb = X[:nb]
            Th = (np.kron(Xb @ Xb.T, S[d:, d:] / n0) + np.kron(Xb @ S[:d, :d] @ Xb.T, n0 * np.eye(k))) / nb
            lam0 = np.linalg.eigvalsh(Th)[-1]
            rec_lam0 = float(g["lambda/value"][0])
            worst["lambda0"] = max(worst["lambda0"], abs(rec_lam0 - lam0) / lam0)
            for t in range(T + 1):
                C = S[d:, :d]
                F = X @ C.T
                E = F - Y
                if t in f_step:
                    r = list(f_step).index(t)
                    ref = F[:B].reshape(-1)
                    worst["f"] = max(worst["f"], float(np.max(np.abs(f_rec[r] - ref))) / max(1e-3, float(np.max(np.abs(ref)))))
                if t in loss_step:
                    r = list(loss_step).index(t)
                    ref = 0.5 * np.sum(E * E) / N
                    worst["loss"] = max(worst["loss"], abs(loss_rec[r] - ref) / ref)
                M = E.T @ X / N
                A = np.eye(d + k)
                A[:d, d:] = -(eta / n0) * M.T
                A[d:, :d] = -eta * n0 * M
                S = A @ S @ A.T
    print("limit vs moment recursion: f %.2e, loss %.2e, lambda_0 %.2e (relative)" % (worst["f"], worst["loss"], worst["lambda0"]))
    assert worst["f"] < 1e-10 and worst["loss"] < 1e-10, worst
    assert worst["lambda0"] < 1e-8, worst


def converge(out):
    with h5py.File(out, "r") as f:
        runs = {}
        for g in f["runs"].values():
            fr = g["outputs/f"][()]
            assert np.isfinite(fr).all()
            runs[(int(g.attrs["width"]), int(g.attrs["seed"]))] = fr
    seeds = sorted({s for (w, s) in runs})
    widths = sorted({w for (w, s) in runs if w > 0})
    err = []
    for w in widths:
        e = [np.max(np.sqrt(np.mean((runs[(w, s)] - runs[(0, s)]) ** 2, axis=1))) for s in seeds]
        err.append(np.mean(e))
    slope = np.polyfit(np.log(widths), np.log(err), 1)[0]
    print("max_t RMS(f_n - f_inf), mean over %d seeds: %s; slope %.3f" %
          (len(seeds), ", ".join("n=%d %.4g" % (w, e) for w, e in zip(widths, err)), slope))
    assert abs(slope + 0.5) <= 0.15, slope


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "mkdata":
        mkdata(sys.argv[2])
    elif mode == "recursion":
        recursion(sys.argv[2], sys.argv[3])
    elif mode == "converge":
        converge(sys.argv[2])
    else:
        sys.exit("unknown mode " + mode)
