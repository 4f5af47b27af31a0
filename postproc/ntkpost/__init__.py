"""ntkpost: post-processing of ntkhpc output (catapult-phase figures and reports).

Install with `pip install ./postproc` (or, from a checkout, put postproc/ on sys.path). Then:
    import ntkpost
    sweep = ntkpost.load("out.h5")                    # one file, or a list: combine jobs;
    sweep = ntkpost.load(["out.h5", "more.h5"])       #   robust to partial files
    run = sweep.runs[0]
    run.measurements["train"]["dist_init"]            # every recorded group/dataset, valid rows
    run.measurements["lambda"]["kernel_distance"]     #   (step >= 0), sorted by step
    run.schema["lambda"]["datasets"]["value"]["units"]  # units/descriptions declared in the file
    an = ntkpost.Analysis(sweep)                      # phases, eta*lambda0, seed aggregates
    fig = ntkpost.figures.catapult_curves(an)         # matplotlib Figure (None if no data)
    ntkpost.write_report(an, "figs/")                 # PNGs, CSVs, report.html
The command line is ntkpost.cli.main (console script `ntkplot`, or `python3 -m ntkpost`).
"""
import logging

from . import io, analysis, coordcheck, figures, report  # noqa: F401
from . import transfer  # noqa: F401,E402  (registers the figure "mutransfer")
from . import infinite  # noqa: F401,E402  (registers "width_convergence" and "linearized")
from . import seeds  # noqa: F401,E402  (registers eta_max, catapult_time, batchnorm, explr: issue #18)
from .io import load, read_file, Run, Sweep  # noqa: F401
from .analysis import Analysis, Thresholds, majority_phase, aggregate_curves  # noqa: F401
from .report import write_report  # noqa: F401

__version__ = "0.1.0"
__all__ = ["load", "read_file", "Run", "Sweep", "Analysis", "Thresholds", "majority_phase",
           "aggregate_curves", "write_report", "io", "analysis", "coordcheck", "figures", "report"]
logging.getLogger("ntkpost").addHandler(logging.NullHandler())
