#!/usr/bin/env bash
# The default study: builds ntkhpc, runs inputs/quickstart.in on this machine's cores, and renders
# its figures and HTML report into quickstart/ (about two minutes on 2 cores).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/quickstart}
mkdir -p "$out"
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$here/build" -j "$(nproc)" --target ntkhpc >/dev/null
bash "$here/jobscripts/run_local.sh" "$here/inputs/quickstart.in" "$(nproc)" -output "$out/quickstart.h5" -overwrite
/usr/bin/python3 "$here/postproc/ntkplot" "$out/quickstart.h5" --out "$out/figs" --open
echo "quickstart: figures and report in $out/figs (open $out/figs/report.html)"
