#!/usr/bin/env bash
# Install what a fresh Debian machine needs to build and test mlalora.
# Idempotent and quiet when everything is already there. Run as root (CI) or
# with sudo available. The CUDA toolkit (nvcc, cuBLAS) is optional: without it
# the CPU parts build and the GPU tests skip.
set -euo pipefail

DEB_PACKAGES=(cmake g++ make pkg-config libeigen3-dev catch2 librapidcheck-dev libhdf5-dev libcli11-dev
              python3 python3-pip python3-h5py python3-numpy)
PY_PACKAGES=(nbformat nbconvert nbclient ipykernel matplotlib)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python side (reports are read with h5py; notebooks are executed headless).
# Whichever python3 is first on PATH gets them (Debian's or a pyenv one).
py_missing=()
python3 -c "import h5py, numpy" 2>/dev/null || py_missing+=(h5py numpy)
for m in nbformat nbconvert nbclient ipykernel matplotlib; do
  python3 -c "import $m" 2>/dev/null || py_missing+=("$m")
done
if ((${#py_missing[@]})); then
  echo "setup: installing Python packages: ${py_missing[*]}"
  python3 -m pip install -q --disable-pip-version-check "${py_missing[@]}" 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages "${py_missing[@]}"
fi
command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ] ||
  echo "setup: note: nvcc not found; CUDA kernels will not be built (GPU tests skip)"
exit 0
