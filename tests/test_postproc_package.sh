#!/usr/bin/env bash
# postproc as a Python package: `pip install ./postproc` into a fresh venv, offline (no index, no
# build isolation, no dependency downloads: the venv sees Debian's h5py/numpy/matplotlib), then,
# from a directory outside the checkout and with the sources removed, the console script `ntkplot`,
# `python -m ntkpost` and `import ntkpost` (ntkpost.load) work, and the console script writes the
# same report, figures and tables as the checkout launcher postproc/ntkplot on synthetic files.
# Needs python3-venv (ensurepip), python3-setuptools, python3-pip.
set -euo pipefail
: "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
SRC=$(cd "$NTK_SOURCE_DIR" && pwd -P)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }
unset PYTHONPATH PYTHONHOME PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

"$NTK_PYTHON" -c "import ensurepip, venv" 2>/dev/null ||
  fail "$NTK_PYTHON has no venv/ensurepip (Debian: apt install python3-venv)"

# pip builds in the source tree (build/, ntkpost.egg-info): install a copy of postproc/, so the
# checkout is left untouched and parallel runs do not collide.
mkdir -p "$tmp/src"
(cd "$SRC" && tar --exclude=build --exclude='*.egg-info' --exclude=__pycache__ -cf - postproc) |
  (cd "$tmp/src" && tar -xf -)
"$NTK_PYTHON" -m venv --system-site-packages "$tmp/venv" >"$tmp/venv.log" 2>&1 ||
  { cat "$tmp/venv.log"; fail "python3 -m venv --system-site-packages"; }
V=$tmp/venv/bin
(cd "$tmp/src" && "$V/pip" install --no-build-isolation --no-deps --no-index --no-cache-dir ./postproc) \
  >"$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log"; fail "pip install ./postproc"; }
grep -q "Successfully installed ntkpost-" "$tmp/pip.log" || { cat "$tmp/pip.log"; fail "pip did not install ntkpost"; }
pass "pip install --no-build-isolation --no-deps --no-index ./postproc"
rm -rf "$tmp/src"  # the installed package must not need the sources

# synthetic files: every measurement (lambda/, hessian/, spectrum/, density/, toy/) and a second
# file (another width) to combine
mkdir -p "$tmp/h5" "$tmp/pkg" "$tmp/co"
"$NTK_PYTHON" - "$SRC/tests" "$tmp/h5" <<'EOF'
import os, sys
sys.path.insert(0, sys.argv[1])
import postproc_synth as s
d = sys.argv[2]
s.make_file(os.path.join(d, "a.h5"), widths=(64, 256), seeds=(0, 1), params=("ntk", "sp"),
            with_lambda=True, with_hessian=True, with_spectra=True, with_spectrum=True, with_density=True)
s.make_file(os.path.join(d, "b.h5"), widths=(1024,), seeds=(0, 1), params=("ntk", "sp"), with_lambda=True)
EOF
A=$tmp/h5/a.h5 B=$tmp/h5/b.h5

cd "$tmp/pkg"  # outside the checkout
script=$V/ntkplot
[[ -x $script ]] || fail "no console script $script"
[[ $(head -1 "$script") == "#!$tmp/venv/bin/python"* ]] || fail "console script shebang: $(head -1 "$script")"
"$script" --help | grep -q "^usage: ntkplot" || fail "ntkplot --help"
"$V/python" -m ntkpost --help | grep -q "^usage: ntkplot" || fail "python -m ntkpost --help"
set +e
"$script" >/dev/null 2>&1; rc_none=$?
"$script" "$tmp/none.h5" --out "$tmp/none" >/dev/null 2>&1; rc_missing=$?
set -e
[[ $rc_none == 2 && $rc_missing == 2 ]] || fail "ntkplot usage errors: exit $rc_none (no args), $rc_missing (missing file)"
pass "console script ntkplot: --help, usage errors; python -m ntkpost"

"$V/python" - "$tmp/venv" "$SRC" "$A" "$B" <<'EOF'
import os, pathlib, sys
from importlib.metadata import entry_points, version
import h5py
import ntkpost
venv, src, a, b = (os.path.realpath(p) for p in sys.argv[1:5])
where = os.path.realpath(ntkpost.__file__)
assert where.startswith(venv + os.sep), "ntkpost imported from %s, not the venv" % where
assert not any(os.path.realpath(p or ".").startswith(src + os.sep + "postproc") for p in sys.path), sys.path
assert version("ntkpost") == ntkpost.__version__, (version("ntkpost"), ntkpost.__version__)
eps = {e.name: e.value for e in entry_points(group="console_scripts") if e.dist and e.dist.name == "ntkpost"}
assert eps == {"ntkplot": "ntkpost.cli:main"}, eps
one, lst, pth = ntkpost.load(a), ntkpost.load([a]), ntkpost.load(pathlib.Path(a))
key = lambda sw: [(r.index, r.width, r.seed, r.param, r.eta_key) for r in sw.runs]
assert key(one) and key(one) == key(lst) == key(pth)
with h5py.File(a, "r") as f:
    groups = [g for g in f.attrs["measurements"].decode().split(",") if g]
    nds = {g: set(f["runs/run_000000"][g]) for g in groups}
for r in one.runs:
    assert list(r.measurements) == groups, (list(r.measurements), groups)
    assert {g: set(m) for g, m in r.measurements.items()} == nds
    assert r.train["dist_init"].shape == r.train["step"].shape and r.train["dist_init"][0] == 0
    assert r.lam["kernel_distance"].shape == r.lam["step"].shape and r.lam["kernel_distance"][0] == 0
    assert r.schema["lambda"]["datasets"]["kernel_distance"]["description"]
both = ntkpost.load([a, b])
assert len(both.files) == 2 and len(both.runs) == len(one.runs) + len(ntkpost.load(b).runs)
assert both.widths == [64, 256, 1024], both.widths
print("ok: import ntkpost from the venv; ntkpost.load(path | [paths] | Path): %d runs, groups %s, "
      "train/dist_init and lambda/kernel_distance in every run" % (len(one.runs), ",".join(groups)))
EOF

# the console script and the checkout launcher: same figures, tables, summary and report
(cd "$tmp/pkg" && "$script" "$A" "$B" --out figs >stdout 2>stderr) || { cat "$tmp/pkg/stderr"; fail "ntkplot a.h5 b.h5"; }
(cd "$tmp/co" && "$NTK_PYTHON" "$SRC/postproc/ntkplot" "$A" "$B" --out figs >stdout 2>stderr) ||
  { cat "$tmp/co/stderr"; fail "postproc/ntkplot a.h5 b.h5"; }
pkg_files=$(cd "$tmp/pkg/figs" && ls)
[[ $pkg_files == "$(cd "$tmp/co/figs" && ls)" ]] || fail "different outputs: $pkg_files vs $(ls "$tmp/co/figs")"
for f in report.html runs.csv groups.csv critical.csv summary.txt catapult_curves.png \
  lambda_curves.png sharpness_curves.png hessian_density.png; do
  [[ -s $tmp/pkg/figs/$f ]] || fail "console script wrote no $f"
done
n_png=$(ls "$tmp/pkg/figs" | grep -c '\.png$')
[[ $n_png -ge 10 ]] || fail "only $n_png figures: $pkg_files"
for f in $pkg_files; do
  if [[ $f == report.html ]]; then  # differs only in its "generated <time>" line
    diff <(sed 's/generated [0-9: -]* by/generated by/' "$tmp/pkg/figs/$f") \
      <(sed 's/generated [0-9: -]* by/generated by/' "$tmp/co/figs/$f") >/dev/null || fail "report.html differs"
  else
    cmp -s "$tmp/pkg/figs/$f" "$tmp/co/figs/$f" || fail "$f differs between the console script and postproc/ntkplot"
  fi
done
for s in stdout stderr; do
  cmp -s "$tmp/pkg/$s" "$tmp/co/$s" || { diff "$tmp/pkg/$s" "$tmp/co/$s" | head; fail "printed $s differs"; }
done
grep -q "Critical learning rates" "$tmp/pkg/stdout" || fail "no summary printed"
pass "console script = checkout launcher on 2 synthetic files: $(echo "$pkg_files" | wc -l) outputs ($n_png figures), summary"
echo "postproc_package: all passed"
