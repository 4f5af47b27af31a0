"""ntkpost: post-processing of ntkhpc output (catapult-phase figures and reports).

Notebook use:
    import sys; sys.path.insert(0, "postproc")
    import ntkpost
    sweep = ntkpost.load(["out.h5", "more.h5"])      # combine jobs; robust to partial files
    run = sweep.runs[0]
    run.measurements["lambda"]["kernel_distance"]     # any measurement group/dataset, valid rows
    run.schema["lambda"]["datasets"]["value"]["units"]  # units/descriptions declared in the file
    an = ntkpost.Analysis(sweep)                      # phases, eta*lambda0, seed aggregates
    fig = ntkpost.figures.catapult_curves(an)         # matplotlib Figure (None if no data)
    ntkpost.report.write_report(an, "figs/")          # PNGs, CSVs, report.html
"""
import logging

from . import io, analysis, figures, report  # noqa: F401
from .io import load, read_file, Run, Sweep  # noqa: F401
from .analysis import Analysis, Thresholds, majority_phase, aggregate_curves  # noqa: F401
from .report import write_report  # noqa: F401

__version__ = "0.1.0"
logging.getLogger("ntkpost").addHandler(logging.NullHandler())
