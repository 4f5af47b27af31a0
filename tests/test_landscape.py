#!/usr/bin/python3
"""Loss landscapes against independent numpy evaluations (docs/landscape.md).

Runs a small sweep with -theta_every and surfaces, paths, a PCA surface and a last-layer
(quadratic) surface, then checks with numpy written here (own IDX reader, own standardisation, own
forward pass from docs/conventions.md's layout and multipliers):
  - train/test loss and accuracy at grid points of every surface and path equal numpy's on
    theta_c + alpha dir1 + beta dir2 read from the file (1e-12 relative);
  - filter normalisation: every row of every dense weight of dir1/dir2 has the centre's row norm,
    1-D tensors are zero; the two directions differ and the seed is recorded;
  - the trajectory projection equals numpy's least squares (coordinates and residual norm);
  - the PCA directions equal numpy's SVD of {theta_t - theta_T} (up to sign) with its singular values;
  - the path endpoints equal the runs' recorded train losses, and t runs as documented;
  - a 21 x 11 last-layer surface is the analytic quadratic in (alpha, beta), stored [n_beta, n_alpha]
    (beta rows, alpha columns), and the postproc contour figure draws it the right way round.
Last line: "N passed, M failed".

  NTKHPC=... NTK_SOURCE_DIR=... test_landscape.py
"""
import gzip
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np

SRC = os.environ["NTK_SOURCE_DIR"]
sys.path.insert(0, os.path.join(SRC, "postproc"))
BIN = os.environ["NTKHPC"]
MPI = os.environ.get("NTK_MPIEXEC", "mpiexec")
DATA = "/usr/share/datasets/fashion-mnist"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checklib import expect as check, summary  # noqa: E402


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    s = max(np.abs(a).max(), np.abs(b).max(), 1e-300)
    return float(np.abs(a - b).max() / s)


# ---------------------------------------------------------------- independent model and data

def idx(path, n):
    with gzip.open(path, "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        nd = magic & 0xFF
        dims = struct.unpack(">" + "I" * nd, f.read(4 * nd))
        count = int(np.prod(dims[1:])) if nd > 1 else 1
        return np.frombuffer(f.read(n * count), np.uint8).reshape((n,) + tuple(dims[1:]))


def data(n_train, n_test):
    xtr = idx(DATA + "/train-images-idx3-ubyte.gz", n_train).reshape(n_train, -1) / 255.0
    xte = idx(DATA + "/t10k-images-idx3-ubyte.gz", n_test).reshape(n_test, -1) / 255.0
    ltr = idx(DATA + "/train-labels-idx1-ubyte.gz", n_train).astype(int)
    lte = idx(DATA + "/t10k-labels-idx1-ubyte.gz", n_test).astype(int)
    mu, sc = standardisation(xtr)
    xtr, xte = (xtr - mu) * sc, (xte - mu) * sc
    return xtr, np.eye(10)[ltr], ltr, xte, np.eye(10)[lte], lte


def standardisation(xtr):
    """ntkhpc's -standardize: the training samples' mean and 1 / standard deviation per pixel (1
    where a pixel does not vary)."""
    mu = xtr.mean(0)
    sd = np.sqrt(((xtr - mu) ** 2).mean(0))
    return mu, np.where(sd < 1e-8, 1.0, 1.0 / np.where(sd < 1e-8, 1.0, sd))


class Net:
    """fc net, ntk parameterization, W row-major n_out x n_in then b, per layer."""

    def __init__(self, d, n, depth, k, sw=2 ** 0.5, sb=0.1, act=np.tanh):
        self.dims = [d] + [n] * depth + [k]
        self.sw, self.sb, self.act = sw, sb, act
        self.tab, off = [], 0
        for l in range(depth + 1):
            ni, no = self.dims[l], self.dims[l + 1]
            self.tab.append(("dense%d.W" % l, off, no, ni))
            off += no * ni
            self.tab.append(("dense%d.b" % l, off, no, 1))
            off += no
        self.P = off

    def hidden(self, th, x):
        h = x
        L = len(self.dims) - 2
        for l in range(L):
            _, o, no, ni = self.tab[2 * l]
            _, ob, _, _ = self.tab[2 * l + 1]
            h = self.act(self.sw / np.sqrt(ni) * (h @ th[o:o + no * ni].reshape(no, ni).T) + self.sb * th[ob:ob + no])
        return h

    def readout(self, th, h):
        _, o, no, ni = self.tab[-2]
        _, ob, _, _ = self.tab[-1]
        return self.sw / np.sqrt(ni) * (h @ th[o:o + no * ni].reshape(no, ni).T) + self.sb * th[ob:ob + no]

    def loss_acc(self, th, x, y, lab):
        f = self.readout(th, self.hidden(th, x))
        return ((f - y) ** 2).sum() / (2 * len(x)), float((f.argmax(1) == lab).mean())


# ---------------------------------------------------------------- the runs

DECK = os.path.join(SRC, "tests", "small_sweep.in")
BASE = ["-widths", "32", "-seeds", "3", "-params", "ntk", "-etas", "0.3,1.0", "-steps", "16", "-theta_every", "4", "-quiet"]


def ntk(np_, *args):
    cmd = [MPI, "--oversubscribe", "-n", str(np_), BIN, DECK] + BASE + list(args)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        print(r.stdout[-3000:])
    return r.returncode


def main():
    tmp = tempfile.mkdtemp()
    try:
        run_all(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary()


def run_all(tmp):
    out = os.path.join(tmp, "a.h5")
    land = os.path.join(tmp, "a.landscape.h5")
    rc = ntk(2, "-output", out, "-landscape_steps", "0,end", "-landscape_alpha", "-1,1,5", "-landscape_beta", "-0.5,0.5,3",
             "-landscape_paths", "0:1,0@4:0", "-landscape_path_t", "-0.5,1.5,5", "-landscape_test_samples", "60")
    check(rc == 0, "the sweep + landscape job exited %d" % rc)
    if rc:
        return
    xtr, ytr, ltr, xte, yte, lte = data(200, 100)
    xte, yte, lte = xte[:60], yte[:60], lte[:60]
    net = Net(784, 32, 2, 10)
    src = h5py.File(out, "r")
    f = h5py.File(land, "r")
    check(int(f.attrs["seed"]) == 1 and int(f.attrs["test_samples"]) == 60, "seed / sample counts recorded")

    def theta(run, rec):
        t = src["runs/run_%06d/theta/theta" % run][rec]
        check(int(src["runs/run_%06d/theta/n_params" % run][rec]) == net.P, "P of run %d" % run)
        return t[:net.P]

    # surfaces: values at the corners and the centre, filter normalisation, projection
    for name in ("surface_000", "surface_001"):
        g = f["surfaces/" + name]
        run, rec = int(g.attrs["run"]), int(g.attrs["record"])
        c = theta(run, rec)
        d1, d2 = g["dir1"][:], g["dir2"][:]
        al, be = g["alpha"][:], g["beta"][:]
        check(g["train_loss"].shape == (3, 5) and np.allclose(al, np.linspace(-1, 1, 5)) and np.allclose(be, [-0.5, 0, 0.5]),
              name + ": layout [n_beta, n_alpha] and coordinates")
        check((g["done"][:] == 1).all(), name + ": every point done")
        worst = 0
        for j, i in ((0, 0), (2, 4), (1, 2), (0, 3)):
            th = c + al[i] * d1 + be[j] * d2
            L, A = net.loss_acc(th, xtr, ytr, ltr)
            Lt, At = net.loss_acc(th, xte, yte, lte)
            worst = max(worst, rel(L, g["train_loss"][j, i]), rel(Lt, g["test_loss"][j, i]))
            check(A == g["train_acc"][j, i] and At == g["test_acc"][j, i], "%s (%d,%d): accuracies" % (name, i, j))
        check(worst < 1e-12, "%s: loss vs numpy rel err %.2e" % (name, worst))
        print("%s: run %d step %d, loss vs numpy worst rel err %.1e" % (name, run, int(g.attrs["step"]), worst))
        # filter normalisation, every slice
        ok = True
        for tname, o, no, ni in net.tab:
            for d in (d1, d2):
                if ni == 1:
                    ok &= bool((d[o:o + no] == 0).all())
                else:
                    rn = np.linalg.norm(d[o:o + no * ni].reshape(no, ni), axis=1)
                    wn = np.linalg.norm(c[o:o + no * ni].reshape(no, ni), axis=1)
                    ok &= bool(np.all(np.abs(rn - wn) <= 1e-9 * wn))
        check(ok, name + ": filter normalisation of every row, biases zero")
        check(abs(d1 @ d2) < 0.5 * np.linalg.norm(d1) * np.linalg.norm(d2) and not np.array_equal(d1, d2), name + ": two different directions")
        # projection of the trajectory
        steps = g["traj_step"][:]
        X = np.stack([theta(run, t) for t in range(len(steps))])
        A = np.stack([d1, d2], 1)
        co, res, dist = g["traj_coord"][:], g["traj_residual"][:], g["traj_distance"][:]
        e = 0
        for t in range(len(steps)):
            ab = np.linalg.lstsq(A, X[t] - c, rcond=None)[0]
            r = np.linalg.norm(X[t] - c - A @ ab)
            e = max(e, rel(ab, co[t]) if np.abs(ab).max() > 0 else np.abs(co[t]).max(), abs(r - res[t]) / max(np.linalg.norm(X[t] - c), 1e-300))
            e = max(e, abs(dist[t] - np.linalg.norm(X[t] - c)) / max(dist[t], 1e-300) if dist[t] > 0 else dist[t])
        check(e < 1e-9, "%s: projection vs numpy lstsq rel err %.2e" % (name, e))
        check(list(steps) == [0, 4, 8, 12, 16], name + ": projected steps")

    # paths: values, endpoints
    for name in ("path_000", "path_001"):
        g = f["paths/" + name]
        ra, rb = int(g.attrs["run"]), int(g.attrs["run_b"])
        a, b = theta(ra, int(g.attrs["record"])), theta(rb, int(g.attrs["record_b"]))
        t = g["alpha"][:]
        check(np.allclose(t, np.linspace(-0.5, 1.5, 5)), name + ": t grid")
        worst = max(rel(net.loss_acc(a + t[i] * (b - a), xtr, ytr, ltr)[0], g["train_loss"][0, i]) for i in range(5))
        check(worst < 1e-12, "%s: loss along the line vs numpy rel err %.2e" % (name, worst))
        check(rel(g["dir1"][:], b - a) == 0, name + ": dir1 = theta_B - theta_A")
    g = f["paths/path_000"]
    for i, run in ((1, 0), (3, 1)):  # t = 0 and t = 1: the two runs' final train losses
        Lrec = src["runs/run_%06d/train/loss" % run][-1]
        check(rel(Lrec, g["train_loss"][0, i]) < 1e-12, "path endpoint %d equals run %d's final train loss" % (i, run))
    src.close(), f.close()

    # PCA directions vs numpy SVD, from the finished output (-landscape_from), 1 rank
    pca = os.path.join(tmp, "pca.h5")
    rc = ntk(1, "-output", out, "-landscape_from", out, "-landscape_steps", "end", "-landscape_dir", "pca", "-landscape_output", pca,
             "-landscape_alpha", "-1,1,3", "-landscape_beta", "-1,1,3", "-landscape_runs", "1")
    check(rc == 0, "the pca job exited %d" % rc)
    if rc == 0:
        src = h5py.File(out, "r")
        f = h5py.File(pca, "r")
        g = f["surfaces/surface_000"]
        X = src["runs/run_000001/theta/theta"][:, :net.P]
        U, S, Vt = np.linalg.svd(X[:-1] - X[-1], full_matrices=False)
        e = 0
        for k, dn in enumerate(("dir1", "dir2")):
            v = g[dn][:]
            e = max(e, min(np.abs(v - Vt[k]).max(), np.abs(v + Vt[k]).max()))
        check(e < 1e-8, "pca directions vs numpy SVD max diff %.2e" % e)
        check(rel(g["pca_singular_values"][:], S[:2]) < 1e-10, "pca singular values vs numpy")
        co = g["traj_coord"][:]
        check(rel(np.abs(co[:, 0]), np.abs((X - X[-1]) @ Vt[0])) < 1e-9, "pca projection = coordinates along the components")
        print("pca: directions vs numpy SVD max diff %.1e, singular values %s" % (e, S[:2]))
        src.close(), f.close()

    # 21 x 11 quadratic: only the readout perturbed (dense2.W, dense2.b): L(alpha, beta) is a quadratic
    quad = os.path.join(tmp, "quad.h5")
    rc = ntk(3, "-output", out, "-landscape_from", out, "-landscape_steps", "end", "-landscape_runs", "0", "-landscape_output", quad,
             "-landscape_tensors", "dense2.W,dense2.b", "-landscape_bias", "true", "-landscape_alpha", "-1,3,21", "-landscape_beta", "-0.5,0.5,11")
    check(rc == 0, "the quadratic job exited %d" % rc)
    if rc == 0:
        src = h5py.File(out, "r")
        f = h5py.File(quad, "r")
        g = f["surfaces/surface_000"]
        c = src["runs/run_000000/theta/theta"][-1][:net.P]
        d1, d2 = g["dir1"][:], g["dir2"][:]
        o = net.tab[-2][1]
        check(not d1[:o].any() and not d2[:o].any() and d1[o:].any(), "quadratic: only the readout is perturbed")
        H = net.hidden(c, xtr)
        R = net.readout(c, H) - ytr
        zero = np.zeros_like(c)
        G1 = net.readout(d1, H) - net.readout(zero, H)  # the readout is linear in its parameters
        G2 = net.readout(d2, H) - net.readout(zero, H)
        N = len(xtr)
        q = lambda a, b: ((R + a * G1 + b * G2) ** 2).sum() / (2 * N)
        al, be = np.linspace(-1, 3, 21), np.linspace(-0.5, 0.5, 11)
        Q = np.array([[q(a, b) for a in al] for b in be])
        Lf = g["train_loss"][:]
        check(Lf.shape == (11, 21), "quadratic: stored [n_beta, n_alpha] = (11, 21), got %s" % (Lf.shape,))
        e = rel(Q, Lf)
        check(e < 1e-12, "quadratic: file equals the analytic surface, rel err %.2e" % e)
        check(np.allclose(g["alpha"][:], al) and np.allclose(g["beta"][:], be), "quadratic: coordinates")
        print("quadratic 21 x 11: rel err vs the analytic surface %.1e" % e)
        # the figure: contour lines lie on the analytic level sets, axes alpha (x) and beta (y)
        import matplotlib
        matplotlib.use("Agg")
        from ntkpost import landscape as ls
        lf = ls.load(quad)
        fig, cs = ls.contour(lf.surfaces[0], key="train_loss", return_contours=True)
        ax = fig.axes[0]
        check(np.allclose(ax.get_xlim(), (-1, 3)) and np.allclose(ax.get_ylim(), (-0.5, 0.5)), "figure: x = alpha, y = beta ranges")
        span = Q.max() - Q.min()
        worst, nv = 0.0, 0
        for lev, segs in zip(cs.levels, cs.allsegs):
            for s in segs:
                for x, y in s:
                    worst, nv = max(worst, abs(q(x, y) - lev) / span), nv + 1
        check(nv > 50 and worst < 0.02, "figure: %d contour vertices on the analytic level sets (worst %.3g of the range)" % (nv, worst))
        # the same check on the transposed picture must fail (the test can tell)
        tworst = max(abs(q(y, x) - lev) / span for lev, segs in zip(cs.levels, cs.allsegs) for s in segs for x, y in s[:3])
        check(tworst > 0.05, "figure: a transposed drawing would be detected (%.3g)" % tworst)
        # VTK: a StructuredGrid with alpha fastest, z = log10 of the stored loss
        import xml.etree.ElementTree as ET
        vdir = os.path.join(tmp, "vtk")
        check(ls.main([quad, "--out", vdir]) == 0, "ntkpost.landscape command line")
        root = ET.parse(os.path.join(vdir, "surface_000.vts")).getroot()
        check(root.find("StructuredGrid").get("WholeExtent") == "0 20 0 10 0 0", "vts extent 21 x 11")
        pts = np.array(root.find(".//Points/DataArray").text.split(), float).reshape(-1, 3)
        check(pts.shape[0] == 231 and np.allclose(pts[:21, 0], al) and np.allclose(pts[::21, 1], be) and
              np.allclose(pts[:, 2], np.log10(Lf.reshape(-1))), "vts points: alpha fastest, log10 loss in place")
        vtp = ET.parse(os.path.join(vdir, "surface_000_trajectory.vtp")).getroot()
        check(int(vtp.find(".//Piece").get("NumberOfPoints")) == 5, "vtp: the 5 recorded steps")
        src.close(), f.close()

    # the coarse subgrid: gradient norm and top Hessian eigenvalue against torch autograd + scipy eigsh
    hs = os.path.join(tmp, "hess.h5")
    rc = ntk(2, "-output", out, "-landscape_from", out, "-landscape_steps", "end", "-landscape_runs", "1", "-landscape_output", hs,
             "-landscape_alpha", "-0.5,0.5,3", "-landscape_beta", "-0.5,0.5,3", "-landscape_hess_every", "2", "-landscape_hess_batch", "50")
    check(rc == 0, "the hessian-subgrid job exited %d" % rc)
    if rc == 0:
        import torch
        from scipy.sparse.linalg import LinearOperator, eigsh
        torch.set_default_dtype(torch.float64)
        src = h5py.File(out, "r")
        f = h5py.File(hs, "r")
        g = f["surfaces/surface_000"]
        c = src["runs/run_000001/theta/theta"][-1][:net.P]
        d1, d2 = g["dir1"][:], g["dir2"][:]
        gn, ht = g["grad_norm"][:], g["hess_top"][:]
        sub = np.zeros((3, 3), bool)
        sub[::2, ::2] = True
        check(np.isfinite(gn[sub]).all() and np.isnan(gn[~sub]).all() and np.isfinite(ht[sub]).all() and np.isnan(ht[~sub]).all(),
              "subgrid: values at every 2nd point of each axis, NaN elsewhere")

        def tloss(th, x, y):
            return ((tloss_f(th, x) - torch.from_numpy(y)) ** 2).sum() / (2 * len(x))

        def tloss_f(th, x):
            h = torch.from_numpy(x)
            for l in range(3):
                _, o, no, ni = net.tab[2 * l]
                _, ob, _, _ = net.tab[2 * l + 1]
                h = net.sw / np.sqrt(ni) * (h @ th[o:o + no * ni].reshape(no, ni).T) + net.sb * th[ob:ob + no]
                if l < 2:
                    h = torch.tanh(h)
            return h

        eg = eh = 0
        for j, i in ((0, 0), (2, 2)):
            th = torch.tensor(c + g["alpha"][i] * d1 + g["beta"][j] * d2, requires_grad=True)
            gr, = torch.autograd.grad(tloss(th, xtr, ytr), th)
            eg = max(eg, rel(float(gr.norm()), gn[j, i]))
            t0 = th.detach().clone().requires_grad_(True)
            gr50, = torch.autograd.grad(tloss(t0, xtr[:50], ytr[:50]), t0, create_graph=True)

            def hv(v):
                out_, = torch.autograd.grad(gr50, t0, torch.from_numpy(np.ascontiguousarray(v).reshape(-1)), retain_graph=True)
                return out_.numpy()
            top = eigsh(LinearOperator((net.P, net.P), matvec=hv, dtype=np.float64), k=1, which="LA", tol=1e-10)[0][0]
            eh = max(eh, rel(top, ht[j, i]))
        check(eg < 1e-10, "gradient norm vs torch rel err %.2e" % eg)
        check(eh < 1e-5, "top Hessian eigenvalue vs torch + eigsh rel err %.2e" % eh)
        # Hessian and NTK (Gauss-Newton) eigenvector directions at the centre, on the first 50 samples
        cen = torch.tensor(c, requires_grad=True)
        g50, = torch.autograd.grad(tloss(cen, xtr[:50], ytr[:50]), cen, create_graph=True)

        def Hv(v):
            return torch.autograd.grad(g50, cen, torch.from_numpy(v), retain_graph=True)[0].numpy()

        def fout(th):
            return (tloss_f(th, xtr[:50])).reshape(-1)

        def Gv(v):  # J^T J v / N
            _, jv = torch.autograd.functional.jvp(fout, torch.tensor(c), torch.from_numpy(v))
            _, jtjv = torch.autograd.functional.vjp(fout, torch.tensor(c), jv)
            return jtjv.numpy() / 50
        for kind, op in (("hessian", Hv), ("ntk", Gv)):
            eo = os.path.join(tmp, kind + ".h5")
            rc = ntk(1, "-output", out, "-landscape_from", out, "-landscape_steps", "end", "-landscape_runs", "1", "-landscape_output", eo,
                     "-landscape_dir", kind, "-landscape_alpha", "-0.5,0.5,3", "-landscape_beta", "-0.5,0.5,3", "-landscape_hess_batch", "50")
            check(rc == 0, "the %s-direction job exited %d" % (kind, rc))
            if rc:
                continue
            with h5py.File(eo, "r") as fe:
                ge = fe["surfaces/surface_000"]
                ev, v1, v2 = ge["eigenvalues"][:], ge["dir1"][:], ge["dir2"][:]
                worst = max(np.linalg.norm(op(v) - lam * v) / abs(lam) for v, lam in ((v1, ev[0]), (v2, ev[1])))
                top = eigsh(LinearOperator((net.P, net.P), matvec=lambda v: op(np.ascontiguousarray(v).reshape(-1)), dtype=np.float64),
                            k=2, which="LA", tol=1e-10)[0]
                check(worst < 1e-6 and abs(v1 @ v2) < 1e-6 and abs(np.linalg.norm(v1) - 1) < 1e-12, "%s directions: eigenvectors of the torch operator, residual %.2e" % (kind, worst))
                check(rel(np.sort(top)[::-1], ev) < 1e-8, "%s eigenvalues %s vs eigsh %s" % (kind, ev, np.sort(top)[::-1]))
                print("%s directions: eigenvalues %s, residual vs torch %.1e" % (kind, ev, worst))
        # a quadratic Bezier curve between the two runs' ends: the bend re-trained in torch from the stored t's
        bz = os.path.join(tmp, "bez.h5")
        rc = ntk(2, "-output", out, "-landscape_from", out, "-landscape_paths", "0:1", "-landscape_bezier_steps", "12",
                 "-landscape_path_t", "0,1,5", "-landscape_output", bz)
        check(rc == 0, "the bezier job exited %d" % rc)
        if rc == 0:
            with h5py.File(bz, "r") as fb:
                gb = fb["paths/bezier_000"]
                A = src["runs/run_000000/theta/theta"][-1][:net.P]
                B = src["runs/run_000001/theta/theta"][-1][:net.P]
                lr = float(src["runs/run_000000"].attrs["eta"])
                ts, lsb = gb["bezier_t"][:], gb["bezier_loss"][:]
                bend = torch.tensor(0.5 * (A + B))
                el = 0
                for t, lrec in zip(ts, lsb):
                    phi = ((1 - t) ** 2 * torch.tensor(A) + 2 * t * (1 - t) * bend + t ** 2 * torch.tensor(B)).requires_grad_(True)
                    L = tloss(phi, xtr, ytr)
                    gphi, = torch.autograd.grad(L, phi)
                    el = max(el, rel(float(L), lrec))
                    bend = bend - lr * 2 * t * (1 - t) * gphi
                bend = bend.detach().numpy()
                eb = rel(bend, gb["dir1"][:])
                check(len(ts) == 12 and np.all((ts > 0) & (ts < 1)) and len(set(ts)) == 12, "bezier: 12 fresh t in (0, 1)")
                check(el < 1e-12 and eb < 1e-10, "bezier: training losses (%.1e) and the bend (%.1e) equal torch's" % (el, eb))
                check(rel(gb["dir2"][:], B) == 0, "bezier: dir2 = theta_B")
                tt = gb["alpha"][:]
                ec = max(rel(net.loss_acc((1 - t) ** 2 * A + 2 * t * (1 - t) * bend + t ** 2 * B, xtr, ytr, ltr)[0], gb["train_loss"][0, i])
                         for i, t in enumerate(tt))
                check(ec < 1e-10, "bezier: loss along the curve vs numpy rel err %.1e" % ec)
                Lline = fb["paths/path_000/train_loss"][0]
                print("bezier: bend vs torch %.1e, curve losses %s (line %s)" % (eb, gb["train_loss"][0], Lline))
        print("subgrid: grad norm vs torch %.1e, top Hessian eigenvalue vs eigsh %.1e (values %s)" % (eg, eh, ht[sub]))
        src.close(), f.close()

    # the HTML report finds a.landscape.h5 beside a.h5 and gets a landscape section
    rep = os.path.join(tmp, "rep")
    r = subprocess.run([sys.executable, "-m", "ntkpost", out, "--out", rep, "-q"], cwd=os.path.join(SRC, "postproc"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    html = open(os.path.join(rep, "report.html")).read() if r.returncode == 0 else r.stdout
    check(r.returncode == 0 and "Loss landscapes" in html and html.count("data:image/png") >= 5, "report.html has the landscape section")


if __name__ == "__main__":
    sys.exit(main())
