#!/usr/bin/python3
"""Sharpness (top eigenvalue of the MSE loss Hessian, docs/conventions.md "Hessian") of the
784-2048-2048-2048-10 ReLU net (ntk parameterization, biases, sigma_w = sqrt 2, sigma_b = 0.1,
float64) on the first N Fashion-MNIST training images (standardised per pixel with the subset's
mean and std; centred one-hot targets): ntkhpc's hessian.c (bench_hessian) against two PyTorch
references at the same core count. Not part of CI.

Ours runs with its defaults (hessian.h): a cold solve starts from the coarse levels (the Hessians
of every 4th and every 16th sample), Krylov-Schur with the eigenvalue-error test at tolerance tol,
then the explicit residual check (one product, counted). "products" counts full-batch products;
the coarse levels' are reported apart, with their cost in full-batch products.

  (a) PyHessian-style power iteration: loss and gradient once with create_graph=True, then per
      iteration one double-backward H v, Rayleigh quotient, normalise; stop when the eigenvalue
      changes by less than tol relative (1e-3), at most 100 iterations;
  (b) scipy.sparse.linalg.eigsh (ARPACK Lanczos, k=1, which='LA', tol) on the same torch H v.

Ours runs with T MPI ranks of one thread each, torch with T threads (torch.set_num_threads and
OPENBLAS_NUM_THREADS = T). Both sides read the same inputs, targets (raw float64 files written
here) and parameters (the C side's model_init, written by `bench_hessian -theta_out`).
"Same answer": every method's eigenvalue within the reference tolerance (1e-3 relative) of a
tight solve (ours, -hess_eps_tol 1e-10, not timed against the others).

Usage: bench_hessian.py [--bench build-hess/benchmarks/bench_hessian] [--n 1000] [--threads 1]
                        [--tol 1e-3] [--reps 1] [--ours-opts "-hess_eps_ncv 8"]
"""
import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

FASHION = "/usr/share/datasets/fashion-mnist/"
D, K, WIDTH, DEPTH = 784, 10, 2048, 3
SIGMA_W, SIGMA_B = 2 ** 0.5, 0.1


def write_data(N, xpath, ypath):
    with gzip.open(FASHION + "train-images-idx3-ubyte.gz", "rb") as fp:
        raw = fp.read()
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, D)[:N].astype(np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0  # pixels constant over the subset stay 0 after centring
    np.ascontiguousarray((x - mean) / std).tofile(xpath)
    with gzip.open(FASHION + "train-labels-idx1-ubyte.gz", "rb") as fp:
        lab = np.frombuffer(fp.read(), dtype=np.uint8, offset=8)[:N]
    y = np.eye(K)[lab] - 1.0 / K
    np.ascontiguousarray(y).tofile(ypath)


def parse_kv(line):
    return {kv.split("=")[0]: kv.split("=")[1] for kv in line.split()[1:]}


def run_ours(bench, xf, yf, N, T, method, reps, opts):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = ["mpirun", "--oversubscribe", "-n", str(T), bench, "-x", xf, "-y", yf, "-n", str(N), "-method", method,
           "-reps", str(reps)] + opts.split()
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return parse_kv([l for l in out.splitlines() if l.startswith("hess")][-1])


def torch_worker(xf, yf, tf, N, T, mode, tol):
    """Prints 'torch method=... lambda=... s=... s_setup=... matvecs=...'."""
    import torch
    torch.set_num_threads(T)
    x = torch.from_numpy(np.fromfile(xf, dtype=np.float64).reshape(N, D))
    y = torch.from_numpy(np.fromfile(yf, dtype=np.float64).reshape(N, K))
    theta = np.fromfile(tf, dtype=np.float64)
    dims = [D] + [WIDTH] * DEPTH + [K]
    params, off = [], 0
    for l in range(DEPTH + 1):  # model.c's layout: dense{l}.W (n_out x n_in), then dense{l}.b
        n_in, n_out = dims[l], dims[l + 1]
        params.append(torch.from_numpy(theta[off:off + n_out * n_in].reshape(n_out, n_in).copy()).requires_grad_())
        off += n_out * n_in
        params.append(torch.from_numpy(theta[off:off + n_out].copy()).requires_grad_())
        off += n_out
    assert off == theta.size, (off, theta.size)
    P = theta.size

    t0 = time.perf_counter()
    h = x
    for l in range(DEPTH + 1):
        h = torch.addmm(params[2 * l + 1], h, params[2 * l].t(), beta=SIGMA_B, alpha=SIGMA_W / dims[l] ** 0.5)
        if l < DEPTH:
            h = torch.relu(h)
    loss = 0.5 * ((h - y) ** 2).sum() / N
    grads = torch.autograd.grad(loss, params, create_graph=True)  # the graph of the gradient, kept
    t_setup = time.perf_counter() - t0
    count = [0]

    def hvp(vs):
        count[0] += 1
        return torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)

    def split(vec):
        out, o = [], 0
        for p in params:
            out.append(torch.from_numpy(vec[o:o + p.numel()]).view_as(p))
            o += p.numel()
        return out

    if mode == "product":
        v = np.random.default_rng(7).standard_normal(P)
        t1 = time.perf_counter()
        hv = hvp(split(v))
        s = time.perf_counter() - t1
        nrm = torch.sqrt(sum((g * g).sum() for g in hv)).item()
        print(f"torch method=product lambda={nrm:.17g} s={s:.4f} s_setup={t_setup:.4f} matvecs=1")
        return
    if mode == "power":  # PyHessian's eigenvalues(maxIter=100, tol=1e-3, top_n=1), re-implemented
        gen = torch.Generator().manual_seed(0)
        v = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        nrm = torch.sqrt(sum((a * a).sum() for a in v))
        v = [a / (nrm + 1e-6) for a in v]
        eig = None
        for _ in range(100):
            hv = hvp(v)
            tmp = sum((a * b).sum() for a, b in zip(hv, v)).item()
            nrm = torch.sqrt(sum((a * a).sum() for a in hv))
            v = [a / (nrm + 1e-6) for a in hv]
            if eig is not None and abs(eig - tmp) / (abs(eig) + 1e-6) < tol:
                eig = tmp
                break
            eig = tmp
        s = time.perf_counter() - t0
        print(f"torch method=power lambda={eig:.17g} s={s:.4f} s_setup={t_setup:.4f} matvecs={count[0]}")
        return
    import scipy.sparse.linalg as sla

    def matvec(vec):
        hv = hvp(split(np.ascontiguousarray(vec, dtype=np.float64).reshape(-1)))
        return torch.cat([g.reshape(-1) for g in hv]).detach().numpy()

    op = sla.LinearOperator((P, P), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(P)
    lam = sla.eigsh(op, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)[0]
    s = time.perf_counter() - t0
    print(f"torch method=eigsh lambda={lam:.17g} s={s:.4f} s_setup={t_setup:.4f} matvecs={count[0]}")


def run_torch(xf, yf, tf, N, T, mode, tol):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(T), OMP_NUM_THREADS=str(T))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", xf, yf, tf, str(N), str(T), mode, str(tol)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return parse_kv([l for l in out.splitlines() if l.startswith("torch")][-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="build-hess/benchmarks/bench_hessian")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--ours-opts", default="", help="extra PETSc/SLEPc options for our solve")
    ap.add_argument("--skip", default="", help="comma list of: product,power,eigsh")
    ap.add_argument("--worker", nargs=7)
    a = ap.parse_args()
    if a.worker:
        xf, yf, tf, N, T, mode, tol = a.worker
        torch_worker(xf, yf, tf, int(N), int(T), mode, float(tol))
        return
    skip = set(a.skip.split(","))
    tmp = tempfile.mkdtemp(prefix="ntk_hess_")
    xf, yf, tf = (os.path.join(tmp, f) for f in ("x.bin", "y.bin", "theta.bin"))
    subprocess.run(["mpirun", "-n", "1", a.bench, "-theta_out", tf], check=True,
                   env=dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1"))
    N = a.n
    write_data(N, xf, yf)
    with open("/proc/loadavg") as fp:
        print(f"load average {fp.read().split()[0]}; N={N}, tol {a.tol:g}", flush=True)
    ref = run_ours(a.bench, xf, yf, N, max(int(t) for t in a.threads.split(",")), "top", 1, "-hess_eps_tol 1e-10")
    lam_ref = float(ref["lambda"])
    print(f"reference (ours, tol 1e-10): sharpness {lam_ref:.12g} in {float(ref['s']):.2f} s, {ref['matvecs']} products, "
          f"resid {ref['resid']}", flush=True)
    for T in [int(t) for t in a.threads.split(",")]:
        if "product" not in skip:
            po = run_ours(a.bench, xf, yf, N, T, "product", 3, a.ours_opts)
            pt = run_torch(xf, yf, tf, N, T, "product", a.tol)
            print(f"T={T}: one H v: ours {float(po['s_eig']):.3f} s (setup {float(po['s_setup']):.3f} s), torch "
                  f"{float(pt['s']):.3f} s (setup {float(pt['s_setup']):.3f} s), torch/ours "
                  f"{float(pt['s']) / float(po['s_eig']):.2f}; ||H v|| rel diff "
                  f"{abs(float(po['lambda']) - float(pt['lambda'])) / float(pt['lambda']):.1e} (different v: same scale only)",
                  flush=True)
        ours = run_ours(a.bench, xf, yf, N, T, "top", a.reps, f"-hess_eps_tol {a.tol:g} " + a.ours_opts)
        res = {"ours": ours}
        for mode in ("power", "eigsh"):
            if mode not in skip:
                res[mode] = run_torch(xf, yf, tf, N, T, mode, a.tol)
        for name, r in res.items():
            lam = float(r["lambda"])
            err = abs(lam - lam_ref) / abs(lam_ref)
            coarse = (f" + {r['coarse_matvecs']} coarse (= {float(r['coarse_work']):.2f} full)"
                      if "coarse_matvecs" in r else "")
            print(f"T={T} {name:5s}: sharpness {lam:.10g} in {float(r['s']):8.2f} s (setup {float(r['s_setup']):.2f} s), "
                  f"{r['matvecs']:>3s} products{coarse}, rel err {err:.1e} ({'ok' if err <= a.tol else 'MISMATCH'})", flush=True)
        refs = [m for m in ("power", "eigsh") if m in res]
        if refs:
            best = min(refs, key=lambda m: float(res[m]["s"]))
            print(f"T={T}: faster reference {best} {float(res[best]['s']):.2f} s / ours {float(ours['s']):.2f} s = "
                  f"{float(res[best]['s']) / float(ours['s']):.2f}x", flush=True)


if __name__ == "__main__":
    main()
