"""Loss landscapes written by ntkhpc (docs/landscape.md): reading, the numbers (end sharpness,
basin width, path barriers), figures (1-D curves, 2-D contours with the projected trajectory and
its residual, 3-D surfaces, path losses) and VTK export for ParaView.

Value arrays are stored [n_beta, n_alpha]: row j is beta[j], column i is alpha[i]; alpha is the
x axis of every figure and of the VTK grids. Grids may be rectangular.

    lf = ntkpost.landscape.load("out.landscape.h5")
    fig = ntkpost.landscape.contour(lf.surfaces[0])
    python3 -m ntkpost.landscape out.landscape.h5 --out figs/ [--sweep out.h5]
"""
import argparse
import json
import logging
import os
import sys

import h5py
import matplotlib
import numpy as np

from .figures import plt  # pyplot with the package's backend choice

log = logging.getLogger("ntkpost")
VALUES = ("train_loss", "train_acc", "test_loss", "test_acc")


def _s(v):
    return v.decode() if isinstance(v, bytes) else (v.item() if hasattr(v, "item") else v)


class Slice:
    """One surface or path: attrs (dict), alpha, beta, the value arrays [n_beta, n_alpha], done, and
    for surfaces the projected trajectory (traj_step, traj_coord, traj_residual, traj_distance)."""

    def __init__(self, name, g):
        self.name = name
        self.attrs = {k: _s(v) for k, v in g.attrs.items()}
        self.kind = self.attrs.get("kind", "surface")
        self.alpha = g["alpha"][:]
        self.beta = g["beta"][:]
        self.values = {k: g[k][:] for k in VALUES}
        self.done = g["done"][:].astype(bool)
        self.dim = int(self.attrs.get("dim", 1))
        self.traj = {k: g[k][:] for k in ("traj_step", "traj_coord", "traj_residual", "traj_distance") if k in g}

    @property
    def label(self):
        a = self.attrs
        if self.kind in ("path", "bezier"):
            return "%srun %d step %d -> run %d step %d" % ("Bezier: " if self.kind == "bezier" else "", a["run"], a["step"], a["run_b"], a["step_b"])
        return "run %d, step %d (%s)" % (a["run"], a["step"], a.get("direction", ""))


class LandscapeFile:
    def __init__(self, path):
        self.path = path
        with h5py.File(path, "r") as f:
            self.attrs = {k: _s(v) for k, v in f.attrs.items() if k != "spec"}
            self.surfaces = [Slice(n, f["surfaces"][n]) for n in sorted(f["surfaces"])] if "surfaces" in f else []
            self.paths = [Slice(n, f["paths"][n]) for n in sorted(f["paths"])] if "paths" in f else []


def load(path):
    return LandscapeFile(path)


# ---------------------------------------------------------------- numbers

def _crossing(x, y, level):
    """First x > 0 along x where y reaches level (linear interpolation), or NaN."""
    for i in range(1, len(x)):
        if y[i] >= level > y[i - 1]:
            return x[i - 1] + (level - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1])
    return float("nan")


def basin(s, key="train_loss"):
    """Along alpha through beta = 0 (a 1-D slice, or the middle row of a surface): the loss at the
    centre L0, the curvature there (second difference at alpha = 0, in alpha units), and the
    distances to the right and left where the loss first doubles, and their sum (the basin width;
    NaN when the grid ends first)."""
    j = int(np.argmin(np.abs(s.beta)))
    y = s.values[key][j]
    a = s.alpha
    i0 = int(np.argmin(np.abs(a)))
    L0 = float(y[i0])
    curv = float("nan")
    if 0 < i0 < len(a) - 1:
        h = a[i0 + 1] - a[i0]
        curv = float((y[i0 + 1] - 2 * y[i0] + y[i0 - 1]) / h ** 2)
    right = _crossing(a[i0:] - a[i0], y[i0:], 2 * L0)
    left = _crossing(a[i0] - a[:i0 + 1][::-1], y[:i0 + 1][::-1], 2 * L0)
    return {"loss0": L0, "curvature": curv, "double_right": float(right), "double_left": float(left), "width": float(right + left)}


def barrier(p, key="train_loss"):
    """The straight-line barrier of a path: over t in [0, 1], max_t L(t) - ((1 - t) L(0) + t L(1)),
    its location t, the endpoints L(0), L(1), and max_t L(t) - max(L(0), L(1))."""
    t, y = p.alpha, p.values[key][0]
    i0, i1 = int(np.argmin(np.abs(t))), int(np.argmin(np.abs(t - 1)))
    if abs(t[i0]) > 1e-9 or abs(t[i1] - 1) > 1e-9:
        raise ValueError("the path grid does not contain t = 0 and t = 1")
    L0, L1 = float(y[i0]), float(y[i1])
    seg = slice(i0, i1 + 1)
    lin = (1 - t[seg]) * L0 + t[seg] * L1
    k = int(np.argmax(y[seg] - lin))
    return {"loss_a": L0, "loss_b": L1, "height": float((y[seg] - lin)[k]), "t": float(t[seg][k]),
            "height_over_max_end": float(y[seg].max() - max(L0, L1))}


def summary(lf):
    out = {"surfaces": [], "paths": []}
    for s in lf.surfaces:
        d = {"name": s.name, "label": s.label, "run": s.attrs["run"], "step": s.attrs["step"], "basin": basin(s)}
        if s.traj:
            d["trajectory"] = [{"step": int(st), "alpha": float(c[0]), "beta": float(c[1]), "residual": float(r), "distance": float(dd)}
                               for st, c, r, dd in zip(s.traj["traj_step"], s.traj["traj_coord"], s.traj["traj_residual"],
                                                       s.traj["traj_distance"])]
        out["surfaces"].append(d)
    for p in lf.paths:
        try:
            b = barrier(p)
        except ValueError as e:
            b = {"error": str(e)}
        out["paths"].append({"name": p.name, "label": p.label, "barrier": b})
    return out


# ---------------------------------------------------------------- figures

def curves_1d(lf, key="train_loss"):
    """1-D curves along alpha (the beta = 0 row of every surface), one line per surface."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in lf.surfaces:
        j = int(np.argmin(np.abs(s.beta)))
        ax.plot(s.alpha, s.values[key][j], marker=".", label=s.label, gid="curve")
    return _finish_curves(fig, ax, "alpha (filter-normalised units)", key, "1-D slices through the centres")


def _finish_curves(fig, ax, xlabel, key, title):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(key.replace("_", " "))
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def contour(s, key="train_loss", traj=True, return_contours=False, levels=25):
    """2-D contour of a surface, alpha on x and beta on y, with the projected trajectory overlaid,
    its points coloured by the projection residual |theta_t - proj| / |theta_t - theta_c|."""
    Z = s.values[key]
    fig, ax = plt.subplots(figsize=(6.4, 5))
    X, Y = np.meshgrid(s.alpha, s.beta)  # [n_beta, n_alpha], like the stored arrays
    lz = np.log10(np.maximum(Z, 1e-300)) if key.endswith("loss") else Z
    cs = ax.contour(X, Y, Z, levels=levels, cmap="viridis", linewidths=0.8)
    cf = ax.contourf(X, Y, lz, levels=levels, cmap="viridis", alpha=0.35)
    fig.colorbar(cf, ax=ax, label="log10 " + key if key.endswith("loss") else key)
    if traj and s.traj and s.dim == 2:
        co, res, dist = s.traj["traj_coord"], s.traj["traj_residual"], s.traj["traj_distance"]
        frac = np.where(dist > 0, res / np.where(dist > 0, dist, 1), 0.0)
        ax.plot(co[:, 0], co[:, 1], "-", color="k", lw=1, gid="trajectory")
        sc = ax.scatter(co[:, 0], co[:, 1], c=frac, cmap="Reds", vmin=0, vmax=1, edgecolors="k", s=28, zorder=3, gid="trajectory")
        fig.colorbar(sc, ax=ax, label="projection residual / distance")
        for st, c in zip(s.traj["traj_step"][[0, -1]], co[[0, -1]]):
            ax.annotate("t=%d" % st, c, fontsize=7)
    ax.set_xlim(s.alpha[0], s.alpha[-1])
    ax.set_ylim(s.beta[0], s.beta[-1])
    ax.set_xlabel("alpha (dir1)")
    ax.set_ylabel("beta (dir2)")
    ax.set_title(s.label, fontsize=9)
    fig.tight_layout()
    return (fig, cs) if return_contours else fig


def surface_3d(s, key="train_loss"):
    fig = plt.figure(figsize=(6.4, 5))
    ax = fig.add_subplot(projection="3d")
    X, Y = np.meshgrid(s.alpha, s.beta)
    ax.plot_surface(X, Y, np.log10(np.maximum(s.values[key], 1e-300)), cmap="viridis", linewidth=0)
    ax.set_xlabel("alpha")
    ax.set_ylabel("beta")
    ax.set_zlabel("log10 " + key)
    ax.set_title(s.label, fontsize=9)
    return fig


def path_losses(lf, key="train_loss"):
    fig, ax = plt.subplots(figsize=(6, 4))
    for p in lf.paths:
        y = p.values[key][0]
        line, = ax.plot(p.alpha, y, marker=".", label=p.label, gid="curve")
        try:
            b = barrier(p, key)
            ax.plot([b["t"]], [np.interp(b["t"], p.alpha, y)], "v", color=line.get_color(), gid="marker")
        except ValueError:
            pass
    ax.axvline(0, color="0.6", lw=0.6, gid="ref")
    ax.axvline(1, color="0.6", lw=0.6, gid="ref")
    return _finish_curves(fig, ax, "t  (line: theta_A + t (theta_B - theta_A); Bezier: phi(t))", key, "loss along paths between solutions (v: barrier location)")


def make_all(lf, outdir, dpi=110):
    """Every figure as PNG in outdir; returns [(name, path, caption)]."""
    os.makedirs(outdir, exist_ok=True)
    out = []

    def save(fig, name, caption):
        path = os.path.join(outdir, name + ".png")
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        out.append((name, path, caption))

    if lf.surfaces:
        save(curves_1d(lf), "landscape_1d", "Train loss along dir1 through each surface's centre (beta = 0).")
    for s in lf.surfaces:
        if s.dim == 2:
            save(contour(s), "landscape_contour_" + s.name, "Train loss over (alpha, beta) of %s; trajectory coloured by projection residual." % s.label)
            save(surface_3d(s), "landscape_3d_" + s.name, "3-D train-loss surface of %s." % s.label)
    if lf.paths:
        save(path_losses(lf), "landscape_paths", "Train loss along straight lines between solutions.")
    return out


# ---------------------------------------------------------------- VTK

def write_vts(s, path, key="train_loss"):
    """A StructuredGrid (.vts, ASCII XML) of a surface: points (alpha, beta, log10 loss), alpha
    fastest (VTK's order, the same as the stored [n_beta, n_alpha] arrays), every value as point data."""
    nx, ny = len(s.alpha), max(len(s.beta), 1)
    Z = np.log10(np.maximum(s.values[key], 1e-300))
    pts = " ".join("%.17g %.17g %.17g" % (s.alpha[i], s.beta[j], Z[j, i]) for j in range(ny) for i in range(nx))
    data = "".join('<DataArray type="Float64" Name="%s" format="ascii">%s</DataArray>\n' %
                   (k, " ".join("%.17g" % v for v in s.values[k].reshape(-1))) for k in VALUES)
    with open(path, "w") as f:
        f.write('<?xml version="1.0"?>\n<VTKFile type="StructuredGrid" version="0.1" byte_order="LittleEndian">\n'
                '<StructuredGrid WholeExtent="0 %d 0 %d 0 0">\n<Piece Extent="0 %d 0 %d 0 0">\n'
                '<PointData Scalars="%s">\n%s</PointData>\n<Points><DataArray type="Float64" NumberOfComponents="3" format="ascii">%s'
                '</DataArray></Points>\n</Piece>\n</StructuredGrid>\n</VTKFile>\n' % (nx - 1, ny - 1, nx - 1, ny - 1, key, data, pts))


def write_vtp(s, path, key="train_loss"):
    """The projected trajectory as PolyData (.vtp): points (alpha, beta, log10 loss interpolated on the
    surface), one polyline, the step and residual as point data."""
    co, res, st = s.traj["traj_coord"], s.traj["traj_residual"], s.traj["traj_step"]
    Z = np.log10(np.maximum(s.values[key], 1e-300))
    from scipy.interpolate import RegularGridInterpolator
    z = RegularGridInterpolator((s.beta, s.alpha), Z, bounds_error=False, fill_value=np.nan)(np.stack([co[:, 1], co[:, 0]], 1))
    n = len(co)
    with open(path, "w") as f:
        f.write('<?xml version="1.0"?>\n<VTKFile type="PolyData" version="0.1" byte_order="LittleEndian">\n<PolyData>\n'
                '<Piece NumberOfPoints="%d" NumberOfLines="1">\n<PointData>\n'
                '<DataArray type="Int64" Name="step" format="ascii">%s</DataArray>\n'
                '<DataArray type="Float64" Name="residual" format="ascii">%s</DataArray>\n</PointData>\n'
                '<Points><DataArray type="Float64" NumberOfComponents="3" format="ascii">%s</DataArray></Points>\n'
                '<Lines><DataArray type="Int64" Name="connectivity" format="ascii">%s</DataArray>'
                '<DataArray type="Int64" Name="offsets" format="ascii">%d</DataArray></Lines>\n'
                '</Piece>\n</PolyData>\n</VTKFile>\n' % (n, " ".join(str(int(v)) for v in st), " ".join("%.17g" % v for v in res),
                                                         " ".join("%.17g %.17g %.17g" % (c[0], c[1], zz) for c, zz in zip(co, z)),
                                                         " ".join(str(i) for i in range(n)), n))


def export_vtk(lf, outdir):
    os.makedirs(outdir, exist_ok=True)
    out = []
    for s in lf.surfaces:
        p = os.path.join(outdir, s.name + ".vts")
        write_vts(s, p)
        out.append(p)
        if s.dim == 2 and s.traj:
            p = os.path.join(outdir, s.name + "_trajectory.vtp")
            write_vtp(s, p)
            out.append(p)
    return out


# ---------------------------------------------------------------- HTML section and command line

def html_section(lf, fig_results, relto=None, embed=False):
    """A <section> for the HTML report: the numbers and the figures (embedded as base64 PNG, or
    linked relative to relto)."""
    import base64
    import html as H
    sm = summary(lf)
    rows = []
    for s in sm["surfaces"]:
        b = s["basin"]
        rows.append("<tr><td>%s</td><td>%.4g</td><td>%.4g</td><td>%.3g</td><td>%.3g</td><td>%.3g</td></tr>" %
                    (H.escape(s["label"]), b["loss0"], b["curvature"], b["double_left"], b["double_right"], b["width"]))
    prow = []
    for p in sm["paths"]:
        b = p["barrier"]
        if "error" in b:
            prow.append("<tr><td>%s</td><td colspan=4>%s</td></tr>" % (p["label"], b["error"]))
        else:
            prow.append("<tr><td>%s</td><td>%.4g</td><td>%.4g</td><td>%.4g</td><td>%.3g</td></tr>" %
                        (p["label"], b["loss_a"], b["loss_b"], b["height"], b["t"]))
    def src(path):
        if not embed:
            return os.path.relpath(path, relto)
        with open(path, "rb") as fh:
            return "data:image/png;base64," + base64.b64encode(fh.read()).decode("ascii")
    figs = "".join('<figure><img src="%s" style="max-width:48%%"><figcaption>%s</figcaption></figure>' %
                   (src(path), H.escape(cap)) for _, path, cap in fig_results)
    return ("<section id='landscape'><h2>Loss landscapes</h2><p>File %s. Basin: along dir1 through the centre; curvature = "
            "second difference at alpha = 0; the distances at which the train loss doubles (filter-normalised units).</p>"
            "<table><tr><th>surface</th><th>loss</th><th>curvature</th><th>doubling left</th><th>doubling right</th><th>width</th></tr>%s</table>"
            "<table><tr><th>path</th><th>L(0)</th><th>L(1)</th><th>barrier</th><th>at t</th></tr>%s</table>%s</section>" %
            (H.escape(lf.path), "".join(rows), "".join(prow), figs))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m ntkpost.landscape", description="Figures, numbers and VTK files of an ntkhpc landscape file")
    ap.add_argument("file")
    ap.add_argument("--out", "-o", default="figs")
    ap.add_argument("--dpi", type=int, default=110)
    ap.add_argument("--no-vtk", action="store_true")
    args = ap.parse_args(argv)
    matplotlib.use("Agg")
    if not os.path.exists(args.file):
        ap.error("no such file: %s" % args.file)
    lf = load(args.file)
    figs = make_all(lf, args.out, dpi=args.dpi)
    vtk = [] if args.no_vtk else export_vtk(lf, args.out)
    sm = summary(lf)
    with open(os.path.join(args.out, "landscape_summary.json"), "w") as f:
        json.dump(sm, f, indent=1)
    with open(os.path.join(args.out, "landscape.html"), "w") as f:
        f.write("<!doctype html><html><body>%s</body></html>\n" % html_section(lf, figs, args.out))
    print(json.dumps(sm, indent=1))
    print("wrote %d figures, %d VTK files, landscape.html in %s" % (len(figs), len(vtk), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
