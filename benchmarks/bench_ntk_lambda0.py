#!/usr/bin/python3
"""lambda_0 of the full empirical NTK (Theta = J J^T / N, Nk x Nk, docs/conventions.md) of the
784-2048-2048-2048-10 ReLU net (ntk parameterization, biases, sigma_w = sqrt 2, sigma_b = 0.1,
float64) on the first N Fashion-MNIST training images (standardised per pixel with the subset's
mean and std): ntkhpc's ntk.c (bench_ntk_lambda0) against PyTorch at the same thread count.
See README.md. Not part of CI.

Both sides read the same inputs (a raw float64 file written here) and the same parameters (the
C side's model_init, written by `bench_ntk_lambda0 -theta_out`).

PyTorch's fastest way that fits: the Jacobian contraction (functorch vmap/jacrev + eigvalsh) needs
N k P doubles (80 GB at N = 100 for P = 1.0e7) and 2 (Nk)^2 P flops, so it is used only when it
fits in --mem-gib; otherwise matrix-free Lanczos: scipy.sparse.linalg.eigsh on a LinearOperator
whose product is one functorch.vjp (linearised once, activations kept) and one functorch.jvp.

Usage: bench_ntk_lambda0.py [--bench build-ntk/tests/bench_ntk_lambda0] [--ns 100,1000,10000]
                            [--threads 1,2] [--max-seconds 600] [--mem-gib 24] [--reps 1]
"""
import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
D, K, WIDTH, DEPTH = 784, 10, 2048, 3
SIGMA_W, SIGMA_B = 2 ** 0.5, 0.1
TOL = 1e-10  # relative residual for both Lanczos-type solvers


def write_inputs(N, path):
    with gzip.open(FASHION, "rb") as fp:
        raw = fp.read()
    n = int.from_bytes(raw[4:8], "big")
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, D)[:N].astype(np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0  # pixels constant over the subset stay 0 after centring
    np.ascontiguousarray((x - mean) / std).tofile(path)


def parse_kv(line):
    return {kv.split("=")[0]: kv.split("=")[1] for kv in line.split()[1:]}


def run_ours(bench, xfile, N, method, threads, reps, timeout):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = ["mpirun", "--oversubscribe", "-n", str(threads), bench, "-x", xfile, "-n", str(N), "-method", method,
           "-reps", str(reps)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=timeout).stdout
    return parse_kv([l for l in out.splitlines() if l.startswith("lambda0")][-1])


def torch_worker(xfile, tfile, N, threads, mode, mem_gib):
    """Prints 'torch method=... lambda=... s=... matvecs=...'."""
    import torch
    import functorch
    import scipy.sparse.linalg as sla
    torch.set_num_threads(threads)
    x = torch.from_numpy(np.fromfile(xfile, dtype=np.float64).reshape(N, D))
    theta = np.fromfile(tfile, dtype=np.float64)
    dims = [D] + [WIDTH] * DEPTH + [K]
    params, off = [], 0
    for l in range(DEPTH + 1):  # model.c's layout: dense{l}.W (n_out x n_in), then dense{l}.b
        n_in, n_out = dims[l], dims[l + 1]
        params.append(torch.from_numpy(theta[off:off + n_out * n_in].reshape(n_out, n_in).copy()))
        off += n_out * n_in
        params.append(torch.from_numpy(theta[off:off + n_out].copy()))
        off += n_out
    assert off == theta.size, (off, theta.size)
    params = tuple(params)
    P = theta.size
    R = N * K

    def f(p):
        h = x
        for l in range(DEPTH + 1):
            h = torch.addmm(p[2 * l + 1], h, p[2 * l].t(), beta=SIGMA_B, alpha=SIGMA_W / dims[l] ** 0.5)
            if l < DEPTH:
                h = torch.relu(h)
        return h

    t0 = time.perf_counter()
    if mode == "jacobian":
        if N * K * P * 8 > mem_gib * 2 ** 30:
            print(f"torch method=jacobian skipped=needs_{N * K * P * 8 / 2**30:.0f}_GiB")
            return
        jac = functorch.jacrev(f)(params)  # per tensor: N x K x shape
        T = sum(torch.einsum("aiq,bjq->aibj", j.reshape(N, K, -1), j.reshape(N, K, -1)) for j in jac) / N
        lam = torch.linalg.eigvalsh(T.reshape(R, R))[-1].item()
        print(f"torch method=jacobian lambda={lam:.17g} s={time.perf_counter() - t0:.4f} matvecs=0")
        return
    _, vjp_fn = functorch.vjp(f, params)  # linearised once: the activations stay alive
    count = [0]

    def matvec(v):
        count[0] += 1
        ct = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).reshape(N, K))
        g = vjp_fn(ct)[0]
        _, tout = functorch.jvp(f, (params,), (g,))
        return (tout / N).reshape(-1).numpy()

    if mode == "product":
        t1 = time.perf_counter()
        y = matvec(np.ones(R))
        print(f"torch method=product lambda={np.linalg.norm(y):.17g} s={time.perf_counter() - t1:.4f} matvecs=1")
        return
    op = sla.LinearOperator((R, R), matvec=matvec, dtype=np.float64)
    lam = sla.eigsh(op, k=1, which="LA", tol=TOL, return_eigenvectors=False)[0]
    print(f"torch method=lanczos lambda={lam:.17g} s={time.perf_counter() - t0:.4f} matvecs={count[0]}")


def run_torch(xfile, tfile, N, threads, mode, mem_gib, timeout):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", xfile, tfile, str(N), str(threads), mode, str(mem_gib)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=timeout).stdout
    return parse_kv([l for l in out.splitlines() if l.startswith("torch")][-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="build-ntk/tests/bench_ntk_lambda0")
    ap.add_argument("--ns", default="100,1000,10000")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="skip a solve the estimates put above this")
    ap.add_argument("--mem-gib", type=float, default=24.0)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--worker", nargs=6)
    a = ap.parse_args()
    if a.worker:
        xf, tf, N, t, mode, mem = a.worker
        torch_worker(xf, tf, int(N), int(t), mode, float(mem))
        return
    tmp = tempfile.mkdtemp(prefix="ntk_lambda0_")
    tfile = os.path.join(tmp, "theta.bin")
    subprocess.run(["mpirun", "-n", "1", a.bench, "-theta_out", tfile], check=True,
                   env=dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1"))
    for N in [int(s) for s in a.ns.split(",")]:
        xfile = os.path.join(tmp, f"x{N}.bin")
        write_inputs(N, xfile)
        R = N * K
        for T in [int(s) for s in a.threads.split(",")]:
            # One product each first: it prices a full solve (~30 products) before we commit to it.
            po = run_ours(a.bench, xfile, N, "product", T, 1, None)
            pt = run_torch(xfile, tfile, N, T, "product", a.mem_gib, None)
            print(f"N={N} threads={T}: one Theta v product: ours {float(po['s_eig']):.3f} s, torch {float(pt['s']):.3f} s, "
                  f"torch/ours {float(pt['s']) / float(po['s_eig']):.2f}, ||Theta 1|| rel diff "
                  f"{abs(float(po['lambda']) - float(pt['lambda'])) / float(pt['lambda']):.1e}", flush=True)
            est_mf = 35 * float(pt["s"])
            ours = {}
            gram_gib = 2 * R * R * 8 / 2 ** 30  # G and its ScaLAPACK copy
            for meth in ("exact", "factored", "matfree"):
                if meth == "factored" and N * N * 4 * 8 / 2 ** 30 + R * 3 * WIDTH * 8 / 2 ** 30 > a.mem_gib:
                    print(f"  ours factored: skipped (signals and kernels > {a.mem_gib} GiB)")
                    continue
                if meth == "exact" and gram_gib > a.mem_gib:
                    print(f"  ours exact: skipped (Gram matrix {gram_gib:.0f} GiB > {a.mem_gib} GiB)")
                    continue
                if meth == "matfree" and 35 * float(po["s_eig"]) > a.max_seconds:
                    print(f"  ours matfree: skipped (~35 products x {float(po['s_eig']):.1f} s > {a.max_seconds} s)")
                    continue
                r = run_ours(a.bench, xfile, N, meth, T, a.reps, None)
                ours[meth] = r
                print(f"  ours {meth}: lambda0 {float(r['lambda']):.15g} in {float(r['s']):.3f} s "
                      f"(setup {float(r['s_setup']):.3f}, gram {float(r['s_gram']):.3f}, eig {float(r['s_eig']):.3f}, "
                      f"products {r['matvecs']} + {r['coarse_matvecs']} coarse (= {float(r['coarse_work']):.2f} full), "
                      f"resid {r['resid']})", flush=True)
            if R <= 5000 and gram_gib <= a.mem_gib:
                r = run_ours(a.bench, xfile, N, "spectrum", T, a.reps, None)
                print(f"  ours exact + full ScaLAPACK spectrum: lambda0 {float(r['lambda']):.15g} in {float(r['s']):.3f} s "
                      f"(eig {float(r['s_eig']):.3f})", flush=True)
            tr = run_torch(xfile, tfile, N, T, "jacobian", a.mem_gib, None)
            if "skipped" in tr:
                print(f"  torch jacobian contraction: skipped ({tr['skipped'].replace('_', ' ')} > {a.mem_gib} GiB)")
            torch_res = None
            if est_mf > a.max_seconds:
                print(f"  torch lanczos: skipped (~35 products x {float(pt['s']):.1f} s > {a.max_seconds} s)")
            else:
                torch_res = run_torch(xfile, tfile, N, T, "lanczos", a.mem_gib, None)
                print(f"  torch lanczos (functorch vjp/jvp + eigsh): lambda0 {float(torch_res['lambda']):.15g} in "
                      f"{float(torch_res['s']):.3f} s, products {torch_res['matvecs']}", flush=True)
            if torch_res and ours:
                best = min(ours, key=lambda m: float(ours[m]["s"]))
                lo, lt = float(ours[best]["lambda"]), float(torch_res["lambda"])
                print(f"N={N} threads={T}: ours ({best}) {float(ours[best]['s']):.3f} s, torch {float(torch_res['s']):.3f} s, "
                      f"torch/ours {float(torch_res['s']) / float(ours[best]['s']):.2f}x, lambda0 rel diff "
                      f"{abs(lo - lt) / abs(lt):.1e} ({'ok' if abs(lo - lt) <= 1e-8 * abs(lt) else 'MISMATCH'})", flush=True)


if __name__ == "__main__":
    main()
