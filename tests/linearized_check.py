#!/usr/bin/python3
"""Checks linearized/ (the linearised model trained beside the network) against numpy.

Usage: linearized_check.py OUT.h5 [OUT2.h5 ...]

Each file is an output of tests/test_features_dump.c (ntkhpc plus a measurement recording theta_t
and the probe batch at every step) with -ntk_batch equal to -n_train, so the probe batch is the whole
training set, and with full-batch gd. For every run numpy builds the explicit Jacobian J_0 of the
net at theta_0 (features_check.Net: the conventions' multipliers and learning-rate scales, not the C
tables), and trains the linearised model f_lin = f_0 + J_0 (theta - theta_0) with heavy-ball
momentum and coupled weight decay (v = mu v + g + wd theta; theta -= eta D v) on the same data.
Its train loss, RMS(f - f_lin) (f from the network's own theta_t) and |theta_lin - theta_0| must
agree with linearized/ at every recorded step to 1e-10 relative; at step 0 its test loss must equal
the network's. With several files (other rank counts) linearized/ must agree to 1e-10.
Last line: "N passed, M failed".
"""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from features_check import Net, deck_of  # noqa: E402
from checklib import check, close, summary_exit  # noqa: E402




def check_run(f, deck, name):
    g = f["runs"][name]
    s = f["summary"][()][int(name.split("_")[1])]
    width, param, eta = int(s["width"]), int(s["param"]), float(s["eta"])
    probe, lin = g["probe"], g["linearized"]
    P0 = probe["theta"][0]
    x = probe["x"][0]
    d = x.size // int(deck["ntk_batch"])
    N = int(deck["ntk_batch"])
    y = probe["y"][0].reshape(N, -1)
    k = y.shape[1]
    x = x.reshape(N, d)
    net = Net(deck, width, param, d, k)
    theta0 = P0[:net.P]
    J, D = net.jacobian(theta0, x)
    J = J.reshape(N * k, net.P)
    f0 = net.forward(theta0, x)[0][-1].reshape(-1)
    mu, wd = float(deck.get("momentum", 0)), float(deck.get("weight_decay", 0))
    th, v = theta0.copy(), np.zeros(net.P)
    steps = probe["step"][()]
    rec = {int(t): i for i, t in enumerate(lin["step"][()])}
    T = int(deck["steps"])
    for t in range(T + 1):
        flin = f0 + J @ (th - theta0)
        r = flin - y.reshape(-1)
        loss = r @ r / (2 * N)
        if t in rec:
            i = rec[t]
            check(f"{name} step {t} loss", close(lin["loss"][i], loss), f"{lin['loss'][i]} vs {loss}")
            acc = np.mean(np.argmax(flin.reshape(N, k), 1) == np.argmax(y, 1))
            check(f"{name} step {t} accuracy", close(lin["accuracy"][i], acc))
            j = int(np.nonzero(steps == t)[0][0])
            ft = net.forward(probe["theta"][j][:net.P], x)[0][-1].reshape(-1)
            rms = np.sqrt(np.mean((ft - flin) ** 2))
            check(f"{name} step {t} rms_f_flin", close(lin["rms_f_flin"][i], rms, atol=1e-13), f"{lin['rms_f_flin'][i]} vs {rms}")
            check(f"{name} step {t} dist_init", close(lin["dist_init"][i], np.linalg.norm(th - theta0), atol=1e-13))
            check(f"{name} step {t} test loss finite", np.isfinite(lin["test_loss"][i]) and np.isfinite(lin["test_accuracy"][i]))
        if t == T:
            break
        grad = J.T @ r / N
        step = grad + wd * th
        v = mu * v + step
        th = th - eta * D * v
    # at step 0 f_lin = f: the same test loss as the network's
    check(f"{name} step 0 test loss", close(lin["test_loss"][0], g["test"]["loss"][0], 1e-12))
    print(f"{name}: width {width} param {param} eta {eta}: {len(rec)} records, final linearised loss {lin['loss'][-1]:.6g}, "
          f"network {g['train']['loss'][-1]:.6g}, rms(f - f_lin) {lin['rms_f_flin'][-1]:.3g}")


def main():
    files = sys.argv[1:]
    ref = None
    for path in files:
        with h5py.File(path, "r") as f:
            deck = deck_of(f)
            names = sorted(f["runs"])
            check(f"{path}: runs", len(names) > 0)
            for name in names:
                check_run(f, deck, name)
            got = {n: {k: f["runs"][n]["linearized"][k][()] for k in f["runs"][n]["linearized"]} for n in names}
        if ref is None:
            ref = got
        else:
            for n in ref:
                for key in ref[n]:
                    check(f"{path} {n} {key} vs {files[0]}", close(got[n][key], ref[n][key], atol=1e-13) if key != "step"
                          else np.array_equal(got[n][key], ref[n][key]))
    summary_exit()


if __name__ == "__main__":
    main()
