"""Analytic infinite-width kernels: ntkhpc against vectorised numpy, and the Gram assembly's
parallel efficiency (benchmarks/README.md).

1. Entries per second of the 3-hidden-layer relu NTK (sigma_w^2 = 2, sigma_b = 0.1) on an N x N
   block of D-dimensional inputs: bench_inf_kernels fc (one SYRK or GEMM, then the arc-cosine
   recursion per entry) against numpy doing the same on whole N x N arrays (one matmul, then array
   arithmetic), written two ways: directly (np.arccos, np.sin, np.cos) and tuned (see
   relu_ntk_tuned); the ratio that counts is against the tuned one. Symmetric blocks (X against X)
   and cross blocks (X against X2), each with the first layer's product timed alone.
2. The same for the CNTK (two 3x3 conv + relu layers, global average pooling) of C x H x W images:
   bench_inf_kernels cntk against numpy vectorised over the P^2 pixel pairs of an image pair (the
   patch sums as padded slices), which is how the recursion vectorises in numpy; again direct and
   tuned (cntk_pair_tuned).
   Both at one thread (OPENBLAS_NUM_THREADS=1), fastest of --reps calls; the values are compared.
3. The distributed assembly (tests/test_kernel_inf gram: the fc NTK of --gram-n samples, tiles of
   64, dynamic scheduler) at 1 and 2 ranks: wall seconds and the efficiency T1 / (2 T2).

usage: bench_inf_kernels.py --bench build/benchmarks/bench_inf_kernels --gram build/tests/test_kernel_inf"""
import argparse
import os
import subprocess
import time

for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = "1"  # numpy in this process at one thread too (before it loads OpenBLAS)
import numpy as np  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--bench", required=True)
ap.add_argument("--gram", required=True)
ap.add_argument("--mpiexec", default="mpiexec")
ap.add_argument("--fc-n", type=int, default=1000)
ap.add_argument("--fc-d", type=int, default=784)
ap.add_argument("--cntk-n", type=int, default=4)
ap.add_argument("--cntk-hw", type=int, default=28)
ap.add_argument("--gram-n", type=int, default=3000)
ap.add_argument("--reps", type=int, default=3)
a = ap.parse_args()
env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
print("load average %.2f %.2f %.2f" % os.getloadavg())


def ours(*args):  # entries, fastest seconds, checksum, fastest first-layer product alone (fc)
    out = subprocess.run([a.bench, *map(str, args)], env=env, check=True, capture_output=True, text=True).stdout.split()
    return int(out[1]), float(out[3]), float(out[5]), float(out[7])


def best(f, reps, g=None):
    """Fastest of reps calls of f after one warm-up (and of g, called in turn with f: the same load)."""
    t, u = [], []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        r = f()
        t.append(time.perf_counter() - t0)
        if g:
            t0 = time.perf_counter()
            g()
            u.append(time.perf_counter() - t0)
    return (min(t[1:]), r) if g is None else (min(t[1:]), r, min(u[1:]))


def same_inputs(n, d, m=1):
    # the C driver's inputs: srand(1), 2 rand() / RAND_MAX - 1 (glibc), reproduced through ctypes;
    # m = 2: the next n d numbers too (its cross block's second set)
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    libc.srand(1)
    v = np.array([2.0 * libc.rand() / 2147483647 - 1.0 for _ in range(m * n * d)]).reshape(m, n, d)
    return v[0] if m == 1 else (v[0], v[1])


def relu_ntk(x, x2=None, depth=3, sw2=2.0, sb2=0.01):
    """The recursion transcribed directly: arccos, sin and cos of the angle on N x N arrays."""
    d = x.shape[1]
    if x2 is None:  # x @ x.T: numpy calls SYRK
        k = sw2 * x @ x.T / d + sb2
        q1 = q2 = np.diag(k).copy()
    else:
        k = sw2 * x @ x2.T / d + sb2
        q1, q2 = sw2 * (x * x).sum(1) / d + sb2, sw2 * (x2 * x2).sum(1) / d + sb2
    th = k.copy()
    for _ in range(depth):
        s = np.sqrt(np.outer(q1, q2))
        t = np.arccos(np.clip(k / s, -1, 1))
        k = sw2 * s / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t)) + sb2
        th = k + sw2 * (np.pi - t) / (2 * np.pi) * th
        q1, q2 = sw2 * q1 / 2 + sb2, sw2 * q2 / 2 + sb2
    return th


def relu_terms(k, s1, s2):
    """E[relu(u) relu(v)] and pi - theta for the covariances k (consumed) and standard deviations
    s1, s2 of the two sides, vectorised the tuned way: rho = k * outer(1/s1, 1/s2), sin(theta) as
    sqrt(1 - rho^2), in place where possible."""
    r = k * np.multiply.outer(1 / s1, 1 / s2)
    np.clip(r, -1, 1, out=r)
    pt = np.arccos(r)
    np.subtract(np.pi, pt, out=pt)  # pi - theta
    e = np.multiply(r, r)
    np.subtract(1, e, out=e)
    np.sqrt(e, out=e)
    r *= pt
    e += r  # sqrt(1 - r^2) + (pi - theta) r
    e *= np.multiply.outer(s1, s2 / (2 * np.pi))
    return e, pt


def relu_ntk_tuned(x, x2=None, depth=3, sw2=2.0, sb2=0.01, gemm_only=False):
    """The same, as a careful numpy user writes it: sqrt of the N diagonals instead of the N^2
    products (r = k * outer(1/sqrt q1, 1/sqrt q2)), sin(arccos r) = sqrt(1 - r^2) and cos = r
    instead of np.sin / np.cos, in-place updates (fewer N x N temporaries). x @ x.T is SYRK in
    numpy (half the flops of x @ x2.T). gemm_only: stop after the first layer's product."""
    d = x.shape[1]
    k = x @ x.T if x2 is None else x @ x2.T
    if gemm_only:
        return k
    k *= sw2 / d
    k += sb2
    if x2 is None:
        q1 = q2 = np.diag(k).copy()
    else:
        q1, q2 = sw2 * (x * x).sum(1) / d + sb2, sw2 * (x2 * x2).sum(1) / d + sb2
    th = k.copy()
    for _ in range(depth):
        k, pt = relu_terms(k, np.sqrt(q1), np.sqrt(q2))
        k *= sw2
        k += sb2
        th *= pt
        th *= sw2 / (2 * np.pi)
        th += k
        q1, q2 = sw2 * q1 / 2 + sb2, sw2 * q2 / 2 + sb2
    return th


def cntk_pair(x1, x2, C, H, W, L=2, sw2=2.0, sb2=0.01):
    def patch(a):
        b = np.pad(a, 1)
        r = np.zeros_like(a)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                r += b[1 + dy:1 + dy + H, 1 + dx:1 + dx + W, 1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
        return r

    def pd(v):
        b = np.pad(v, 1)
        return sum(b[1 + dy:1 + dy + H, 1 + dx:1 + dx + W] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    x1, x2 = x1.reshape(C, H, W), x2.reshape(C, H, W)
    k = sw2 / 9 * patch(np.einsum("chw,cij->hwij", x1, x2) / C) + sb2
    q1 = sw2 / 9 * pd((x1 * x1).sum(0) / C) + sb2
    q2 = sw2 / 9 * pd((x2 * x2).sum(0) / C) + sb2
    th = k
    for l in range(L):
        s = np.sqrt(q1[:, :, None, None] * q2[None, None])
        t = np.arccos(np.clip(k / s, -1, 1))
        e = s / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t))
        edt = (np.pi - t) / (2 * np.pi) * th
        if l == L - 1:
            K = sw2 * e.mean() + sb2
            return K + sw2 * edt.mean()
        k = sw2 / 9 * patch(e) + sb2
        th = k + sw2 / 9 * patch(edt)
        q1, q2 = sw2 / 9 * pd(q1 / 2) + sb2, sw2 / 9 * pd(q2 / 2) + sb2


def cntk_variances(x, C, H, W, L=2, sw2=2.0, sb2=0.01):
    """sqrt of the per-pixel variances q_l of one image, l = 1..L (once per image, as ours)."""
    def pd(v):
        b = np.pad(v, 1)
        return sum(b[1 + dy:1 + dy + H, 1 + dx:1 + dx + W] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    x = x.reshape(C, H, W)
    q = sw2 / 9 * pd((x * x).sum(0) / C) + sb2
    out = []
    for _ in range(L):
        out.append(np.sqrt(q))
        q = sw2 / 9 * pd(q / 2) + sb2
    return out


def cntk_pair_tuned(x1, x2, sq1, sq2, C, H, W, L=2, sw2=2.0, sb2=0.01):
    """The same recursion as a careful numpy user writes it: the per-image square roots once per
    image (cntk_variances), rho by products, sin(arccos rho) = sqrt(1 - rho^2), the 3x3 patch sum
    separable (3 column shifts, then 3 row shifts, into preallocated padded buffers), in-place
    updates, the last layer's E and Ed Theta summed directly; a symmetric block's pairs j >= i
    only (cntk_tuned)."""
    pad = np.zeros((H + 2, W + 2, H + 2, W + 2))
    mid = np.zeros((H + 2, W, H + 2, W))

    def patch(a):  # sum_o a(p + o, p' + o), zero outside
        pad[1:-1, 1:-1, 1:-1, 1:-1] = a
        np.add(pad[:, 0:W, :, 0:W], pad[:, 1:W + 1, :, 1:W + 1], out=mid)
        np.add(mid, pad[:, 2:W + 2, :, 2:W + 2], out=mid)
        r = mid[0:H, :, 0:H] + mid[1:H + 1, :, 1:H + 1]
        r += mid[2:H + 2, :, 2:H + 2]
        return r
    x1, x2 = x1.reshape(C, H, W), x2.reshape(C, H, W)
    k = patch(np.einsum("chw,cij->hwij", x1, x2) / C)
    k *= sw2 / 9
    k += sb2
    th = k.copy()
    for l in range(L):
        e, pt = relu_terms(k, sq1[l], sq2[l])  # E[relu relu], pi - theta
        th *= pt
        th *= 1 / (2 * np.pi)  # Ed Theta
        if l == L - 1:
            K = sw2 * e.mean() + sb2
            return K + sw2 * th.mean()
        k = patch(e)
        k *= sw2 / 9
        k += sb2
        th = patch(th)
        th *= sw2 / 9
        th += k


# 1. fc NTK, at the data's dimension and at a small one (the kernel without the shared GEMM); the
# symmetric block X against X (SYRK on both sides, ours also the recursion on one triangle) and a
# cross block X against X2 (a GEMM, every entry), with the first layer's product timed alone
for d in (a.fc_d, 16):
    n = a.fc_n
    for cross in (False, True):
        extra = ["cross"] if cross else []
        e, t_ours, chk, t_og = ours("fc", n, d, a.reps, *extra)
        x, x2 = same_inputs(n, d, 2) if cross else (same_inputs(n, d), None)
        t_np0, th0 = best(lambda: relu_ntk(x, x2), a.reps)
        t_np, th, t_ng = best(lambda: relu_ntk_tuned(x, x2), a.reps, lambda: relu_ntk_tuned(x, x2, gemm_only=True))
        print("fc relu NTK, depth 3, %d x %d %s block, d = %d: ours %.3g entries/s, numpy tuned %.3g entries/s, ours/numpy %.1fx "
              "(numpy direct %.3g entries/s, ours/direct %.1fx); ms: ours %.2f = %s %.2f + rest %.2f, numpy tuned %.2f = matmul %.2f + rest %.2f; "
              "checksums %.12g / %.12g / %.12g"
              % (n, n, "cross" if cross else "symmetric", d, e / t_ours, e / t_np, t_np / t_ours, e / t_np0, t_np0 / t_ours, 1e3 * t_ours,
                 "GEMM" if cross else "SYRK", 1e3 * t_og, 1e3 * (t_ours - t_og), 1e3 * t_np, 1e3 * t_ng, 1e3 * (t_np - t_ng), chk, th.sum(), th0.sum()))

# 2. CNTK
n, hw = a.cntk_n, a.cntk_hw
e, t_ours, chk, _ = ours("cntk", n, 1, hw, hw, 2, a.reps)
x = same_inputs(n, hw * hw)
t_np0, vals0 = best(lambda: [cntk_pair(x[i], x[j], 1, hw, hw) for i in range(n) for j in range(n)], max(1, a.reps - 2))


def cntk_tuned():  # the pairs j >= i of the symmetric block, mirrored (as ours)
    sq = [cntk_variances(x[i], 1, hw, hw) for i in range(n)]
    v = {(i, j): cntk_pair_tuned(x[i], x[j], sq[i], sq[j], 1, hw, hw) for i in range(n) for j in range(i, n)}
    return [v[min(i, j), max(i, j)] for i in range(n) for j in range(n)]


t_np, vals = best(cntk_tuned, max(1, a.reps - 2))
print("CNTK, 2 conv layers, %dx%d images, %d x %d block: ours %.3g entries/s, numpy tuned %.3g entries/s, ours/numpy %.1fx "
      "(numpy direct %.3g entries/s, ours/direct %.1fx; checksums %.12g / %.12g / %.12g; numpy's self-pairs do not pin correlation 1)"
      % (hw, hw, n, n, e / t_ours, e / t_np, t_np / t_ours, e / t_np0, t_np0 / t_ours, chk, sum(vals), sum(vals0)))

# 3. assembly at 1 and 2 ranks
secs = {}
for np_ in (1, 2):
    out = subprocess.run([a.mpiexec, "--oversubscribe", "-n", str(np_), a.gram, "gram", "/dev/null", str(a.gram_n), "0", "784", "64", "-"],
                         env=env, check=True, capture_output=True, text=True).stdout.split()
    secs[np_] = float(out[out.index("seconds") + 1])
    busy = float(out[out.index("busy_max") + 1]), float(out[out.index("busy_mean") + 1])
    print("assembly, fc NTK %d x %d, %d rank(s): %.3f s (per-rank tile time max %.3f s, mean %.3f s)" % (a.gram_n, a.gram_n, np_, secs[np_], *busy))
print("assembly parallel efficiency at 2 ranks: %.2f" % (secs[1] / (2 * secs[2])))
