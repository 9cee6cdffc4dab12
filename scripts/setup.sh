#!/usr/bin/env bash
# Installs every Debian package tessera needs. Idempotent: packages already
# present are skipped, and `apt-get update` runs only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libgloo-dev          # LibTorch 1.13 (CPU) and the headers ProcessGroupGloo needs
  libhdf5-dev hdf5-tools            # CXI files
  libcxxopts-dev                    # command line
  libgtest-dev googletest           # test suite
  libpng-dev                        # PNG previews of the reconstruction
  libfftw3-dev                      # FFTW, linked only with -DTESSERA_FFTW=ON (GPL; README, CPU FFT)
  libtomlplusplus-dev               # run files (TOML)
  python3-torch                     # torchrun, and the prior-training script
  python3-numpy python3-h5py        # scripts/sim: the independent simulator
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
