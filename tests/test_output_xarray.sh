#!/usr/bin/env bash
# The output describes itself: every measurement group of every run opens with
# xarray.open_dataset(file, group=..., engine="h5netcdf"), its dimensions named by the step scale
# and the vector index scales, with the same values, units and descriptions as h5py reads; and
# docs/output.md and the file agree (tests/test_output_docs.py). The file has every measurement on
# and the eta_max search and the kernel-regression run, so that everything the output can hold is there.
set -uo pipefail
: "${NTKHPC:?}" "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
"$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" "$NTK_SOURCE_DIR/inputs/quickstart.in" -quiet -widths 16,32 -seeds 1 -params ntk,mup \
  -eta_factors 1 -steps 10 -n_train 40 -n_test 20 -ntk_batch 10 -hess_every 5 -density_steps 0,10 -slq_probes 2 -slq_lanczos 5 \
  -spectrum_steps 0,10 -features_every 5 -eta_max_search true -eta_max_steps 5 -ntk_weighting plain -outputs_every 5 -linearized true -linearized_every 5 -kernel_regression true -align_every 5 -loss_peak true -scale_inv_every 5 -theta_every 5 -output "$tmp/a.h5" >"$tmp/log" 2>&1 ||
  { cat "$tmp/log"; echo "0 passed, 1 failed"; exit 1; }
"$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/test_output_docs.py" "$tmp/a.h5" "$NTK_SOURCE_DIR/docs/output.md" || docs_failed=1
"$NTK_PYTHON" - "$tmp/a.h5" <<'PY'
import sys
import h5py
import numpy as np
import xarray as xr

path, passed, failed = sys.argv[1], 0, 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


with h5py.File(path, "r") as f:
    groups = text(f.attrs["measurements"]).split(",")
    check(set(groups) >= {"train", "test", "lambda", "spectrum", "hessian", "density"}, f"measurements {groups}")
    for run in f["runs"]:
        for g in groups:
            h = f["runs"][run][g]
            try:
                ds = xr.open_dataset(path, group=f"runs/{run}/{g}", engine="h5netcdf")
            except Exception as e:  # the point of the test: no flags, no phony dimensions
                check(False, f"{run}/{g}: xarray cannot open it: {e}")
                continue
            check(list(ds["step"].dims) == ["step"] and np.array_equal(ds["step"].values, h["step"][()]), f"{run}/{g}: step")
            for name, d in h.items():
                if name == "step":
                    continue
                v = ds[name]
                want = ["step"] if d.ndim == 1 else ["step", f"{g}_{name}"]
                check(list(v.dims) == want, f"{run}/{g}/{name}: dims {list(v.dims)}, want {want}")
                check(np.array_equal(v.values, d[()], equal_nan=d.dtype.kind == "f"), f"{run}/{g}/{name}: values")
                check(v.attrs.get("units") == text(d.attrs["units"]) and v.attrs.get("description") == text(d.attrs["description"]),
                      f"{run}/{g}/{name}: units/description")
                if d.ndim == 2:
                    check(np.array_equal(ds[f"{g}_{name}"].values, np.arange(d.shape[1])), f"{run}/{g}/{name}: index scale")
            ds.close()
print(f"test_output_xarray: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
rc=$?
[[ $rc -eq 0 && -z ${docs_failed:-} ]]
