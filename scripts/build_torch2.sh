#!/usr/bin/env bash
# Builds tessera into build-torch2/ (Release) against the pip LibTorch 2.x that
# scripts/setup_torch2.sh installs: with its CUDA LibTorch and nvcc, the CUDA
# kernels are registered and the NCCL process group is compiled (nothing here
# needs a GPU to build; the tests run on the CPU where there is none).
# Extra arguments go to cmake, e.g. -DCMAKE_CUDA_ARCHITECTURES=90.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh          # compilers, HDF5, GoogleTest, and the Gloo headers the pip wheel lacks
bash scripts/setup_torch2.sh
venv=${TESSERA_TORCH2_VENV:-$PWD/.venv-torch2}
prefix=$("$venv/bin/python" -W ignore -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
cmake -S . -B build-torch2 -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" "$@" \
  > build-torch2.log 2>&1 || { cat build-torch2.log; exit 1; }
grep -- "-- tessera:" build-torch2.log || true
cmake --build build-torch2 -j"$(nproc)" >> build-torch2.log 2>&1 || { tail -50 build-torch2.log; exit 1; }
echo "build-torch2: ok (log in build-torch2.log)"
