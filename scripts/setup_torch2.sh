#!/usr/bin/env bash
# Installs a pip PyTorch 2.x (with its CUDA LibTorch) into a virtual
# environment, for the second supported build (scripts/build_torch2.sh).
# Idempotent: an environment that already holds the wanted version is kept.
#
#   TESSERA_TORCH2_VENV     where the environment lives (default: .venv-torch2/ in the clone;
#                           CI keeps it outside the clone so that later runs reuse it)
#   TESSERA_TORCH2_VERSION  the torch version (default 2.11.0: what our GPU machine runs;
#                           PyPI's Linux x86-64 wheel of 2.11.0 is the CUDA 13.0 build)
#   PYTHON                  the interpreter that creates the environment (default python3)
#
# With torch it installs mkl-include (MKL's headers, for the CPU FFT).
# It downloads the torch wheel (531 MB) and the NVIDIA runtime wheels it
# depends on (cuBLAS, cuDNN, cuFFT, NCCL, ...): 28 wheels, 2.7 GB, 4.6 GB
# installed, in about 6 minutes here.
# All of them, rather than `pip install --no-deps torch` on top of the system
# CUDA toolkit: libtorch_cuda.so needs cuSPARSELt, NVSHMEM and cuFile, which
# the toolkit does not carry, and every test binary loads it (gtest discovery
# runs them at build time), so a torch without its wheels does not even build.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${TESSERA_TORCH2_VENV:-$PWD/.venv-torch2}
version=${TESSERA_TORCH2_VERSION:-2.11.0}
python=${PYTHON:-python3}

installed_version() {
  [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" -W ignore -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null
}

if [ "$(installed_version || true)" = "$version" ]; then
  echo "setup_torch2: torch $version already in $venv"
else
  if [ ! -x "$venv/bin/pip" ]; then
    if ! "$python" -m venv "$venv" 2>/dev/null; then
      # Debian's python3 keeps venv (ensurepip) in a separate package.
      SUDO=""
      [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv
      rm -rf "$venv"
      "$python" -m venv "$venv"
    fi
  fi
  echo "setup_torch2: installing torch==$version into $venv (about 3 GB of downloads)"
  start=$(date +%s)
  "$venv/bin/pip" install --progress-bar off -q "torch==$version"
  echo "setup_torch2: torch $version installed in $(( $(date +%s) - start )) s"
fi
# MKL's FFT headers (1.3 MB): the pip LibTorch on x86-64 links MKL and exports
# its DFTI, which the fused operators then call directly (src/fft). The
# headers of the MKL release inside torch 2.11 (2024.2).
if [ "$(uname -m)" = x86_64 ] && [ ! -f "$venv/include/mkl_dfti.h" ]; then
  "$venv/bin/pip" install --progress-bar off -q "mkl-include==${TESSERA_MKL_INCLUDE_VERSION:-2024.2.0}"
fi
"$venv/bin/python" -W ignore -c 'import torch; print("setup_torch2: torch", torch.__version__, "CUDA", torch.version.cuda, "cmake prefix", torch.utils.cmake_prefix_path)'
