"""The ntkplot command: figures, CSV tables and a one-file HTML report from ntkhpc output files.

Installed as the console script `ntkplot` (pip install ./postproc); from a checkout, run
postproc/ntkplot (a launcher that calls main() here) or `python3 -m ntkpost`.

    ntkplot out.h5 [more.h5 ...] --out figs/ [--open]
"""
import argparse
import logging
import os
import sys

import matplotlib

from . import figures
from .analysis import Analysis
from .io import load
from .report import write_report


def build_parser():
    ap = argparse.ArgumentParser(
        prog="ntkplot", description="Catapult-phase figures, CSV tables and a one-file HTML report "
        "from one or several ntkhpc HDF5 files (runs of several files are combined).")
    ap.add_argument("files", nargs="+", help="ntkhpc output files (partial files are fine)")
    ap.add_argument("--out", "-o", default="figs", help="output directory (default: figs)")
    ap.add_argument("--open", action="store_true", help="open report.html in a browser")
    ap.add_argument("--dpi", type=int, default=110, help="PNG resolution (default 110)")
    ap.add_argument("--catapult-factor", type=float, help="override /config catapult_factor")
    ap.add_argument("--catapult-window", type=int, help="override /config catapult_window (steps)")
    ap.add_argument("--diverge-factor", type=float, help="override /config diverge_factor")
    ap.add_argument("--figures", help="comma-separated subset of: " + ",".join(figures.ORDER))
    ap.add_argument("--landscape", action="append", default=[],
                    help="an ntkhpc landscape file (docs/landscape.md) for the report's landscape section; "
                         "<output stem>.landscape.h5 beside an output file is found by itself")
    ap.add_argument("-q", "--quiet", action="store_true", help="no text summary, warnings only")
    return ap


def main(argv=None):
    """Run ntkplot with argv (default sys.argv[1:]); returns the exit status."""
    ap = build_parser()
    args = ap.parse_args(argv)
    matplotlib.use("Agg")  # files only, never a window
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="ntkplot: %(message)s")
    missing = [f for f in args.files if not os.path.exists(f)]
    if missing:
        ap.error("no such file: %s" % ", ".join(missing))
    names = None
    if args.figures:
        names = [n.strip() for n in args.figures.split(",") if n.strip()]
        bad = [n for n in names if n not in figures.FIGURES]
        if bad:
            ap.error("unknown figure(s): %s" % ", ".join(bad))
    try:
        sweep = load(args.files)
    except OSError as e:
        print("ntkplot: error: cannot read %s" % e, file=sys.stderr)
        return 1
    an = Analysis(sweep, catapult_factor=args.catapult_factor,
                  catapult_window=args.catapult_window, diverge_factor=args.diverge_factor)
    lands = list(args.landscape)
    for f in args.files:  # the landscape file a job with -landscape_steps writes beside its output
        cand = os.path.splitext(f)[0] + ".landscape.h5"
        if os.path.exists(cand) and cand not in lands:
            lands.append(cand)
    out = write_report(an, args.out, dpi=args.dpi, quiet=args.quiet, figure_names=names, landscape_files=lands)
    if args.open:
        import webbrowser
        webbrowser.open("file://" + os.path.abspath(out["report.html"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
