#!/usr/bin/python3
"""Checks the C FC network (src/core/model.c) against PyTorch autograd on the same weights.

Usage: torch_fc_check.py PATH_TO_test_torch_fc

Runs the C helper, which writes config, theta, batch, loss and gradient for every activation x
parameterization x bias; rebuilds each net in torch float64 from the flat theta using its OWN
layout and multipliers (docs/conventions.md table, not the C table: the C table is only compared),
and asserts loss, outputs and gradient agree to 1e-10 relative. Last line: "N passed, N failed".
"""
import math
import sys

import torch

from checklib import expect as check, rel_err, summary, read_arrays, helper_cases

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)
TOL = 1e-10
ACTS = {"identity": lambda h: h, "relu": torch.relu, "tanh": torch.tanh, "erf": torch.erf,
        "swish": torch.nn.functional.silu, "gelu": lambda h: torch.nn.functional.gelu(h, approximate="none"),
        "mish": torch.nn.functional.mish}

def parse(path):
    with open(path) as fp:
        lines = fp.read().split("\n")
    it = iter(lines)
    n_cases = int(next(it).split()[1])
    cases = []
    for _ in range(n_cases):
        t = next(it).split()
        assert t[0] == "case", t
        c = dict(act=t[1], param=t[2], bias=int(t[3]), d=int(t[4]), n=int(t[5]), depth=int(t[6]),
                 k=int(t[7]), B=int(t[8]), sigma_w=float(t[9]), sigma_b=float(t[10]),
                 base_width=int(t[11]))
        n_t = int(next(it).split()[1])
        c["tensors"] = []
        for _ in range(n_t):
            t = next(it).split()
            c["tensors"].append((t[1], int(t[2]), int(t[3]), int(t[4]), float(t[5])))
        c.update(read_arrays(it, ("theta", "x", "y", "f", "loss", "grad")))
        cases.append(c)
    return cases


def layout(c):
    """Our own parameter table: (name, offset, n_out, n_in, mult) per tensor, W row-major."""
    d, n, k, L = c["d"], c["n"], c["k"], c["depth"]
    dims = [d] + [n] * L + [k]
    table, off = [], 0
    for l in range(L + 1):
        n_in, n_out = dims[l], dims[l + 1]
        ntk = c["param"] == "ntk"
        table.append(("dense%d.W" % l, off, n_out, n_in, c["sigma_w"] / math.sqrt(n_in) if ntk else 1.0))
        off += n_out * n_in
        if c["bias"]:
            table.append(("dense%d.b" % l, off, n_out, 1, c["sigma_b"] if ntk else 1.0))
            off += n_out
    return table, off


def torch_loss_grad(c, table):
    theta = c["theta"].clone().requires_grad_(True)
    B = c["B"]
    h = c["x"].view(B, c["d"])
    phi = ACTS[c["act"]]
    i = 0
    L = c["depth"]
    for l in range(L + 1):
        _, off, n_out, n_in, mw = table[i]
        W = theta[off:off + n_out * n_in].view(n_out, n_in)
        h = mw * (h @ W.t())
        i += 1
        if c["bias"]:
            _, off, n_out, _, mb = table[i]
            h = h + mb * theta[off:off + n_out]
            i += 1
        if l < L:
            h = phi(h)
    f = h
    loss = ((f - c["y"].view(B, c["k"])) ** 2).sum() / (2 * B)
    loss.backward()
    return f.detach().reshape(-1), loss.detach(), theta.grad


def main():
    cases = helper_cases(sys.argv, "test_torch_fc", parse)
    check(len(cases) == 6 * len(ACTS), "expected %d cases, got %d" % (6 * len(ACTS), len(cases)))
    seen = set()
    for c in cases:
        tag = "%s %s bias=%d" % (c["act"], c["param"], c["bias"])
        seen.add((c["act"], c["param"], c["bias"]))
        table, P = layout(c)
        check(len(c["theta"]) == P and len(c["grad"]) == P, "%s: P %d, want %d" % (tag, len(c["theta"]), P))
        ok = len(table) == len(c["tensors"])
        for (name, off, n_out, n_in, mult), (cname, coff, csize, cfan, cmult) in zip(table, c["tensors"]):
            ok = ok and name == cname and off == coff and n_out * n_in == csize and mult == cmult
            ok = ok and (cfan == n_in if name.endswith(".W") else True)
        check(ok, "%s: C parameter table differs from the docs/conventions.md layout" % tag)
        f, loss, grad = torch_loss_grad(c, table)
        e_f = rel_err(f, c["f"])
        e_loss = abs(float(loss) - float(c["loss"][0])) / abs(float(loss))
        e_g = rel_err(grad, c["grad"])
        check(e_f < TOL, "%s: outputs rel err %.3g" % (tag, e_f))
        check(e_loss < TOL, "%s: loss rel err %.3g" % (tag, e_loss))
        check(e_g < TOL, "%s: gradient rel err %.3g" % (tag, e_g))
        # Every tensor's gradient block, so a small tensor (a bias) cannot hide under a big one.
        worst = 0.0
        for name, off, n_out, n_in, _ in table:
            sl = slice(off, off + n_out * n_in)
            worst = max(worst, rel_err(grad[sl], c["grad"][sl]))
        check(worst < TOL, "%s: worst per-tensor rel err %.3g" % (tag, worst))
        print("%-22s loss %.6f  rel err f %.1e loss %.1e grad %.1e per-tensor %.1e" % (tag, float(loss), e_f, e_loss, e_g, worst))
    check(len(seen) == 6 * len(ACTS), "missing combinations: %d distinct" % len(seen))
    sys.exit(summary())


if __name__ == "__main__":
    main()
