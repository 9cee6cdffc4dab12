#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
cd build
# Two test binaries share the cores (-j2): OpenMP joins that spin for a busy
# core would wait for whole scheduler time slices.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
ctest --output-on-failure --timeout 600 -j2
