#!/usr/bin/python3
"""Checks the C plain CNN (src/core/model.c ARCH_CNN) against PyTorch autograd on the same weights.

Usage: torch_cnn_check.py PATH_TO_test_cnn

Runs `test_cnn FILE`, which writes small CNNs (relu, tanh, gelu; ntk, sp, mup, abc; with and without
biases; depths 1 to 3; non-square images), their parameters, a batch, outputs, loss, gradient and
one JVP. Rebuilds each net in torch float64 from its OWN description (depth x [conv3x3 stride 1
padding 1, act], mean over the pixels, linear; the docs/conventions.md multipliers: ntk
sigma_w / sqrt(fan_in) with fan_in = 9 C_in for a conv, sigma_b for biases; the abc
parameterizations r^-a with r = width / base_width), taking from the C file only the offsets of the
named tensors in theta (and, for -params abc, the exponents of the deck), and asserts outputs,
loss, gradient and J v agree to 1e-12 relative, and the C multipliers and learning-rate scales
equal the table's. Last line: "N passed, N failed".
"""
import math
import sys

import torch
import torch.nn.functional as F

from checklib import expect as check, rel_err, summary_exit, read_tensor_table, read_arrays, helper_cases, autograd_errors

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)
TOL = 1e-12
PRESETS = {"sp": [[0, 0, 0], [0, 0.5, 0], [0, 0.5, 0], [0, 0, 0]], "mup": [[0, 0, -1], [0, 0.5, 0], [0, 1, 1], [0, 0, -1]]}
ACTS = {"relu": torch.relu, "tanh": torch.tanh, "gelu": lambda h: h * 0.5 * (1 + torch.erf(h / math.sqrt(2)))}


def parse(path):
    with open(path) as fp:
        it = iter(fp.read().split("\n"))
    cases = []
    for _ in range(int(next(it).split()[1])):
        t = next(it).split()
        assert t[0] == "case", t
        c = dict(act=t[1], param=t[2], bias=int(t[3]), depth=int(t[4]), n=int(t[5]), C=int(t[6]), H=int(t[7]), W=int(t[8]),
                 k_out=int(t[9]), B=int(t[10]), sigma_w=float(t[11]), sigma_b=float(t[12]), base_width=int(t[13]))
        t = next(it).split()
        assert t[0] == "abc" and len(t) == 13, t
        c["abc"] = [[float(v) for v in t[1 + 3 * k:4 + 3 * k]] for k in range(4)]
        c["tensors"] = read_tensor_table(it)
        c.update(read_arrays(it, ("theta", "x", "y", "f", "loss", "grad", "v", "jv")))
        cases.append(c)
    return cases


def spec(c):
    """Our own CNN: the tensors (name, shape, fan_in, kind) in building order."""
    out, cin = [], c["C"]
    for l in range(c["depth"]):
        out.append(("conv%d.W" % l, (c["n"], cin, 3, 3), 9 * cin, "input" if l == 0 else "hidden"))
        if c["bias"]:
            out.append(("conv%d.b" % l, (c["n"],), 9 * cin, "bias"))
        cin = c["n"]
    out.append(("fc.W", (c["k_out"], cin), cin, "output"))
    if c["bias"]:
        out.append(("fc.b", (c["k_out"],), cin, "bias"))
    return out


def table(c, kind, fan_in):
    """(mult, lr_scale): ntk sigma_w / sqrt(fan_in) and sigma_b, lr 1; otherwise r^-a and r^-c of the layer kind's exponents."""
    if c["param"] == "ntk":
        return (c["sigma_b"] if kind == "bias" else c["sigma_w"] / math.sqrt(fan_in)), 1.0
    a, _, cc = (PRESETS.get(c["param"]) or c["abc"])[["input", "hidden", "output", "bias"].index(kind)]
    r = c["n"] / c["base_width"]
    return r ** -a, r ** -cc


def network(c, theta, x):
    sp = spec(c)
    T = {name: theta[c["tensors"][name]["offset"]:c["tensors"][name]["offset"] + math.prod(shape)].view(shape) for name, shape, _, _ in sp}
    M = {name: table(c, kind, fan)[0] for name, _, fan, kind in sp}
    h = x
    for l in range(c["depth"]):
        w, b = "conv%d.W" % l, "conv%d.b" % l
        h = ACTS[c["act"]](F.conv2d(h, M[w] * T[w], M[b] * T[b] if b in T else None, stride=1, padding=1))
    h = h.mean(dim=(2, 3))
    f = M["fc.W"] * h @ T["fc.W"].t()
    return f + M["fc.b"] * T["fc.b"] if "fc.b" in T else f


def main():
    cases = helper_cases(sys.argv, "test_cnn", parse)
    check(len(cases) == 5, "expected 5 cases, got %d" % len(cases))
    for c in cases:
        tag = "cnn %s %s depth %d width %d bias %d %dx%dx%d" % (c["act"], c["param"], c["depth"], c["n"], c["bias"], c["C"], c["H"], c["W"])
        if c["param"] in PRESETS:
            check(c["abc"] == PRESETS[c["param"]], "%s: exponents %s are not the preset's" % (tag, c["abc"]))
        sp = spec(c)
        P = sum(math.prod(s) for _, s, _, _ in sp)
        check(len(c["theta"]) == P and list(c["tensors"]) == [s[0] for s in sp],
              "%s: C tensors differ from the CNN spec (P %d vs %d)" % (tag, len(c["theta"]), P))
        ok = True
        for name, shape, fan, kind in sp:
            ct = c["tensors"].get(name)
            mult, lr = table(c, kind, fan)
            ok = ok and ct is not None and ct["size"] == math.prod(shape) and ct["fan_in"] == fan
            ok = ok and abs(ct["mult"] - mult) <= 1e-15 * mult and abs(ct["lr"] - lr) <= 1e-15 * lr
        check(ok, "%s: C parameter table (sizes, fan_in, multipliers, lr scales) differs from docs/conventions.md" % tag)
        B = c["B"]
        x = c["x"].view(B, c["C"], c["H"], c["W"])
        e_f, e_l, e_g, e_jv, _, loss = autograd_errors(c, network, x)
        finite = all(bool(torch.isfinite(c[k]).all()) for k in ("f", "grad", "jv"))
        check(finite and e_f < TOL, "%s: outputs rel err %.3g" % (tag, e_f))
        check(e_l < TOL, "%s: loss rel err %.3g" % (tag, e_l))
        check(e_g < TOL, "%s: gradient rel err %.3g" % (tag, e_g))
        check(e_jv < TOL, "%s: J v rel err %.3g" % (tag, e_jv))
        print("%-40s P %5d loss %.6f  rel err f %.1e loss %.1e grad %.1e jv %.1e" % (tag, P, loss, e_f, e_l, e_g, e_jv))
    summary_exit()


if __name__ == "__main__":
    main()
