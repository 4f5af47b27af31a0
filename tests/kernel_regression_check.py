"""Kernel regression in discrete time (src/app/kernel_regression.c) against gradient descent on an
explicitly linearised finite net whose kernel is frozen (tests/infinite_width.cmake).

The net: a 2-hidden-layer tanh MLP in the ntk parameterization, scalar output, built in PyTorch;
J = df(x)/dtheta at theta_0 for every training and test sample (autograd, one sample at a time).
The linearised model has k = 3 outputs, each its own copy of the parameters started at theta_0:
f_lin,o(x) = f(x; theta_0) + J(x) (theta_o - theta_0), so its NTK is Theta_0 (x) I_3 with
Theta_0 = J J^T / N. Numpy runs gradient descent on it, theta_o <- theta_o - eta_t J^T (f_o - y_o) / N
(the MSE (1/2N) sum |f - y|^2), step by step, and records the train and test loss and accuracy at
the recorded steps. The driver (test_kernel_inf kreg) gets G = J J^T, C = J* J^T and the targets
y - f(theta_0) (its f_0 = 0; f(x; theta_0) is the same for every output, so the argmax and the
losses are the linearised model's) and must agree to 1e-10 relative, at each rank count given, for a
lazy rate, a step-decay schedule and a divergent rate (stopped by -diverge_factor at the same
record). KREG_N sets N (24 by default: the eigenvectors come from SLEPc's pdsyev path at
every rank count; 160: from pdsyevd at 1 and 4 ranks). Also: the spectrum against numpy's eigvalsh, the Cholesky predictor against numpy's solve,
and the losses expected over a Gaussian prior on f_0 (kreg_setup_prior) against numpy's explicit
linear maps of gradient descent, to 1e-10.

usage: kernel_regression_check.py DRIVER MPIEXEC NP [NP ...]"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
driver, mpiexec = sys.argv[1:3]
nps = [int(a) for a in sys.argv[3:]]
tmp = tempfile.mkdtemp()
N, M, K, d, n = int(os.environ.get("KREG_N", "24")), 10, 3, 5, 48
g = torch.Generator().manual_seed(7)
W1, W2, w3 = (torch.randn(n, d, generator=g), torch.randn(n, n, generator=g), torch.randn(n, generator=g))
b1, b2 = torch.randn(n, generator=g), torch.randn(n, generator=g)
params = [W1, b1, W2, b2, w3]


def net(x, p):
    W1, b1, W2, b2, w3 = p
    h = torch.tanh(W1 @ x / d ** 0.5 + 0.1 * b1)
    h = torch.tanh(W2 @ h / n ** 0.5 + 0.1 * b2)
    return w3 @ h / n ** 0.5


X = torch.randn(N + M, d, generator=g)
J, f0 = [], []
for i in range(N + M):
    p = [q.clone().requires_grad_(True) for q in params]
    out = net(X[i], p)
    grads = torch.autograd.grad(out, p)
    J.append(torch.cat([q.reshape(-1) for q in grads]).numpy())
    f0.append(out.item())
J, f0 = np.array(J), np.array(f0)
Jtr, Jte = J[:N], J[N:]
labels = np.random.default_rng(3).integers(0, K, N + M)
Y = np.eye(K)[labels]
G, C = Jtr @ Jtr.T, Jte @ Jtr.T
lam0 = np.linalg.eigvalsh(G / N)[-1]
# The prior: f_0 ~ GP(0, Kp) per output, Kp a PSD matrix over train and test samples.
Z = np.random.default_rng(5).standard_normal((N + M, N + M + 3))
Kp = Z @ Z.T / Z.shape[1]
failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL:", msg)


def lr_at(eta, t, sched, gamma):
    return eta * (gamma ** (t // 3) if sched else 1.0)


def gd(eta, steps, rec, tev, sched, gamma, divf):
    """Gradient descent on the linearised model: the records (step, loss, acc) of train and test."""
    theta = np.zeros((K, J.shape[1]))  # theta_o - theta_0
    tr, te = [], []
    loss0 = None
    for t in range(steps + 1):
        ftr = f0[:N, None] + Jtr @ theta.T
        fte = f0[N:, None] + Jte @ theta.T
        final = t == steps
        rt = final or t % rec == 0
        rte = final or (t % tev == 0 if tev > 0 else t == 0)
        if rt or rte:
            l = ((ftr - Y[:N]) ** 2).sum() / (2 * N)
            if t == 0:
                loss0 = l
            if rt:
                tr.append((t, l, (ftr.argmax(1) == labels[:N]).mean(), lr_at(eta, t, sched, gamma)))
            if rte:
                te.append((t, ((fte - Y[N:]) ** 2).sum() / (2 * M), (fte.argmax(1) == labels[N:]).mean()))
            if not np.isfinite(l) or l > divf * loss0:
                return tr, te, 1, t
        if final:
            return tr, te, 0, t
        theta -= lr_at(eta, t, sched, gamma) * ((ftr - Y[:N]).T @ Jtr) / N


def prior_expected(eta, steps, rec, tev, sched, gamma, n_tr, n_te):
    """The losses expected over f_0 ~ GP(0, Kp) (each output), added to the targets' f_0 = 0 run, by
    explicit linear maps, step by step: train f_t - y = A_t (f_0 - y), A_{t+1} = (I - eta_t G / N) A_t;
    test f*_t - y* = (f*_0 - y*) - B_t (f_0 - y), B_{t+1} = B_t + eta_t C A_t / N. Exact expectations:
    |mean|^2 + K tr(A Kp A^T) and |mean|^2 + K tr(Kp** - 2 B Kp_X* + B Kp B^T)."""
    y, ys = Y[:N] - f0[:N, None], Y[N:] - f0[N:, None]
    Kx, Kxs, Kss = Kp[:N, :N], Kp[:N, N:], Kp[N:, N:]
    A, B = np.eye(N), np.zeros((M, N))
    tr, te = [], []
    for t in range(steps + 1):
        final = t == steps
        if final or t % rec == 0:
            mean = A @ (-y)
            tr.append(((mean ** 2).sum() + K * np.trace(A @ Kx @ A.T)) / (2 * N))
        if final or (t % tev == 0 if tev > 0 else t == 0):
            mean = -ys + B @ y
            te.append(((mean ** 2).sum() + K * (np.trace(Kss) - 2 * np.trace(B @ Kxs) + np.trace(B @ Kx @ B.T))) / (2 * M))
        if final:
            break
        lr = lr_at(eta, t, sched, gamma)
        B = B + lr * C @ A / N
        A = A - lr * G @ A / N
    return tr[:n_tr], te[:n_te]


def run_driver(np_, eta, steps, rec, tev, sched, gamma, divf):
    inp, out = "%s/kreg.bin" % tmp, "%s/kreg_%d.txt" % (tmp, np_)
    with open(inp, "wb") as f:
        np.array([N, M, K, steps, rec, tev, sched], dtype=np.int32).tofile(f)
        np.array([eta, gamma, divf]).tofile(f)
        G.tofile(f), C.tofile(f)
        (Y[:N] - f0[:N, None]).tofile(f), (Y[N:] - f0[N:, None]).tofile(f)
        labels[:N].astype(np.int32).tofile(f), labels[N:].astype(np.int32).tofile(f)
        Kp[:N, :N].tofile(f), np.ascontiguousarray(Kp[N:, :N]).tofile(f), np.array([np.trace(Kp[N:, N:])]).tofile(f)
    subprocess.run([mpiexec, "--oversubscribe", "-n", str(np_), driver, "kreg", inp, out], check=True)
    rows = {"train": [], "test": [], "prior_train": [], "prior_test": []}
    for line in open(out):
        w = line.split()
        if w[0] in rows:
            rows[w[0]].append(tuple(float(v) for v in w[1:]))
        elif w[0] == "conv":
            conv = [float(v) for v in w[1:]]
        elif w[0] == "spectrum":
            spec = np.array([float(v) for v in w[1:]])
        elif w[0] == "diverged":
            div, done = int(w[1]), int(w[3])
    return rows, conv, spec, div, done


def close(a, b, tol=1e-10):
    return abs(a - b) <= tol * max(1.0, abs(b)) or (np.isnan(a) and np.isnan(b))


cases = [("lazy, eta lambda_0 = 1.5", 1.5 / lam0, 25, 2, 5, 0, 1.0, 1e6),
         ("step decay, eta lambda_0 = 1.9, gamma 0.5", 1.9 / lam0, 17, 1, 4, 1, 0.5, 1e6),
         ("divergent, eta lambda_0 = 2.3", 2.3 / lam0, 200, 3, 10, 0, 1.0, 1e3)]
for name, eta, steps, rec, tev, sched, gamma, divf in cases:
    tr, te, div, done = gd(eta, steps, rec, tev, sched, gamma, divf)
    for np_ in nps:
        rows, conv, spec, kdiv, kdone = run_driver(np_, eta, steps, rec, tev, sched, gamma, divf)
        tag = "%s, %d ranks" % (name, np_)
        if (kdiv, kdone) != (div, done):
            fail("%s: diverged/steps %s, gradient descent %s" % (tag, (kdiv, kdone), (div, done)))
        if len(rows["train"]) != len(tr) or len(rows["test"]) != len(te):
            fail("%s: %d/%d records, gradient descent %d/%d" % (tag, len(rows["train"]), len(rows["test"]), len(tr), len(te)))
            continue
        worst = 0.0
        for a, b in list(zip(rows["train"], tr)) + list(zip(rows["test"], te)):
            if a[0] != b[0]:
                fail("%s: step %s vs %s" % (tag, a[0], b[0]))
            for u, v in zip(a[1:], b[1:]):
                if not np.all(np.isfinite([u, v])):
                    fail("%s: non-finite record %s %s" % (tag, a, b))
                worst = max(worst, abs(u - v) / max(1.0, abs(v)))
                if not close(u, v):
                    fail("%s: step %d: kernel regression %r, gradient descent %r" % (tag, a[0], u, v))
        ev = np.sort(np.linalg.eigvalsh(G / N))[::-1]
        if np.abs(spec - ev).max() > 1e-10 * ev[0]:
            fail("%s: spectrum off by %g" % (tag, np.abs(spec - ev).max()))
        alpha = np.linalg.solve(G, Y[:N] - f0[:N, None])
        fte = f0[N:, None] + C @ alpha
        cl = ((fte - Y[N:]) ** 2).sum() / (2 * M)
        ca = (fte.argmax(1) == labels[N:]).mean()
        if not (close(conv[2], cl, 1e-8) and conv[3] == ca and conv[0] < 1e-16 and conv[1] == 1.0):
            fail("%s: converged predictor %s, numpy test loss %r acc %r" % (tag, conv, cl, ca))
        ptr, pte = prior_expected(eta, steps, rec, tev, sched, gamma, len(tr), len(te))
        kp = [v for _, v in rows["prior_train"]], [v for _, v in rows["prior_test"]]
        pworst = 0.0
        if [r[0] for r in rows["prior_train"]] != [r[0] for r in tr] or [r[0] for r in rows["prior_test"]] != [r[0] for r in te]:
            fail("%s: prior records at other steps" % tag)
        for u, v in list(zip(kp[0], ptr)) + list(zip(kp[1], pte)):
            pworst = max(pworst, abs(u - v) / max(1.0, abs(v)))
            if not close(u, v) or not np.isfinite(v):
                fail("%s: prior-expected loss %r, numpy %r" % (tag, u, v))
        print("%s: %d train and %d test records, worst relative difference %.2e (prior-expected losses %.2e); lambda_0 %.6g"
              % (tag, len(tr), len(te), worst, pworst, spec[0]))
import shutil
shutil.rmtree(tmp)
print("kernel regression vs linearised gradient descent: %s" % ("FAILED" if failures else "ok"))
sys.exit(1 if failures else 0)
