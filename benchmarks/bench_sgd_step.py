#!/usr/bin/python3
"""One SGD step of the 3 x 2048 ReLU net (ntk parameterization, biases, float64, batch 256) on a
Fashion-MNIST batch: ntkhpc (bench_fc_step) against PyTorch at the same thread count, plus the
machine's DGEMM rate. See README.md. Not part of CI.

Usage: bench_sgd_step.py [--bench build/benchmarks/bench_fc_step] [--threads 1,2] [--reps 10]
                         [--warmup 3] [--data fashion|random] [--torch-grad none|zero]
"""
import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
FASHION_LABELS = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"
SIGMA_W, SIGMA_B, ETA = 2 ** 0.5, 0.1, 0.1  # as in bench_fc_step.c


def load_batch(kind, B, k):
    """B x 784 standardised inputs and B x k centred one-hot targets (docs/conventions.md, "Data and
    loss")."""
    if kind == "fashion":
        with gzip.open(FASHION, "rb") as fp:
            raw = fp.read()
        n, rows, cols = (int.from_bytes(raw[o:o + 4], "big") for o in (4, 8, 12))
        imgs = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows * cols).astype(np.float64)
        mean, std = imgs.mean(axis=0), imgs.std(axis=0)
        std[std == 0] = 1.0  # constant pixels: leave them at 0 after centring
        x = (imgs[:B] - mean) / std
        with gzip.open(FASHION_LABELS, "rb") as fp:
            labels = np.frombuffer(fp.read(), dtype=np.uint8, offset=8)[:B]
    else:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((B, 784))
        labels = rng.integers(0, k, B)
    y = np.eye(k)[labels] - 1.0 / k
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def parse_kv(line):
    return {kv.split("=")[0]: kv.split("=")[1] for kv in line.split()[1:]}


def run(cmd, threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return parse_kv(out.strip().splitlines()[-1])


def torch_worker(path, B, d, k, width, depth, warmup, reps, threads, grad_mode):
    """Same step in torch: addmm with alpha = sigma_w/sqrt(fan_in), beta = sigma_b (the fused
    form of the ntk layer, torch's best case), relu, MSE, autograd, in-place SGD."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = np.fromfile(path, dtype="<f8")
    x = torch.from_numpy(data[:B * d].reshape(B, d).copy())
    y = torch.from_numpy(data[B * d:B * d + B * k].reshape(B, k).copy())
    dims = [d] + [width] * depth + [k]
    layers = []
    for l in range(depth + 1):
        W = torch.randn(dims[l + 1], dims[l], dtype=torch.float64, requires_grad=True)
        b = torch.randn(dims[l + 1], dtype=torch.float64, requires_grad=True)
        layers.append((W, b, SIGMA_W / dims[l] ** 0.5))
    params = [p for W, b, _ in layers for p in (W, b)]

    def step():
        h = x
        for l, (W, b, mw) in enumerate(layers):
            h = torch.addmm(b, h, W.t(), beta=SIGMA_B, alpha=mw)
            if l < depth:
                h = torch.relu(h)
        loss = ((h - y) ** 2).sum() / (2 * B)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-ETA)
                if grad_mode == "none":
                    p.grad = None
                else:
                    p.grad.zero_()
        return float(loss)

    times = []
    for r in range(warmup + reps):
        t0 = time.perf_counter()
        step()
        if r >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    print("torch ms=%.3f ms_min=%.3f threads=%d" % (statistics.median(times), min(times), torch.get_num_threads()))


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--bench", default=os.path.join(here, "..", "build", "benchmarks", "bench_fc_step"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--data", choices=["fashion", "random"], default="fashion")
    ap.add_argument("--torch-grad", choices=["none", "zero"], default="none",
                    help="torch: set grads to None after the update (default) or zero them")
    ap.add_argument("--dgemm-n", type=int, default=2048)
    ap.add_argument("--torch-worker", nargs=10, metavar="ARG", help=argparse.SUPPRESS)
    a = ap.parse_args()
    B, d, k, width, depth = 256, 784, 10, 2048, 3
    if a.torch_worker:
        w = a.torch_worker
        torch_worker(w[0], *(int(v) for v in w[1:9]), w[9])
        return
    x, y = load_batch(a.data, B, k)
    print("net %d-%s-%d relu, ntk, biases, float64, batch %d, data %s; load average %.2f %.2f %.2f"
          % ((d, "-".join([str(width)] * depth), k, B, a.data) + os.getloadavg()))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "batch.f64")
        np.concatenate([x.ravel(), y.ravel()]).astype("<f8").tofile(path)
        for t in (int(s) for s in a.threads.split(",")):
            dg = run([a.bench, "dgemm", str(a.dgemm_n), "10"], t)
            ours = run([a.bench, "step", path, str(B), str(d), str(k), str(width), str(depth),
                        str(a.warmup), str(a.reps)], t)
            th = run([sys.executable, os.path.abspath(__file__), "--torch-worker", path, str(B), str(d),
                      str(k), str(width), str(depth), str(a.warmup), str(a.reps), str(t), a.torch_grad], t)
            ms, tms, dgf = float(ours["ms"]), float(th["ms"]), float(dg["gflops_best"])
            gf = float(ours["gflops"])
            print("threads %d: ours %.1f ms/step (min %.1f), torch %.1f ms/step (min %.1f), torch/ours %.3f; "
                  "ours %.2f GFLOP/s (%.3e GEMM flops/step) = %.1f%% of best DGEMM %d^3 %.2f GFLOP/s"
                  % (t, ms, float(ours["ms_min"]), tms, float(th["ms_min"]), tms / ms, gf,
                     float(ours["gemm_flops"]), 100 * gf / dgf, a.dgemm_n, dgf))


if __name__ == "__main__":
    main()
