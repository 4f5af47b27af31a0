#!/usr/bin/python3
"""Loss-landscape throughput: ntkhpc's grid points per second against a PyTorch loop set up like
tomgoldstein/loss-landscape, and the 2-rank scheduler's parallel efficiency (docs/landscape.md).

  /usr/bin/python3 benchmarks/bench_landscape.py [--ntkhpc build/ntkhpc] [--width 1024] [--n-train 512]
      [--n-test 256] [--points 16,64] [--threads 1]

1. A source: a short sweep of the 784-W-W-W-10 relu net (ntk, biases, sigma_w sqrt 2) on
   Fashion-MNIST with theta recorded (-theta_every 1, 2 steps).
2. ntkhpc: -landscape_from that output, 1-D grids of n1 and n2 points (--points), 1 rank and 2
   ranks. The rate is (n2 - n1) / (t(n2) - t(n1)): the start-up (MPI, data, the layout, the
   directions) cancels. Every point evaluates the train and the test samples.
3. torch (float64, torch.set_num_threads(threads)), the loss-landscape loop: for each point,
   p.data = w + alpha d for every parameter (net_plotter.set_weights), then the loss and accuracy
   over the train and the test samples in batches of --batch (evaluation.eval_loss) under
   torch.no_grad(). Rate = points / time after one warm-up point.
4. Efficiency of 2 ranks = rate(2 ranks) / (2 rate(1 rank)).

The machine is shared: the first line prints the load average; run on an idle machine for numbers.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "tests"))
os.environ.setdefault("NTK_SOURCE_DIR", SRC)  # the test module reads these when imported
os.environ.setdefault("NTKHPC", os.path.join(SRC, "build", "ntkhpc"))
from test_landscape import data  # noqa: E402  (the numpy IDX reader and standardisation)


def deck(path, a):
    with open(path, "w") as f:
        f.write("-arch fc\n-depth 3\n-activation relu\n-sigma_w 1.4142135623730951\n-sigma_b 0.1\n-bias true\n"
                "-widths %d\n-seeds 0\n-params ntk\n-etas 0.1\n-dataset fashion_mnist\n-n_train %d\n-n_test %d\n"
                "-optimizer gd\n-steps 2\n-ntk_batch 10\n-theta_every 1\n-quiet\n" % (a.width, a.n_train, a.n_test))


def ntk_time(a, dk, out, np_, n):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    land = out + ".l%d_%d.h5" % (np_, n)
    cmd = [a.mpiexec, "--oversubscribe", "-n", str(np_), a.ntkhpc, dk, "-output", out, "-landscape_from", out, "-landscape_steps", "end",
           "-landscape_dim", "1", "-landscape_alpha", "-1,1,%d" % n, "-landscape_output", land]
    t0 = time.time()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.time() - t0


def torch_rate(a, out, n):
    import torch
    torch.set_num_threads(a.threads)
    torch.set_default_dtype(torch.float64)
    xtr, ytr, ltr, xte, yte, lte = data(a.n_train, a.n_test)
    th = h5py.File(out, "r")["runs/run_000000/theta/theta"][-1]
    dims = [784, a.width, a.width, a.width, 10]
    layers, off = [], 0
    net = torch.nn.Sequential()
    for l in range(4):
        lin = torch.nn.Linear(dims[l], dims[l + 1])
        W = th[off:off + dims[l] * dims[l + 1]].reshape(dims[l + 1], dims[l])
        off += W.size
        b = th[off:off + dims[l + 1]]
        off += dims[l + 1]
        with torch.no_grad():  # the ntk multipliers folded into the weights
            lin.weight.copy_(torch.from_numpy(W * np.sqrt(2.0) / np.sqrt(dims[l])))
            lin.bias.copy_(torch.from_numpy(b * 0.1))
        net.append(lin)
        if l < 3:
            net.append(torch.nn.ReLU())
    w = [p.data.clone() for p in net.parameters()]
    d = [torch.randn_like(p) for p in net.parameters()]
    sets = [(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(lab)) for x, y, lab in ((xtr, ytr, ltr), (xte, yte, lte))]

    def point(alpha):
        for p, w0, d0 in zip(net.parameters(), w, d):  # net_plotter.set_weights
            p.data = w0 + d0 * alpha
        res = []
        with torch.no_grad():
            for x, y, lab in sets:  # evaluation.eval_loss
                tot, corr = 0.0, 0
                for i in range(0, len(x), a.batch):
                    f = net(x[i:i + a.batch])
                    tot += float(((f - y[i:i + a.batch]) ** 2).sum()) / 2
                    corr += int((f.argmax(1) == lab[i:i + a.batch]).sum())
                res += [tot / len(x), corr / len(x)]
        return res

    point(0.0)
    t0 = time.time()
    for k in range(n):
        point(-1 + 2 * k / max(n - 1, 1))
    return n / (time.time() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ntkhpc", default=os.path.join(SRC, "build", "ntkhpc"))
    ap.add_argument("--mpiexec", default="mpiexec")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--n-test", type=int, default=256)
    ap.add_argument("--points", default="16,64")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128, help="torch evaluation batch (loss-landscape's loader batch)")
    a = ap.parse_args()
    n1, n2 = (int(v) for v in a.points.split(","))
    print("load average %s (shared machine: numbers are indicative)" % " ".join("%.2f" % v for v in os.getloadavg()))
    with tempfile.TemporaryDirectory() as tmp:
        dk, out = os.path.join(tmp, "b.in"), os.path.join(tmp, "b.h5")
        deck(dk, a)
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads))
        subprocess.run([a.mpiexec, "-n", "1", a.ntkhpc, dk, "-output", out], check=True, env=env, stdout=subprocess.DEVNULL)
        rate = {}
        for np_ in (1, 2):
            t1, t2 = ntk_time(a, dk, out, np_, n1), ntk_time(a, dk, out, np_, n2)
            rate[np_] = (n2 - n1) / (t2 - t1)
            print("ntkhpc %d rank(s): %d points %.2f s, %d points %.2f s: %.2f points/s" % (np_, n1, t1, n2, t2, rate[np_]))
        tr = torch_rate(a, out, n1)
        print("torch (loss-landscape loop, %d thread(s)): %.2f points/s" % (a.threads, tr))
        print("ntkhpc / torch at 1 rank x %d thread(s): %.2fx (target 2x)" % (a.threads, rate[1] / tr))
        print("2-rank scheduler efficiency: %.0f%% (target 90%%)" % (100 * rate[2] / (2 * rate[1])))


if __name__ == "__main__":
    main()
