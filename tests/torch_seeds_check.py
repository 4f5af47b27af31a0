#!/usr/bin/python3
"""PyTorch autograd check of swish/gelu/mish, the xent loss and fc batch norm (issue #18).

Usage: torch_seeds_check.py MPIEXEC PATH_TO_test_seeds_model RANKS...

For each rank count R runs `MPIEXEC -n R test_seeds_model FILE` (which itself checks against
central differences and the one-process computation), then rebuilds every case in torch float64
from its own layout (ntk parameterization, docs/conventions.md; batch norm = torch's train-mode
F.batch_norm over the whole batch; xent = F.cross_entropy on the labels of the one-hot targets) and
compares outputs, loss, gradient, J v (torch.autograd.functional.jvp), H v (hvp) and the
Gauss-Newton product J^T H_loss J v to 1e-10 relative. Last line: "N passed, N failed".
"""
import math
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from torch.autograd.functional import hvp, jvp, vjp

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)
TOL = 1e-10
ACTS = {"swish": F.silu, "gelu": lambda h: F.gelu(h, approximate="none"), "mish": F.mish, "tanh": torch.tanh}
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checklib import expect as check, summary_exit  # noqa: E402


def rel_err(a, b):
    d = float(torch.linalg.norm(a - b))
    s = max(float(torch.linalg.norm(a)), float(torch.linalg.norm(b)))
    return d / s if s > 1e-300 else d


def parse(path):
    with open(path) as fp:
        it = iter(fp.read().split("\n"))
    n = int(next(it).split()[1])
    cases = []
    for _ in range(n):
        t = next(it).split()
        assert t[0] == "case", t
        c = dict(act=t[1], lossk=t[2], bn=int(t[3]), eps=float(t[4]), P=int(t[5]), d=int(t[6]), n=int(t[7]), k=int(t[8]),
                 B=int(t[9]), sigma_w=float(t[10]), sigma_b=float(t[11]))
        for key in ("theta", "x", "y", "v", "f", "loss", "grad", "jv", "hv", "gv"):
            t = next(it).split()
            assert t[0] == key and int(t[1]) == len(t) - 2, (key, t[:2])
            c[key] = torch.tensor([float(v) for v in t[2:]])
        cases.append(c)
    return cases


def net(c):
    """f(theta) and loss(f) of our own layout: dense{l}.W, dense{l}.b, then bn{l}.gamma, .beta."""
    d, n, k, B = c["d"], c["n"], c["k"], c["B"]
    dims = [d, n, n, k]
    x = c["x"].view(B, d)
    y = c["y"].view(B, k)
    phi = ACTS[c["act"]]

    def f_of(theta):
        off, h = 0, x
        for l in range(3):
            n_in, n_out = dims[l], dims[l + 1]
            W = theta[off:off + n_out * n_in].view(n_out, n_in)
            off += n_out * n_in
            b = theta[off:off + n_out]
            off += n_out
            h = c["sigma_w"] / math.sqrt(n_in) * (h @ W.t()) + c["sigma_b"] * b
            if l < 2:
                if c["bn"]:
                    gamma = beta = None
                    if c["bn"] == 1:
                        gamma = theta[off:off + n_out]
                        beta = theta[off + n_out:off + 2 * n_out]
                        off += 2 * n_out
                    h = F.batch_norm(h, None, None, gamma, beta, training=True, eps=c["eps"])
                h = phi(h)
        assert off == c["P"], (off, c["P"])
        return h

    def loss_of(f):
        if c["lossk"] == "xent":
            return F.cross_entropy(f, y.argmax(dim=1), reduction="mean")
        return ((f - y) ** 2).sum() / (2 * B)

    return f_of, loss_of


def run(mpiexec, binary, ranks, tmp):
    path = os.path.join(tmp, "seeds_%d.txt" % ranks)
    r = subprocess.run([mpiexec, "--oversubscribe", "-n", str(ranks), binary, path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    print(r.stdout.strip().split("\n")[-2] if r.stdout.count("\n") >= 2 else r.stdout)
    check(r.returncode == 0, "%d ranks: test_seeds_model failed:\n%s" % (ranks, r.stdout))
    cases = parse(path)
    check(len(cases) == 24, "expected 24 cases, got %d" % len(cases))
    worst = 0.0
    for c in cases:
        tag = "%d ranks %s %s bn=%d" % (ranks, c["act"], c["lossk"], c["bn"])
        f_of, loss_of = net(c)
        theta, v = c["theta"].clone(), c["v"]
        f = f_of(theta)
        th = theta.clone().requires_grad_(True)
        L = loss_of(f_of(th))
        (g,) = torch.autograd.grad(L, th)
        _, jv = jvp(f_of, theta, v)
        _, hv = hvp(lambda t: loss_of(f_of(t)), theta, v)
        _, hl_jv = hvp(loss_of, f.detach(), jv)  # H_loss (J v) in output space
        _, gv = vjp(f_of, theta, hl_jv)
        errs = dict(f=rel_err(f.detach().reshape(-1), c["f"]), loss=abs(float(L) - float(c["loss"][0])) / abs(float(L)),
                    grad=rel_err(g, c["grad"]), jv=rel_err(jv.reshape(-1), c["jv"]), hv=rel_err(hv, c["hv"]), gv=rel_err(gv, c["gv"]))
        for key, e in errs.items():
            check(math.isfinite(e) and e < TOL, "%s: %s rel err %.3g" % (tag, key, e))
        check(all(torch.isfinite(c[key]).all() for key in ("f", "grad", "hv", "gv")), "%s: non-finite values" % tag)
        # The Hessian is not its Gauss-Newton part (the residual term is there) and the loss's own
        # second derivative matters: for xent G v differs from J^T J v / N.
        check(rel_err(c["hv"], c["gv"]) > 1e-6, "%s: H v equals G v" % tag)
        worst = max(worst, max(errs.values()))
    print("%d ranks: 24 cases, worst rel err against torch %.2e" % (ranks, worst))


def main():
    if len(sys.argv) < 4:
        sys.exit("usage: torch_seeds_check.py MPIEXEC PATH_TO_test_seeds_model RANKS...")
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in sys.argv[3:]:
            run(sys.argv[1], sys.argv[2], int(ranks), tmp)
    summary_exit()


if __name__ == "__main__":
    main()
