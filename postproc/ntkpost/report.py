"""Tables (CSV and text) and the one-file HTML report.

    paths = write_report(an, "figs/")   # figs/*.png, runs.csv, groups.csv, critical.csv, report.html

CSV numbers are written with repr() (shortest exact round trip), so runs.csv holds exactly the
values of the file's /summary (columns status ... wall_seconds, lambda_final, peak_step) and run
attrs.
"""
import base64
import csv
import html
import logging
import math
import os
import time

from . import figures as F
from .analysis import PHASES, phase_rule_text
from .coordcheck import exponent_rows as coord_exponent_rows

log = logging.getLogger("ntkpost")

RUN_COLUMNS = ("file", "run", "instance", "cfg", "width", "param", "seed", "eta", "eta_factor",
               "status", "status_name", "steps_done", "n_train_records", "n_test_records", "loss0",
               "loss_peak", "loss_final", "acc_final", "test_loss_final", "test_acc_final",
               "wall_seconds", "lambda_final", "peak_step", "lambda0", "eta_lambda0", "x", "phase", "last_step",
               "L0", "L_peak", "L_max", "L_T", "peak_ratio", "final_ratio", "lambda_T",
               "lambda_ratio", "eta_lambda_T", "sharpness0", "sharpness_T", "min_eig_T",
               "eta_sharpness_T", "train_acc_T", "test_acc_T", "test_loss_T")


def _cell(v):
    if isinstance(v, float):
        return repr(v)
    return v


def write_csv(rows, path, columns=None):
    """rows: list of dicts. columns: order (keys absent from every row are dropped)."""
    if columns is None:
        columns = []
        for r in rows:
            for k in r:
                if k not in columns:
                    columns.append(k)
    else:
        columns = [c for c in columns if any(c in r for r in rows)]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow([_cell(r.get(c, "")) for c in columns])
    return path


def read_csv(path):
    """list of dicts of strings (for tests / notebooks)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _g(v, fmt="%.4g"):
    if isinstance(v, float):
        return "–" if math.isnan(v) else fmt % v
    return str(v)


def _shown(col, v):
    """A table cell as shown: width 0 is the infinite-width (kernel) run, shown as "inf" as in the
    figures; the CSV files keep the file's 0."""
    if col == "width" and not isinstance(v, (str, bool)) and v == 0:
        return "inf"
    return _g(v)


def _table_text(rows, cols, headers=None):
    headers = headers or cols
    data = [[_shown(c, r.get(c, "")) for c in cols] for r in rows]
    widths = [max([len(h)] + [len(d[i]) for d in data]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(d) for d in data])


CRIT_COLS = ("param", "width", "n_runs", "lambda0_mean", "eta_crit_theory", "x_last_lazy", "x_crit",
             "x_max", "eta_crit", "eta_max")
GROUP_COLS = ("param", "width", "lr", "n_seeds", "phase", "phase_counts", "n_settled", "x_mean", "peak_ratio_mean",
              "peak_ratio_std", "lambda_ratio_mean", "eta_lambda_T_mean", "kernel_distance_T_mean", "test_acc_T_mean",
              "test_acc_T_std")


def _crit_cols(an):
    cols = list(CRIT_COLS)
    if any(r["cfg"] for r in an.critical_rows()):
        cols.insert(0, "cfg")
    return cols


def _group_cols(an, rows):
    cols = [c for c in GROUP_COLS if any(isinstance(r.get(c), str) or
                                         (isinstance(r.get(c), float) and not math.isnan(r[c]))
                                         or isinstance(r.get(c), int) for r in rows)]
    if any(r["cfg"] for r in rows):
        cols.insert(0, "cfg")
    return cols


def text_summary(an, max_group_rows=300):
    sw = an.sweep
    out = []
    out.append("ntkhpc sweep: %d file(s), %d runs; status: %s" % (
        len(sw.files), len(sw.runs), ", ".join("%s %d" % kv for kv in sorted(sw.status_counts().items()))))
    for fi in sw.files:
        out.append("  %s: version %s, created %s, %s runs, world_size %s" % (
            fi.path, fi.root.get("version", "?"), fi.root.get("created", "?"), fi.root.get("n_runs", "?"),
            fi.root.get("world_size", "?")))
    out.append("phases: " + ", ".join("%s %d" % (p, n) for p, n in an.phase_counts().items() if n))
    out.append("phase rule: " + phase_rule_text(an.th))
    out.append("thresholds: %r" % an.th)
    out.append("x axis: %s" % an.xlabel)
    if sw.config_diff:
        out.append("configs differ between files in: %s (runs kept apart by cfg)" % ", ".join(sw.config_diff))
    crit = an.critical_rows()
    if crit:
        out.append("")
        out.append("Critical learning rates per width (x = %s; x_crit: smallest x whose seed-majority phase "
                   "is catapult, x_max: smallest divergent; theory for x = eta*lambda0: 2 and 4 (uv) / ~12 (ReLU)):"
                   % an.xshort)
        out.append(_table_text(crit, _crit_cols(an)))
    grows = an.group_rows()
    if grows:
        out.append("")
        out.append("Per learning rate (initial values over every seed, results mean over the seeds that did not diverge):")
        cols = _group_cols(an, grows)
        out.append(_table_text(grows[:max_group_rows], cols))
        if len(grows) > max_group_rows:
            out.append("... %d more rows in groups.csv" % (len(grows) - max_group_rows))
    return "\n".join(out)


# -- HTML -----------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1400px;color:#222;padding:0 1em;overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
.meta{color:#555;font-size:.9em} .pill{display:inline-block;padding:.1em .6em;border-radius:1em;margin:.1em;font-size:.85em;color:#fff}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0} th,td{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f2f2f2;position:sticky;top:0} td.s{text-align:left}
figure{margin:1em 0 2em 0} figure img{max-width:100%;height:auto;border:1px solid #eee} figcaption{font-size:.88em;color:#444;max-width:1100px}
nav a{margin-right:.8em;font-size:.88em} details{margin:.6em 0} summary{cursor:pointer;font-weight:600}
pre{background:#f7f7f7;padding:.6em;font-size:.8em;overflow:auto;max-height:30em;white-space:pre-wrap}
.skip{color:#777;font-size:.88em}
"""


def _html_table(rows, cols, phase_col=None):
    e = html.escape
    h = ['<div class="scroll"><table><thead><tr>' + "".join("<th>%s</th>" % e(c) for c in cols) + "</tr></thead><tbody>"]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            style = ""
            if c == phase_col and v in F.PHASE_COLORS:
                style = ' style="background:%s33"' % F.PHASE_COLORS[v]
            cls = ' class="s"' if isinstance(v, str) else ""
            cells.append("<td%s%s>%s</td>" % (cls, style, e(_shown(c, v))))
        h.append("<tr>" + "".join(cells) + "</tr>")
    h.append("</tbody></table></div>")
    return "\n".join(h)


def html_report(an, fig_results, path, title=None, landscapes=()):
    """Write ONE self-contained HTML file: every figure as a base64 PNG, tables inline."""
    e = html.escape
    sw = an.sweep
    title = title or "ntkhpc catapult report: " + ", ".join(os.path.basename(f.path) for f in sw.files)
    made = [r for r in fig_results if r["path"]]
    skipped = [r for r in fig_results if not r["path"]]
    p = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         "<title>%s</title>" % e(title), "<style>%s</style></head><body>" % _CSS]
    p.append("<h1>%s</h1>" % e(title))
    p.append('<div class="meta">generated %s by ntkpost from %d file(s), %d runs</div>' % (
        e(time.strftime("%Y-%m-%d %H:%M:%S")), len(sw.files), len(sw.runs)))
    p.append("<nav>" + "".join('<a href="#fig-%s">%s</a>' % (e(r["name"]), e(r["name"])) for r in made)
             + '<a href="#tables">tables</a><a href="#config">config</a></nav>')
    # overview
    p.append("<h2>Overview</h2><ul>")
    p.append("<li>status: %s</li>" % e(", ".join("%s %d" % kv for kv in sorted(sw.status_counts().items()))))
    pills = "".join('<span class="pill" style="background:%s">%s %d</span>' % (
        F.PHASE_COLORS.get(ph, "#999"), e(ph), n) for ph, n in an.phase_counts().items() if n)
    p.append("<li>phases: %s</li>" % pills)
    p.append("<li>phase rule (docs/conventions.md): %s</li>" % e(phase_rule_text(an.th)))
    p.append("<li>thresholds: %s</li>" % e(", ".join(
        "%s = %s (%s)" % (k, getattr(an.th, k), an.th.source[k]) for k in an.th.source)))
    p.append("<li>x axis: %s</li>" % e(an.xlabel))
    if sw.config_diff:
        p.append("<li>files differ in config keys %s; runs kept apart</li>" % e(", ".join(sw.config_diff)))
    p.append("</ul>")
    crit = an.critical_rows()
    if crit:
        p.append("<h3>Critical learning rates per width</h3>")
        p.append('<p class="meta">x = %s. x_crit: smallest x whose seed-majority phase is catapult; x_max: '
                 "smallest divergent; x_last_lazy: largest lazy x below x_crit. eta_crit/eta_max: the "
                 "matching absolute learning rates; eta_crit_theory = 2/λ₀.</p>" % e(an.xshort))
        p.append(_html_table(crit, _crit_cols(an)))
    # figures
    p.append("<h2>Figures</h2>")
    for r in made:
        with open(r["path"], "rb") as fh:
            b64 = base64.b64encode(fh.read()).decode("ascii")
        p.append('<figure id="fig-%s"><h3>%s</h3><img alt="%s" src="data:image/png;base64,%s">'
                 "<figcaption>%s</figcaption></figure>" % (e(r["name"]), e(r["title"]), e(r["name"]), b64,
                                                            e(r["caption"] or "")))
    if skipped:
        p.append('<div class="skip"><b>Not drawn (no data in the file):</b><ul>' + "".join(
            "<li>%s: %s</li>" % (e(r["name"]), e(r["skipped"] or "")) for r in skipped) + "</ul></div>")
    # loss landscapes (ntkpost.landscape): one section per landscape file
    for lf, lfigs in landscapes:
        from .landscape import html_section
        p.append(html_section(lf, lfigs, embed=True))
    # tables
    p.append('<h2 id="tables">Tables</h2>')
    grows = an.group_rows()
    p.append("<details open><summary>Per (parameterization, width, learning rate): initial values (x, η, λ₀) over every seed, "
             "results over the seeds that did not diverge (n_settled) "
             "(%d rows; full table in groups.csv)</summary>" % len(grows))
    p.append(_html_table(grows, _group_cols(an, grows), phase_col="phase") + "</details>")
    rcols = [c for c in ("run", "width", "param", "seed", "eta", "eta_factor", "status_name", "steps_done",
                         "lambda0", "x", "phase", "L0", "L_peak", "L_T", "peak_ratio", "peak_step", "lambda_ratio",
                         "test_acc_T", "wall_seconds") if any(c in r for r in an.rows)]
    if len(sw.files) > 1:
        rcols.insert(0, "file")
    rows = [dict(r, file=os.path.basename(r["file"])) for r in an.rows]
    p.append("<details><summary>Every run (%d; full table in runs.csv)</summary>" % len(rows))
    p.append(_html_table(rows, rcols, phase_col="phase") + "</details>")
    # config
    p.append('<h2 id="config">Configuration</h2>')
    for fi in sw.files:
        p.append("<details><summary>%s</summary>" % e(fi.path))
        meta = [dict(key=k, value=str(v)) for k, v in list(fi.root.items()) + list(fi.config.items())]
        p.append(_html_table(meta, ["key", "value"]))
        if fi.deck:
            p.append("<pre>%s</pre>" % e(fi.deck))
        p.append("</details>")
    p.append("</body></html>")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(p))
    return path


def write_report(an, outdir, dpi=110, quiet=False, figure_names=None, keep_figures=False, landscape_files=()):
    """Figures (PNG), runs.csv, groups.csv, critical.csv, summary.txt and report.html in outdir.
    Prints the text summary unless quiet. Returns dict name -> path, and 'figures': the list of
    figures.make_all results (with the matplotlib Figure objects when keep_figures)."""
    os.makedirs(outdir, exist_ok=True)
    res = F.make_all(an, outdir, dpi=dpi, names=figure_names, keep_figures=keep_figures)
    out = {"figures": res}
    out["runs.csv"] = write_csv(an.rows, os.path.join(outdir, "runs.csv"), RUN_COLUMNS)
    out["groups.csv"] = write_csv(an.group_rows(), os.path.join(outdir, "groups.csv"))
    out["critical.csv"] = write_csv(an.critical_rows(), os.path.join(outdir, "critical.csv"))
    cc = coord_exponent_rows(an.sweep)
    if cc:  # the coordinate check's width exponents (features/, -features_every)
        out["coord_check.csv"] = write_csv(cc, os.path.join(outdir, "coord_check.csv"))
    text = text_summary(an)
    made = [r["name"] for r in res if r["path"]]
    skipped = ["%s (%s)" % (r["name"], r["skipped"]) for r in res if not r["path"]]
    text += "\n\nfigures: %s" % ", ".join(made)
    if skipped:
        text += "\nnot drawn: %s" % "; ".join(skipped)
    with open(os.path.join(outdir, "summary.txt"), "w") as fh:
        fh.write(text + "\n")
    out["summary.txt"] = os.path.join(outdir, "summary.txt")
    landscapes = []
    for i, lpath in enumerate(landscape_files):  # figures and numbers of each landscape file
        from . import landscape as LS
        lf = LS.load(lpath)
        landscapes.append((lf, LS.make_all(lf, os.path.join(outdir, "landscape_%d" % i), dpi=dpi)))
    out["report.html"] = html_report(an, res, os.path.join(outdir, "report.html"), landscapes=landscapes)
    if not quiet:
        print(text)
        print("report: %s" % out["report.html"])
    return out


__all__ = ["write_report", "html_report", "text_summary", "write_csv", "read_csv", "RUN_COLUMNS", "PHASES"]
