"""docs/img/inf_fmnist.png: finite nets beside their infinite-width kernel runs on one Fashion-MNIST
split (the first n_train training and n_test test images, read from the files, the same in both),
full-batch GD at eta = 1 / lambda_0 of each instance.

Made from two ntkhpc jobs (commands in docs/infinite_width.md, "Science"):
  fc.h5    fc relu depth 2, widths 128 and 512, and -kernel_regression true (the fc NTK)
  cnn.h5   inputs/cntk_fmnist.in: the plain CNN (-arch cnn, 2 conv layers), widths 16 to 64 over
           2 seeds, and -kernel_regression true -kernel_net cntk (the CNTK of the same net)
Finite curves of several seeds are drawn as their seed mean (the seeds' range shaded).
Further files of either family (the same deck run in parts, e.g. one width per job) are merged
into it by width.
usage: inf_fmnist.py fc.h5 cnn.h5 [more.h5 ...] out.png"""
import sys
from collections import defaultdict

import h5py
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curves(path):
    """{width: [(train steps, train loss, test steps, test accuracy, converged test accuracy or None), per seed]}"""
    out = defaultdict(list)
    with h5py.File(path, "r") as f:
        attr = lambda k: f["config"].attrs[k].decode() if isinstance(f["config"].attrs[k], bytes) else f["config"].attrs[k]
        arch = str(attr("arch"))
        split.add((int(attr("n_train")), int(attr("n_test"))))
        for g in f["runs"].values():
            st, sl = g["train/step"][()], g["train/loss"][()]
            ts, ta = g["test/step"][()], g["test/accuracy"][()]
            conv = float(g["kernel/conv_test_accuracy"][0]) if "kernel" in g else None
            out[int(g.attrs["width"])].append((st[st >= 0], sl[st >= 0], ts[ts >= 0], ta[ts >= 0], conv))
    return arch, out


split = set()  # (n_train, n_test) of every file: one split, or the comparison is void
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
families = {"fc": (plt.cm.Blues, "fc NTK (inf)", "fc relu w=%d"), "cnn": (plt.cm.Oranges, "CNTK (inf)", "CNN w=%d")}
merged = {}  # arch -> {width: [per-seed curves]}, over every file
for path in sys.argv[1:-1]:
    arch, runs = curves(path)
    for w, rs in runs.items():
        merged.setdefault(arch, defaultdict(list))[w].extend(rs)
for arch, runs in merged.items():
    cmap, kname, fname = families[arch]
    finite = sorted(w for w in runs if w)
    for i, w in enumerate(finite + [0]):
        color = "k" if w == 0 and arch == "fc" else "tab:red" if w == 0 else cmap(0.35 + 0.5 * i / max(1, len(finite) - 1))
        rs = runs[w]
        n = min(len(r[1]) for r in rs), min(len(r[3]) for r in rs)
        lab = kname if w == 0 else fname % w + (" (%d seeds)" % len(rs) if len(rs) > 1 else "")
        ls = "-" if w == 0 else "--"
        for ax, (si, vi, m) in ((a1, (0, 1, n[0])), (a2, (2, 3, n[1]))):
            y = np.array([r[vi][:m] for r in rs])
            ax.plot(rs[0][si][:m], y.mean(0), ls, color=color, label=lab, lw=1.6 if w == 0 else 1.2)
            if len(rs) > 1:
                ax.fill_between(rs[0][si][:m], y.min(0), y.max(0), color=color, alpha=0.15, lw=0)
        if w == 0:
            a2.axhline(rs[0][4], color=color, lw=0.9, ls=":")
if len(split) != 1:
    sys.exit("inf_fmnist.py: the files hold different splits (n_train, n_test): %s" % sorted(split))
n_train, n_test = split.pop()
a1.set_yscale("log")
a1.set_xlabel("step")
a1.set_ylabel("train loss (1/2N) sum |f - y|^2")
a2.set_xlabel("step")
a2.set_ylabel("test accuracy (%d images)" % n_test)
a2.legend(fontsize=7.5, ncol=2, title="dotted: converged kernel predictor", title_fontsize=7)
a1.set_title("training, eta = 1 / lambda_0 of each instance", fontsize=9)
a2.set_title("Fashion-MNIST, %d train / %d test" % (n_train, n_test), fontsize=9)
fig.tight_layout()
fig.savefig(sys.argv[-1], dpi=110)
