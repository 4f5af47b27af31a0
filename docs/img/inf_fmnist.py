"""docs/img/inf_fmnist.png: finite fc nets beside the infinite-width kernel runs on one Fashion-MNIST
split (100 train, 100 test), full-batch GD at eta = 1 / lambda_0 of each instance, 1000 steps.

Made from two ntkhpc jobs (2 ranks; commands in docs/infinite_width.md, "Science"):
  fc.h5    fc relu depth 2, widths 128 and 512, and -kernel_regression true (the fc NTK)
  cntk.h5  fc relu depth 2, width 256, and -kernel_regression true -kernel_net cntk (CNTK, 2 conv layers)
usage: inf_fmnist.py fc.h5 cntk.h5 out.png"""
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
styles = {}
for path, kname in ((sys.argv[1], "fc NTK (inf)"), (sys.argv[2], "CNTK (inf)")):
    f = h5py.File(path, "r")
    for r in f["runs"]:
        g = f["runs"][r]
        w = int(g.attrs["width"])
        if w and path == sys.argv[2] and w == 256 and "fc w=256" in styles:
            continue
        lab = kname if w == 0 else "fc w=%d" % w
        st, sl = g["train/step"][()], g["train/loss"][()]
        ts, ta = g["test/step"][()], g["test/accuracy"][()]
        ls = "-" if w == 0 else "--"
        (l,) = a1.plot(st[st >= 0], sl[st >= 0], ls, label=lab)
        a2.plot(ts[ts >= 0], ta[ts >= 0], ls, color=l.get_color(), label=lab)
        if w == 0:
            a2.axhline(g["kernel/conv_test_accuracy"][0], color=l.get_color(), lw=0.8, ls=":")
        styles[lab] = 1
a1.set_yscale("log")
a1.set_xlabel("step")
a1.set_ylabel("train loss (1/2N) sum |f - y|^2")
a2.set_xlabel("step")
a2.set_ylabel("test accuracy (100 images)")
a2.legend(fontsize=8, title="dotted: converged kernel predictor", title_fontsize=7)
a1.set_title("training, eta = 1 / lambda_0", fontsize=9)
a2.set_title("Fashion-MNIST, 100 train / 100 test", fontsize=9)
fig.tight_layout()
fig.savefig(sys.argv[3], dpi=110)
