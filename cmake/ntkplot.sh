#!/bin/sh
# Installed as bin/ntkplot by `cmake --install`: runs the postproc installed beside ntkhpc
# (share/ntkhpc/postproc/ntkplot, which finds its own package).
here=$(dirname "$(readlink -f "$0")")
exec "$here/../share/ntkhpc/postproc/ntkplot" "$@"
