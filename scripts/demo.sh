#!/usr/bin/env bash
# Sets up, builds, simulates the built-in sample (400 frames of 64x64, 1e6
# photons per frame, Poisson noise) and reconstructs it. Results in results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
mkdir -p results
./build/train/tessera simulate --output results/demo.cxi
./build/train/tessera reconstruct --config scripts/demo.toml   # the settings: scripts/demo.toml
