#!/usr/bin/python3
"""One SGD step (forward, MSE loss, backward, update) of a pre-activation Wide ResNet with batch
norm, float64, 32 x 32 x 3 inputs: ntkhpc (bench_wrn_step) against PyTorch at the same thread
count, side by side, with the peak memory (max RSS) of each. See README.md. Not part of CI.

  bench_wrn_step.py [--bench build/tests/bench_wrn_step] [--threads 1,2] [--reps 3] [--warmup 1]
                    [--net 16,4,128] [--big] [--big-net 28,10,32:28,10,4] [--big-warmup 1]
                    [--big-reps 2] [--only-big] [--tape train|keep]

--net DEPTH,WIDEN,BATCH is the main comparison (default WRN-16-4 at batch 128); --big adds each of
--big-net (colon-separated; default WRN-28-10 at batch 32 and at batch 4, the per-rank slice of
inputs/wrn.in) with --big-warmup untimed and --big-reps timed steps per thread count, reporting
time and peak memory. Ours also prints its time by op kind (the tape's per-op profile).
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

C, H, W, K = 3, 32, 32, 10
ETA = 0.01  # as in bench_wrn_step.c


def parse_kv(line):
    return {kv.split("=")[0]: kv.split("=")[1] for kv in line.split()[1:] if "=" in kv}


def run(cmd, threads, extra=None):
    """Runs one side in its own process; returns the key=value pairs of its last line (and appends
    its other lines, the op-kind profile, to extra)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    lines = out.strip().splitlines()
    if extra is not None:
        extra.extend(lines[:-1])
    return parse_kv(lines[-1])


def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def torch_worker(path, B, depth, widen, warmup, reps, threads):
    """The same network in torch, functional form: conv2d without bias, F.batch_norm in training
    mode (eps 1e-5, affine), relu, 1x1 projection shortcut from the block's relu(bn(x)) where the
    shape changes, global average pool, linear; standard (He) initialisation, which costs the same
    as ours; autograd, in-place SGD, grads set to None."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = np.fromfile(path, dtype="<f8")
    d = C * H * W
    x = torch.from_numpy(data[:B * d].reshape(B, C, H, W).copy())
    y = torch.from_numpy(data[B * d:B * d + B * K].reshape(B, K).copy())
    f64 = torch.float64
    params = []

    def conv(cin, cout, ks):
        w = (torch.randn(cout, cin, ks, ks, dtype=f64) * (2.0 / (cin * ks * ks)) ** 0.5).requires_grad_()
        params.append(w)
        return w

    def bn(ch):
        g, b = torch.ones(ch, dtype=f64, requires_grad=True), torch.zeros(ch, dtype=f64, requires_grad=True)
        params.extend([g, b])
        return g, b

    n = (depth - 4) // 6
    conv0 = conv(C, 16, 3)
    blocks, cin = [], 16
    for ch, stride in ((16 * widen, 1), (32 * widen, 2), (64 * widen, 2)):
        for j in range(n):
            s = stride if j == 0 else 1
            blocks.append(dict(bn1=bn(cin), conv1=conv(cin, ch, 3), bn2=bn(ch), conv2=conv(ch, ch, 3), s=s,
                               short=conv(cin, ch, 1) if (cin != ch or s != 1) else None))
            cin = ch
    bnf = bn(cin)
    wd = (torch.randn(K, cin, dtype=f64) / cin ** 0.5).requires_grad_()
    params.append(wd)

    def bnorm(h, gb):
        return F.batch_norm(h, None, None, gb[0], gb[1], training=True, eps=1e-5)

    def step():
        h = F.conv2d(x, conv0, padding=1)
        for b in blocks:
            a = F.relu(bnorm(h, b["bn1"]))
            o = F.conv2d(a, b["conv1"], stride=b["s"], padding=1)
            o = F.conv2d(F.relu(bnorm(o, b["bn2"])), b["conv2"], padding=1)
            h = o + (F.conv2d(a, b["short"], stride=b["s"]) if b["short"] is not None else h)
        h = F.relu(bnorm(h, bnf)).mean(dim=(2, 3))
        f = F.linear(h, wd)
        loss = ((f - y) ** 2).sum() / (2 * B)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-ETA)
                p.grad = None
        return float(loss)

    rss_setup = maxrss_mb()
    times = []
    for r in range(warmup + reps):
        t0 = time.perf_counter()
        step()
        if r >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    P = sum(p.numel() for p in params)
    print("torch ms=%.3f ms_min=%.3f threads=%d P=%d maxrss_mb=%.1f rss_setup_mb=%.1f"
          % (statistics.median(times), min(times), torch.get_num_threads(), P, maxrss_mb(), rss_setup))


def compare(a, path, B, depth, widen, warmup, reps, t):
    prof = []
    ours = run([a.bench, "step", path, str(B), str(C), str(H), str(W), str(K), str(depth), str(widen), "1",
                str(warmup), str(reps), a.tape], t, prof)
    th = run([sys.executable, os.path.abspath(__file__), "--torch-worker", path, str(B), str(depth), str(widen),
              str(warmup), str(reps), str(t)], t)
    ms, tms = float(ours["ms"]), float(th["ms"])
    print("WRN-%d-%d batch %d, threads %d: ours %.0f ms/step (min %.0f, %.2f GFLOP/s, P %s), torch %.0f ms/step "
          "(min %.0f, P %s), torch/ours %.3f; max RSS ours %.0f MB (%.0f before the step), torch %.0f MB "
          "(%.0f before the step); our cotangent blocks %s"
          % (depth, widen, B, t, ms, float(ours["ms_min"]), float(ours["gflops"]), ours["P"], tms,
             float(th["ms_min"]), th["P"], tms / ms, float(ours["maxrss_mb"]), float(ours["rss_setup_mb"]),
             float(th["maxrss_mb"]), float(th["rss_setup_mb"]), ours.get("cot_blocks", "-")), flush=True)
    print("  ours by op kind (ms per step, forward / backward, share of the op time, GEMM GFLOP/s of the "
          "convs and the dense layer):")
    for line in prof:
        kv = parse_kv(line)
        print("    %-10s %9.1f / %9.1f  %5.1f%%  %s" % (line.split()[1], float(kv["fwd_ms"]), float(kv["bwd_ms"]),
              100 * float(kv["share"]), ("%.1f GFLOP/s" % float(kv["gflops"])) if float(kv["gflops"]) else ""))
    print("  load average %.2f %.2f %.2f" % os.getloadavg(), flush=True)


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--bench", default=os.path.join(here, "..", "build", "tests", "bench_wrn_step"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--net", default="16,4,128", help="DEPTH,WIDEN,BATCH of the main comparison")
    ap.add_argument("--big", action="store_true", help="also one step of --big-net")
    ap.add_argument("--only-big", action="store_true", help="only the --big-net step")
    ap.add_argument("--big-net", default="28,10,32:28,10,4")
    ap.add_argument("--big-warmup", type=int, default=1)
    ap.add_argument("--big-reps", type=int, default=2)
    ap.add_argument("--tape", default="train", choices=["train", "keep"],
                    help="ours: training tape (reused cotangents) or keep-everything tape")
    ap.add_argument("--torch-worker", nargs=7, metavar="ARG", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_worker:
        w = a.torch_worker
        torch_worker(w[0], *(int(v) for v in w[1:]))
        return
    nets = []
    if not a.only_big:
        nets.append(tuple(int(v) for v in a.net.split(",")) + (a.warmup, a.reps))
    if a.big or a.only_big:
        for spec in a.big_net.split(":"):
            nets.append(tuple(int(v) for v in spec.split(",")) + (a.big_warmup, a.big_reps))
    print("pre-activation WRN with batch norm, float64, %dx%dx%d inputs (standard normal), MSE on centred one-hot "
          "targets; load average %.2f %.2f %.2f" % ((C, H, W) + os.getloadavg()), flush=True)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for depth, widen, B, warmup, reps in nets:
            path = os.path.join(tmp, "batch%d.f64" % B)
            x = rng.standard_normal((B, C * H * W))
            y = np.eye(K)[rng.integers(0, K, B)] - 1.0 / K
            np.concatenate([x.ravel(), y.ravel()]).astype("<f8").tofile(path)
            for t in (int(s) for s in a.threads.split(",")):
                compare(a, path, B, depth, widen, warmup, reps, t)


if __name__ == "__main__":
    main()
