#!/usr/bin/env bash
# cmake --install puts the program, the decks, the job scripts, postproc and the docs in the GNU
# places under a prefix, and what is installed works there: ntkhpc -version, a small deck from
# share/ntkhpc/inputs run by the installed binary, and bin/ntkplot drawing its figures.
set -uo pipefail
: "${NTK_BUILD_DIR:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
p="$tmp/prefix"
cmake --install "$NTK_BUILD_DIR" --prefix "$p" >"$tmp/install.log" 2>&1
check "cmake --install failed: $(tail -2 "$tmp/install.log")" test $? -eq 0
for f in bin/ntkhpc bin/ntkplot share/ntkhpc/inputs/quickstart.in share/ntkhpc/inputs/wrn.in share/ntkhpc/jobscripts/wrn.sbatch \
         share/ntkhpc/postproc/ntkplot share/ntkhpc/postproc/ntkpost/io.py share/ntkhpc/postproc/pyproject.toml \
         share/doc/ntkhpc/README.md share/doc/ntkhpc/conventions.md share/doc/ntkhpc/architecture.md share/doc/ntkhpc/output.md; do
  check "$f is not installed" test -e "$p/$f"
done
check "bin/ntkhpc is not executable" test -x "$p/bin/ntkhpc"
check "jobscripts lost their mode" test -x "$p/share/ntkhpc/jobscripts/run_local.sh"
check "a build directory or cache was installed" bash -c '! find "$1" -name __pycache__ -o -name "*.egg-info" | grep -q .' _ "$p"
ver=$("$p/bin/ntkhpc" -version 2>&1)
check "installed ntkhpc -version: '$ver'" bash -c '[[ $1 =~ ^ntkhpc\ [0-9] ]]' _ "$ver"
# The installed binary on an installed deck, from a directory outside the checkout, with PATH.
mkdir "$tmp/run" && cd "$tmp/run" || exit 1
PATH="$p/bin:$PATH" "$MPIEXEC" -q --oversubscribe -n 2 ntkhpc "$p/share/ntkhpc/inputs/quickstart.in" -quiet -widths 16 -seeds 0 \
  -eta_factors 1,3 -steps 6 -n_train 40 -n_test 20 -ntk_batch 10 -output q.h5 >"$tmp/run.log" 2>&1
check "installed ntkhpc on the installed quickstart deck: $(tail -2 "$tmp/run.log")" test $? -eq 0
PATH="$p/bin:$PATH" ntkplot q.h5 --out figs >"$tmp/plot.log" 2>&1
check "installed ntkplot: $(tail -2 "$tmp/plot.log")" test $? -eq 0
check "installed ntkplot wrote no report" test -s figs/report.html
check "installed ntkplot wrote no figure" bash -c 'ls figs/*.png >/dev/null 2>&1'
finish test_install
