#!/usr/bin/python3
"""Loss-landscape throughput: ntkhpc's grid points per second against a PyTorch loop set up like
tomgoldstein/loss-landscape, and the 2-rank scheduler's parallel efficiency (docs/landscape.md).

  /usr/bin/python3 benchmarks/bench_landscape.py [--ntkhpc build/ntkhpc] [--width 1024] [--n-train 512]
      [--n-test 256] [--points 16,64] [--threads 1]

1. A source: a short sweep of the 784-W-W-W-10 relu net (ntk, biases, sigma_w sqrt 2) on
   Fashion-MNIST with theta recorded (-theta_every 1, 2 steps).
2. ntkhpc: -landscape_from that output, 1-D grids of n1 and n2 points (--points), 1 rank and 2
   ranks. The rate is (n2 - n1) / (t(n2) - t(n1)): the start-up (MPI, data, the layout, the
   directions) cancels. Every point evaluates the train and the test samples. Also 1 rank with the
   plain first layer (-landscape_affine_cache_mb 0), for the affine cache's share.
3. torch (float64, torch.set_num_threads(threads)), two loops, rate = points / time after one
   warm-up point:
   - "loss-landscape": as tomgoldstein/loss-landscape's plot_surface.crunch evaluates a surface:
     for each point p.data = w + alpha d for every parameter (net_plotter.set_weights, new
     tensors), then evaluation.eval_loss (net.eval(), torch.no_grad(), a DataLoader over the set
     in batches of --batch, num_workers 0 at one thread) on the train and then the test set, each
     value array then written whole to an h5py dataset (rank 0's write after every point).
     crunch itself takes one set per call (a test surface is a second pass that sets the weights
     again); setting them once per point for both sets is the cheaper reading, used here;
   - "loss-landscape as written": the same, but as its code runs: the data come from a Dataset that
     makes every sample on demand as torchvision's FashionMNIST with Compose([ToTensor(),
     Normalize]) does (a PIL image from the uint8 pixels, scaled by 1/255, standardised; here in
     float64, the same per-pixel standardisation as ntkhpc's, so the values agree), re-made at
     every point (dataloader.load_dataset); and one crunch pass per set, each setting the weights
     again and rewriting its loss and accuracy arrays after every point;
   - "lean": the same net, weights set in place (p.copy_(w).add_(d, alpha)), the train and test
     samples preloaded and evaluated in one batch of all of them.
4. Efficiency of 2 ranks = rate(2 ranks) / (2 rate(1 rank)).

The machine is shared: the first and last lines print the load average; run on an idle machine for
numbers. Beside the wall-clock rates, the 1-rank rates per CPU second (the children's user + system
time, and torch's process time) are printed: one thread each, so they are the same on an idle
machine and move less when other jobs share the cores.
"""
import argparse
import os
import resource
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
from test_landscape import DATA, data, idx, standardisation  # noqa: E402  (the numpy IDX reader and standardisation)


def raw_pixels(n_train, n_test):
    """The uint8 images of data()'s samples and its standardisation (mu, 1/sd per pixel), for the
    on-demand loader."""
    tr = idx(DATA + "/train-images-idx3-ubyte.gz", n_train).astype(np.uint8).reshape(n_train, 28, 28)
    te = idx(DATA + "/t10k-images-idx3-ubyte.gz", n_test).astype(np.uint8).reshape(n_test, 28, 28)
    mu, sc = standardisation(tr.reshape(n_train, -1) / 255.0)
    return tr, te, mu, sc


def deck(path, a):
    with open(path, "w") as f:
        f.write("-arch fc\n-depth 3\n-activation relu\n-sigma_w 1.4142135623730951\n-sigma_b 0.1\n-bias true\n"
                "-widths %d\n-seeds 0\n-params ntk\n-etas 0.1\n-dataset fashion_mnist\n-n_train %d\n-n_test %d\n"
                "-optimizer gd\n-steps 2\n-ntk_batch 10\n-theta_every 1\n-quiet\n" % (a.width, a.n_train, a.n_test))


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def ntk_time(a, dk, out, np_, n, extra=()):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    land = out + ".l%d_%d_%d.h5" % (np_, n, len(extra))
    cmd = [a.mpiexec, "--oversubscribe", "-n", str(np_), a.ntkhpc, dk, "-output", out, "-landscape_from", out, "-landscape_steps", "end",
           "-landscape_dim", "1", "-landscape_alpha", "-1,1,%d" % n, "-landscape_output", land] + list(extra)
    t0, c0 = time.time(), cpu_children()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.time() - t0, cpu_children() - c0


def torch_rates(a, out, n, tmp):
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

    loaders = [torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*t), batch_size=a.batch, shuffle=False, num_workers=0) for t in sets]
    store = h5py.File(os.path.join(tmp, "torch_surface.h5"), "w")
    vals = {key: np.full(n, -1.0) for key in ("train_loss", "test_loss")}
    for key in vals:
        store[key] = vals[key]

    from PIL import Image

    class OnDemand(torch.utils.data.Dataset):
        """torchvision.datasets.FashionMNIST.__getitem__ with Compose([ToTensor(), Normalize]): the
        sample made from its uint8 pixels every time it is read (float64, per-pixel standardised)."""

        def __init__(self, pixels, y, lab, mu, sc):
            self.pixels, self.y, self.lab = pixels, torch.from_numpy(y), torch.from_numpy(lab)
            self.mu, self.sc = torch.from_numpy(mu).reshape(1, 28, 28), torch.from_numpy(sc).reshape(1, 28, 28)

        def __len__(self):
            return len(self.pixels)

        def __getitem__(self, i):
            img = Image.fromarray(self.pixels[i], mode="L")                      # the dataset's PIL image
            x = torch.from_numpy(np.asarray(img, dtype=np.float64)).div(255.0).unsqueeze(0)  # ToTensor
            x = x.sub(self.mu).mul(self.sc)                                        # Normalize
            return x.reshape(-1), self.y[i], self.lab[i]

    raw_tr, raw_te, mu, sc = raw_pixels(a.n_train, a.n_test)
    ondemand = [torch.utils.data.DataLoader(OnDemand(px, y.numpy(), lab.numpy(), mu, sc), batch_size=a.batch, shuffle=False, num_workers=0)
                for px, (_, y, lab) in ((raw_tr, sets[0]), (raw_te, sets[1]))]
    for key in ("train_acc", "test_acc"):
        vals[key] = np.full(n, -1.0)
        store[key] = vals[key]

    def eval_loss(loader):  # loss-landscape's evaluation.eval_loss (with the mse loss of ntkhpc)
        net.eval()
        tot, corr, cnt = 0.0, 0, 0
        with torch.no_grad():
            for x, y, lab in loader:
                f = net(x)
                tot += float(((f - y) ** 2).sum()) / 2
                corr += int((f.argmax(1) == lab).sum())
                cnt += len(x)
        return tot / cnt, corr / cnt

    def as_written(k, alpha):  # plot_surface.crunch once per set, as its code runs
        res = []
        for key, loader in zip(("train", "test"), ondemand):
            for p, w0, d0 in zip(net.parameters(), w, d):  # net_plotter.set_weights, every pass
                p.data = w0 + d0 * alpha
            loss, acc = eval_loss(loader)
            res += [loss, acc]
            vals[key + "_loss"][k], vals[key + "_acc"][k] = loss, acc
            store[key + "_loss"][:] = vals[key + "_loss"]  # rank 0 rewrites both arrays after each point
            store[key + "_acc"][:] = vals[key + "_acc"]
        return res

    def faithful(k, alpha):  # one point of plot_surface.crunch, both sets evaluated after one set_weights
        res = []
        for p, w0, d0 in zip(net.parameters(), w, d):  # net_plotter.set_weights
            p.data = w0 + d0 * alpha
        for key, loader in zip(("train_loss", "test_loss"), loaders):
            loss, acc = eval_loss(loader)
            res += [loss, acc]
            vals[key][k] = loss
            store[key][:] = vals[key]  # rank 0 rewrites the value array after each point
        return res

    xall = torch.cat([sets[0][0], sets[1][0]])
    yall = torch.cat([sets[0][1], sets[1][1]])
    lall = torch.cat([sets[0][2], sets[1][2]])
    ntr = len(sets[0][0])

    def lean(k, alpha):
        with torch.no_grad():
            for p, w0, d0 in zip(net.parameters(), w, d):
                p.copy_(w0).add_(d0, alpha=alpha)
            f = net(xall)
            e = ((f - yall) ** 2).sum(1) / 2
            ok = f.argmax(1) == lall
            return [float(e[:ntr].mean()), float(ok[:ntr].double().mean()), float(e[ntr:].mean()), float(ok[ntr:].double().mean())]

    rates, values = [], []
    for point in (as_written, faithful, lean):
        point(0, 0.0)
        t0, c0 = time.time(), time.process_time()
        v = [point(k, -1 + 2 * k / max(n - 1, 1)) for k in range(n)]
        rates.append((n / (time.time() - t0), n / (time.process_time() - c0)))
        values.append(np.array(v))
    store.close()
    for v in values[1:]:
        assert np.allclose(values[0], v, rtol=1e-10, atol=1e-12), "the torch loops disagree"
    return rates


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
        rate, cpu = {}, {}
        for np_ in (1, 2):
            (t1, c1), (t2, c2) = ntk_time(a, dk, out, np_, n1), ntk_time(a, dk, out, np_, n2)
            rate[np_], cpu[np_] = (n2 - n1) / (t2 - t1), (n2 - n1) / (c2 - c1)
            print("ntkhpc %d rank(s): %d points %.2f s, %d points %.2f s: %.2f points/s" % (np_, n1, t1, n2, t2, rate[np_]))
        plain = ["-landscape_affine_cache_mb", "0"]
        (t1, c1), (t2, c2) = ntk_time(a, dk, out, 1, n1, plain), ntk_time(a, dk, out, 1, n2, plain)
        print("ntkhpc 1 rank, plain first layer (-landscape_affine_cache_mb 0): %.2f points/s (per CPU second %.2f)" % ((n2 - n1) / (t2 - t1), (n2 - n1) / (c2 - c1)))
        (tw, twc), (tr, trc), (tl, tlc) = torch_rates(a, out, n1, tmp)
        print("torch, loss-landscape as written (%d thread(s)): %.2f points/s (per CPU second %.2f)" % (a.threads, tw, twc))
        print("torch, loss-landscape loop, data preloaded, weights set once per point (%d thread(s)): %.2f points/s (per CPU second %.2f)" % (a.threads, tr, trc))
        print("torch, lean loop (%d thread(s)): %.2f points/s (per CPU second %.2f)" % (a.threads, tl, tlc))
        print("ntkhpc 1 rank per CPU second: %.2f points" % cpu[1])
        print("ntkhpc / torch at 1 rank x %d thread(s): %.2fx loss-landscape as written (target 2x), %.2fx its loop on preloaded data, %.2fx the lean loop"
              % (a.threads, rate[1] / tw, rate[1] / tr, rate[1] / tl))
        print("  the same per CPU second (less sensitive to other jobs): %.2fx, %.2fx and %.2fx" % (cpu[1] / twc, cpu[1] / trc, cpu[1] / tlc))
        print("2-rank scheduler efficiency: %.0f%% (target 90%%)" % (100 * rate[2] / (2 * rate[1])))
    print("load average %s at the end" % " ".join("%.2f" % v for v in os.getloadavg()))


if __name__ == "__main__":
    main()
