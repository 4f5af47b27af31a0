#!/usr/bin/python3
"""Checks of ntkhpc outputs for issue #18 (tests/test_seeds_runs.sh). Each mode prints its numbers
and exits 1 on a failed check.

  xent FILE                 /config and /summary say the loss; losses finite, the loss decreases
  freeze FILE               features/w_change_rel of the frozen readout is exactly 0, the others > 0
  exp FILE ETA FACTOR       train/lr = eta factor^t (1e-14 relative)
  onecycle FILE ETA STEPS PCT DIV FDIV   train/lr = torch.optim.lr_scheduler.OneCycleLR's rates
  peak FILE                 loss_peak/ equals the maximum of train/loss (record_every 1), and it is a spike
  same A B TOL              train/loss (and lambda/value when both have it) agree to TOL relative
  liarora A B ALPHA TOL     the Li-Arora pair: the same train/loss, and eta_t lambda_t the same up to
                            alpha (lambda_B(t) = alpha^2t lambda_A(t), eta_B(t) = eta alpha^(-2t-1))
"""
import sys

import h5py
import numpy as np


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def run0(path):
    return h5py.File(path, "r")["runs/run_000000"]


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "xent":
        f = h5py.File(path, "r")
        loss_attr = f["config"].attrs["loss"]
        theory = f["summary"].attrs["phase_theory"]
        loss = f["runs/run_000000/train/loss"][:]
        print("loss attr %s, phase_theory '%s', train loss %.6f -> %.6f" % (loss_attr, theory, loss[0], loss[-1]))
        if loss_attr != b"xent" or b"MSE theory" not in theory:
            fail("loss not recorded")
        if not np.all(np.isfinite(loss)) or not loss[-1] < loss[0]:
            fail("xent loss not finite or not decreasing")
    elif mode == "freeze":
        w = run0(path)["features/w_change_rel"][:]
        print("w_change_rel at the last record:", w[-1])
        if not np.all(w[:, -1] == 0.0) or not np.all(w[1:, :-1] > 0):
            fail("frozen readout moved, or a trained layer did not")
    elif mode == "exp":
        eta, fac = float(sys.argv[3]), float(sys.argv[4])
        r = run0(path)
        lr, t = r["train/lr"][:], r["train/step"][:]
        want = eta * fac ** t.astype(float)
        err = np.max(np.abs(lr - want) / want)
        print("exp schedule: %d steps, max rel err %.2e" % (len(t), err))
        if not err < 1e-14:
            fail("exp schedule")
    elif mode == "onecycle":
        import torch
        eta, steps, pct, div, fdiv = float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=eta)
        sch = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=eta, total_steps=steps, pct_start=pct, div_factor=div,
                                                  final_div_factor=fdiv, anneal_strategy="cos", cycle_momentum=False)
        want = []
        for _ in range(steps):
            want.append(opt.param_groups[0]["lr"])
            opt.step()
            sch.step()
        r = run0(path)
        lr, t = r["train/lr"][:], r["train/step"][:]
        t, lr = t[t < steps], lr[t < steps]
        err = np.max(np.abs(lr - np.array(want)[t]) / np.array(want)[t])
        print("onecycle vs torch OneCycleLR: %d steps, max rel err %.2e" % (len(t), err))
        if not err < 1e-12:
            fail("onecycle schedule")
    elif mode == "same":
        tol = float(sys.argv[4])
        a, b = run0(path), run0(sys.argv[3])
        la, lb = a["train/loss"][:], b["train/loss"][:]
        err = np.max(np.abs(la - lb) / np.abs(la))
        msg = "train loss: %d steps, max rel diff %.2e" % (len(la), err)
        if "lambda" in a and "lambda" in b:
            ka, kb = a["lambda/value"][:], b["lambda/value"][:]
            ok = np.isfinite(ka)
            e2 = np.max(np.abs(ka[ok] - kb[ok]) / np.abs(ka[ok])) if ok.any() else 0.0
            msg += ", lambda: %d values, max rel diff %.2e" % (ok.sum(), e2)
            err = max(err, e2)
        print(msg)
        if not (np.all(np.isfinite(la)) and err < tol):
            fail("runs differ")
    elif mode == "liarora":
        alpha, tol = float(sys.argv[4]), float(sys.argv[5])
        a, b = run0(path), run0(sys.argv[3])
        la, lb = a["train/loss"][:], b["train/loss"][:]
        err = np.max(np.abs(la - lb) / np.abs(la))
        ka, kb, ks = a["lambda/value"][:], b["lambda/value"][:], a["lambda/step"][:]
        lr_a, lr_b = a["train/lr"][:][ks], b["train/lr"][:][ks]
        e2 = np.max(np.abs(lr_a * ka - alpha * lr_b * kb) / np.abs(lr_a * ka))
        print("Li-Arora pair: train loss %d steps, max rel diff %.2e; eta*lambda (A) vs alpha*eta_t*lambda (B) at %d steps %.2e; "
              "lambda_B/lambda_A at the end %.6f" % (len(la), err, len(ks), e2, kb[-1] / ka[-1]))
        if not (np.all(np.isfinite(la)) and err < tol and e2 < 1e3 * tol):
            fail("Li-Arora pair differs")
        # scale_inv/: the same angular updates; eff_lr_B = eta alpha^(-2t-1) / (alpha^-2t |theta_A|^2) = eff_lr_A / alpha
        ang_a, ang_b = a["scale_inv/angle"][1:], b["scale_inv/angle"][1:]
        ea = np.max(np.abs(ang_a - ang_b)[:, :-1] / ang_a[:, :-1])
        eff_a, eff_b = a["scale_inv/eff_lr"][:, :-1], b["scale_inv/eff_lr"][:, :-1]
        ee = np.max(np.abs(eff_a - alpha * eff_b) / eff_a)
        frozen_ok = np.all(a["scale_inv/angle"][1:, -1] == 0) and np.all(b["scale_inv/eff_lr"][:, -1] == 0)
        first_nan = np.all(np.isnan(a["scale_inv/angle"][0]))
        print("scale_inv: angular updates A vs B max rel diff %.2e, eff_lr A vs alpha * eff_lr B %.2e (angle ~%.2e rad/step)"
              % (ea, ee, np.mean(ang_a[:, :-1])))
        if not (ea < 1e-8 and ee < 1e-8 and frozen_ok and first_nan):
            fail("scale_inv of the Li-Arora pair")
    elif mode == "peak":
        r = run0(path)
        loss, steps = r["train/loss"][:], r["train/step"][:]
        i = int(np.argmax(loss))
        got = (int(r["loss_peak/peak_step"][0]), float(r["loss_peak/peak_loss"][0]), float(r["loss_peak/loss0"][0]))
        print("loss peak: step %d value %.6g (train/ argmax: step %d value %.6g), L0 %.6g, ratio %.4f" %
              (got[0], got[1], steps[i], loss[i], got[2], float(r["loss_peak/peak_ratio"][0])))
        if not (got[0] == steps[i] and got[1] == loss[i] and got[2] == loss[0] and got[1] > loss[0]):
            fail("loss peak differs from the train records' maximum (or no spike)")
    else:
        fail("unknown mode " + mode)


if __name__ == "__main__":
    main()
