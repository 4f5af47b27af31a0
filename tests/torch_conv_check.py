#!/usr/bin/python3
"""Checks the Wide-ResNet kernels (src/core/conv.c) against torch.nn.functional in float64.

Usage: torch_conv_check.py PATH_TO_test_conv

Runs `test_conv --dump FILE`, which writes inputs, parameters, tangents, cotangents and the C
results (forward, VJP, JVP and R-VJP) for several conv2d shapes, batch norm cases (computed by the
C side on two "ranks" with summed partial statistics) and a global average pool. Recomputes every
result with torch autograd:
  conv2d   F.conv2d(x, w_mult*W, b_mult*b, stride, padding)
  bn       F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
  pool     F.avg_pool2d(x, (H, W))
VJP = autograd.grad; JVP = autograd.functional.jvp; R-VJP = the JVP of the VJP map
(x, params, dout) -> (dx, dparams) along (tx, tparams, Rdout). Tolerance 1e-12 relative (norms).
Last line: "N passed, N failed".
"""
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from torch.autograd.functional import jvp

from checklib import expect as check, rel_err, summary

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)
TOL = 1e-12

def compare(name, ours, ref):
    e = rel_err(ours, ref)
    check(ours.numel() == ref.numel() and e < TOL, "%s: rel err %.3e" % (name, e))


def parse(path):
    cases = []
    with open(path) as fp:
        lines = fp.read().split("\n")
    i = 0
    while True:
        t = lines[i].split()
        i += 1
        if t[0] == "end":
            break
        assert t[0] == "case", t
        kind, hdr = t[1], t[2:]
        arrays = {}
        while i < len(lines) and lines[i] and not lines[i].startswith(("case", "end")):
            u = lines[i].split()
            assert int(u[1]) == len(u) - 2, u[:2]
            arrays[u[0]] = torch.tensor([float(v) for v in u[2:]])
            i += 1
        cases.append((kind, hdr, arrays))
    return cases


def conv_case(hdr, a):
    B, Ci, H, W, Co, kh, kw, st, pad = (int(v) for v in hdr[:9])
    wm, bm, bias = float(hdr[9]), float(hdr[10]), int(hdr[11])
    tag = "conv B=%d %dx%dx%d->%d k%dx%d s%d p%d bias=%d" % (B, Ci, H, W, Co, kh, kw, st, pad, bias)
    x = a["in"].reshape(B, Ci, H, W)
    Wt = a["W"].reshape(Co, Ci, kh, kw)
    b = a["b"] if bias else None

    def f(x, Wt, *bb):
        return F.conv2d(x, wm * Wt, bm * bb[0] if bb else None, stride=st, padding=pad)

    prim = (x, Wt) + ((b,) if bias else ())
    tang = (a["tin"].reshape(x.shape), a["tW"].reshape(Wt.shape)) + ((a["tb"],) if bias else ())
    y = f(*prim)
    compare(tag + " forward", a["y"], y)
    dout = a["dout"].reshape(y.shape)
    Rdout = a["Rdout"].reshape(y.shape)

    def vjp_map(*args):
        p, g = args[:-1], args[-1]
        p = [t.detach().requires_grad_(True) if not t.requires_grad else t for t in p]
        with torch.enable_grad():
            out = f(*p)
            return torch.autograd.grad(out, p, g, create_graph=True)

    grads = vjp_map(*prim, dout)
    compare(tag + " vjp din", a["dx"], grads[0])
    compare(tag + " vjp dW", a["dW"], grads[1])
    if bias:
        compare(tag + " vjp db", a["db"], grads[2])
    _, ty = jvp(f, prim, tang)
    compare(tag + " jvp", a["ty"], ty)
    _, R = jvp(vjp_map, prim + (dout,), tang + (Rdout,))
    compare(tag + " rvjp Rdin", a["Rdx"], R[0])
    compare(tag + " rvjp RdW", a["RdW"], R[1])
    if bias:
        compare(tag + " rvjp Rdb", a["Rdb"], R[2])


def bn_case(hdr, a):
    B, C, H, W, affine = (int(v) for v in hdr[:5])
    eps = float(hdr[5])
    tag = "bn B=%d C=%d %dx%d affine=%d eps=%g" % (B, C, H, W, affine, eps)
    x = a["x"].reshape(B, C, H, W)

    def f(x, *gb):
        g, b = gb if gb else (None, None)
        return F.batch_norm(x, None, None, g, b, training=True, momentum=0.0, eps=eps)

    prim = (x,) + ((a["gamma"], a["beta"]) if affine else ())
    tang = (a["tx"].reshape(x.shape),) + ((a["tgamma"], a["tbeta"]) if affine else ())
    y = f(*prim)
    compare(tag + " forward", a["y"], y)
    # normalised output before the affine map: per-channel mean 0, biased variance var/(var+eps)
    xh = f(x)
    var = x.var(dim=(0, 2, 3), unbiased=False)
    check(float(xh.mean(dim=(0, 2, 3)).abs().max()) < 1e-13 and
          float((xh.var(dim=(0, 2, 3), unbiased=False) - var / (var + eps)).abs().max()) < 1e-12,
          tag + " torch normalisation")
    dy = a["dy"].reshape(y.shape)
    Rdy = a["Rdy"].reshape(y.shape)

    def vjp_map(*args):
        p, g = args[:-1], args[-1]
        p = [t.detach().requires_grad_(True) if not t.requires_grad else t for t in p]
        with torch.enable_grad():
            out = f(*p)
            return torch.autograd.grad(out, p, g, create_graph=True)

    grads = vjp_map(*prim, dy)
    compare(tag + " vjp dx", a["dx"], grads[0])
    if affine:
        compare(tag + " vjp dgamma", a["dgamma"], grads[1])
        compare(tag + " vjp dbeta", a["dbeta"], grads[2])
    _, ty = jvp(f, prim, tang)
    compare(tag + " jvp", a["ty"], ty)
    _, R = jvp(vjp_map, prim + (dy,), tang + (Rdy,))
    compare(tag + " rvjp Rdx", a["Rdx"], R[0])
    if affine:
        compare(tag + " rvjp Rdgamma", a["Rdgamma"], R[1])
        compare(tag + " rvjp Rdbeta", a["Rdbeta"], R[2])


def pool_case(hdr, a):
    B, C, H, W = (int(v) for v in hdr[:4])
    tag = "pool B=%d C=%d %dx%d" % (B, C, H, W)
    x = a["x"].reshape(B, C, H, W).requires_grad_(True)
    y = F.avg_pool2d(x, (H, W)).reshape(B, C)
    compare(tag + " forward", a["y"], y)
    (dx,) = torch.autograd.grad(y, x, a["dout"].reshape(B, C))
    compare(tag + " vjp", a["dx"], dx)


def main():
    if len(sys.argv) != 2:
        print("usage: torch_conv_check.py PATH_TO_test_conv", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "conv_cases.txt")
        subprocess.run([sys.argv[1], "--dump", path], check=True)
        cases = parse(path)
    counts = {"conv": 0, "bn": 0, "pool": 0}
    for kind, hdr, arrays in cases:
        {"conv": conv_case, "bn": bn_case, "pool": pool_case}[kind](hdr, arrays)
        counts[kind] += 1
    check(counts["conv"] >= 4 and counts["bn"] >= 3 and counts["pool"] >= 1,
          "expected at least 4 conv, 3 bn, 1 pool cases, got %s" % counts)
    print("torch_conv: ", end="")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
