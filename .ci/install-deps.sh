#!/usr/bin/env bash
# Installs everything ntkhpc needs to build, test and plot on Debian 12 (run as root or via sudo).
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq \
  build-essential cmake pkg-config git ca-certificates \
  openmpi-bin libopenmpi-dev petsc-dev slepc-dev libhdf5-openmpi-dev libscalapack-openmpi-dev \
  libopenblas-dev zlib1g-dev librandom123-dev dataset-fashion-mnist \
  python3 python3-h5py python3-numpy python3-matplotlib python3-torch python3-scipy \
  python3-h5netcdf python3-xarray python3-pytest python3-venv python3-setuptools python3-pip >/dev/null
echo "install-deps: done"
