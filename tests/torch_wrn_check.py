#!/usr/bin/python3
"""Checks the C Wide ResNet (src/core/model.c ARCH_WRN) against PyTorch autograd on the same
weights.

Usage: torch_wrn_check.py PATH_TO_test_torch_wrn

Runs the C helper, which writes config, theta, batch, outputs, loss, gradient and one JVP for WRNs
with and without batch norm in every parameterization; rebuilds each net in torch float64 from its
OWN description (pre-activation WRN-d-k, docs/conventions.md multipliers with fan_in = C_in*kh*kw,
torch.nn.functional.conv2d / batch_norm(training=True) / mean pooling / linear), taking from the
C file only the offsets of the named tensors in theta, and asserts outputs, loss, gradient (whole
and per tensor) and J v agree to 1e-10 relative; the C multipliers and learning-rate scales are
compared with the table too. Last line: "N passed, N failed".
"""
import math
import sys

import torch
import torch.nn.functional as F

from checklib import expect as check, rel_err, summary, read_tensor_table, read_arrays, helper_cases, autograd_errors

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)
TOL = 1e-10
def parse(path):
    with open(path) as fp:
        it = iter(fp.read().split("\n"))
    cases = []
    for _ in range(int(next(it).split()[1])):
        t = next(it).split()
        assert t[0] == "case", t
        c = dict(act=t[1], param=t[2], bias=int(t[3]), bn=int(t[4]), eps=float(t[5]), depth=int(t[6]), k=int(t[7]),
                 C=int(t[8]), H=int(t[9]), W=int(t[10]), k_out=int(t[11]), B=int(t[12]), sigma_w=float(t[13]),
                 sigma_b=float(t[14]), base_width=int(t[15]))
        c["tensors"] = read_tensor_table(it)
        c.update(read_arrays(it, ("theta", "x", "y", "f", "loss", "grad", "v", "jv")))
        cases.append(c)
    return cases


def spec(c):
    """Our own WRN: the list of tensors (name, shape, fan_in, kind) in building order."""
    n, k = (c["depth"] - 4) // 6, c["k"]
    out = []

    def conv(name, cin, cout, ks, bias, kind):
        out.append((name + ".W", (cout, cin, ks, ks), cin * ks * ks, kind))
        if bias:
            out.append((name + ".b", (cout,), cin * ks * ks, "bias"))

    def bn(name, ch):
        if c["bn"]:
            out.append((name + ".gamma", (ch,), ch, "gamma"))
            out.append((name + ".beta", (ch,), ch, "beta"))

    conv("conv0", c["C"], 16, 3, c["bias"], "input")
    cin = 16
    for g in (1, 2, 3):
        cg = 16 * k * 2 ** (g - 1)
        for b in range(n):
            s = 2 if b == 0 and g > 1 else 1
            pre = "block%d.%d" % (g, b)
            bn(pre + ".bn1", cin)
            conv(pre + ".conv1", cin, cg, 3, c["bias"], "hidden")
            bn(pre + ".bn2", cg)
            conv(pre + ".conv2", cg, cg, 3, c["bias"], "hidden")
            if cg != cin or s != 1:
                conv(pre + ".shortcut", cin, cg, 1, False, "hidden")
            cin = cg
    bn("bn", cin)
    out.append(("fc.W", (c["k_out"], cin), cin, "output"))
    if c["bias"]:
        out.append(("fc.b", (c["k_out"],), cin, "bias"))
    return out


def table(c, kind, fan_in):
    """(mult, lr_scale) of docs/conventions.md; BN gamma/beta plain, trained like biases under muP."""
    ntk, r = c["param"] == "ntk", (c["k"] / c["base_width"] if c["param"] == "mup" else 1.0)
    if kind in ("input", "hidden", "output"):
        mult = c["sigma_w"] / math.sqrt(fan_in) if ntk else 1.0
        lr = {"input": r, "hidden": 1.0, "output": 1.0 / r}[kind] if c["param"] == "mup" else 1.0
        return mult, lr
    if kind == "bias":
        return (c["sigma_b"] if ntk else 1.0), r
    return 1.0, r


def network(c, theta, x):
    T = {name: theta[c["tensors"][name]["offset"]:c["tensors"][name]["offset"] + math.prod(shape)].view(shape)
         for name, shape, _, _ in spec(c)}
    M = {name: table(c, kind, fan)[0] for name, _, fan, kind in spec(c)}
    n, k = (c["depth"] - 4) // 6, c["k"]

    def conv(h, name, stride, pad):
        b = T.get(name + ".b")
        return F.conv2d(h, M[name + ".W"] * T[name + ".W"], None if b is None else M[name + ".b"] * b, stride=stride,
                        padding=pad)

    def bn_relu(h, name):
        if c["bn"]:
            h = F.batch_norm(h, None, None, T[name + ".gamma"], T[name + ".beta"], training=True, eps=c["eps"])
        return torch.relu(h)

    h = conv(x, "conv0", 1, 1)
    cin = 16
    for g in (1, 2, 3):
        cg = 16 * k * 2 ** (g - 1)
        for b in range(n):
            s = 2 if b == 0 and g > 1 else 1
            pre = "block%d.%d" % (g, b)
            a = bn_relu(h, pre + ".bn1")
            y = conv(a, pre + ".conv1", s, 1)
            y = conv(bn_relu(y, pre + ".bn2"), pre + ".conv2", 1, 1)
            h = y + (conv(a, pre + ".shortcut", s, 0) if cg != cin or s != 1 else h)
            cin = cg
    h = bn_relu(h, "bn").mean(dim=(2, 3))
    f = M["fc.W"] * h @ T["fc.W"].t()
    if "fc.b" in T:
        f = f + M["fc.b"] * T["fc.b"]
    return f


def main():
    cases = helper_cases(sys.argv, "test_torch_wrn", parse)
    check(len(cases) == 8, "expected 8 cases, got %d" % len(cases))
    for c in cases:
        tag = "WRN-%d-%d %s bn=%d bias=%d" % (c["depth"], c["k"], c["param"], c["bn"], c["bias"])
        sp = spec(c)
        P = sum(math.prod(s) for _, s, _, _ in sp)
        check(len(c["theta"]) == P and set(c["tensors"]) == {s[0] for s in sp},
              "%s: C tensors differ from the WRN spec (P %d vs %d)" % (tag, len(c["theta"]), P))
        ok = True
        for name, shape, fan, kind in sp:
            ct = c["tensors"].get(name)
            mult, lr = table(c, kind, fan)
            ok = ok and ct is not None and ct["size"] == math.prod(shape) and ct["mult"] == mult and ct["lr"] == lr
            ok = ok and (ct["fan_in"] == fan if kind != "gamma" and kind != "beta" else True)
        check(ok, "%s: C parameter table (sizes, fan_in, multipliers, lr scales) differs from docs/conventions.md" % tag)
        B = c["B"]
        x = c["x"].view(B, c["C"], c["H"], c["W"])
        e_f, e_l, e_g, e_jv, grad, loss = autograd_errors(c, network, x)
        worst = max(rel_err(grad[t["offset"]:t["offset"] + t["size"]], c["grad"][t["offset"]:t["offset"] + t["size"]])
                    for name, t in c["tensors"].items()
                    if float(torch.linalg.norm(grad[t["offset"]:t["offset"] + t["size"]])) > 1e-12 * float(torch.linalg.norm(grad)))
        check(e_f < TOL, "%s: outputs rel err %.3g" % (tag, e_f))
        check(e_l < TOL, "%s: loss rel err %.3g" % (tag, e_l))
        check(e_g < TOL, "%s: gradient rel err %.3g" % (tag, e_g))
        check(worst < 1e-8, "%s: worst per-tensor gradient rel err %.3g" % (tag, worst))
        check(e_jv < TOL, "%s: J v rel err %.3g" % (tag, e_jv))
        print("%-30s P %6d loss %.6f  rel err f %.1e loss %.1e grad %.1e per-tensor %.1e jv %.1e" %
              (tag, P, loss, e_f, e_l, e_g, worst, e_jv))
    sys.exit(summary())


if __name__ == "__main__":
    main()
