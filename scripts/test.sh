#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite through ctest.
#   scripts/test.sh          against Debian's LibTorch 1.13 (build/)
#   scripts/test.sh torch2   against the pip LibTorch 2.x with CUDA (build-torch2/; tests on the CPU,
#                            GPU-only tests skip without a device)
#   scripts/test.sh both     both, 1.13 first (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-debian}
case "$which" in debian|torch2|both) ;; *) echo "usage: $0 [debian|torch2|both]" >&2; exit 2 ;; esac
# Two test binaries share the cores (-j2): OpenMP joins that spin for a busy
# core would wait for whole scheduler time slices.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

run_suite() {  # build dir, title
  echo "=== tests against $2 ($1/) ==="
  local start=$SECONDS
  local rc=0
  (cd "$1" && ctest --output-on-failure --timeout 600 -j2) || rc=$?
  # Why tests were skipped (no GPU, no torchrun), with how many each.
  grep -h -A1 ': Skipped$' "$1/Testing/Temporary/LastTest.log" 2>/dev/null |
    grep -v -e ': Skipped$' -e '^--$' | sort | uniq -c | sed 's/^/skipped: /' || true
  [ "$rc" -eq 0 ] || exit "$rc"
  echo "=== $2: suite took $((SECONDS - start)) s ==="
}

# The installed package as a user's project sees it: cmake --install, then
# examples/custom_parts (its own CMakeLists.txt, find_package(tessera)) built
# against the installed tree and run.
check_installed_package() {  # build dir
  local prefix="$PWD/$1/install" example="$1/example" start=$SECONDS
  rm -rf "$prefix" "$example"
  cmake --install "$1" --prefix "$prefix" > "$1/install.log" 2>&1 || { cat "$1/install.log"; exit 1; }
  cmake -S examples/custom_parts -B "$example" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" > "$1/example.log" 2>&1 || { cat "$1/example.log"; exit 1; }
  cmake --build "$example" >> "$1/example.log" 2>&1 || { tail -50 "$1/example.log"; exit 1; }
  (cd "$example" && OMP_NUM_THREADS=1 ./custom_parts) || { echo "examples/custom_parts failed"; exit 1; }
  echo "=== installed package and examples/custom_parts: $((SECONDS - start)) s ==="
}

if [ "$which" != torch2 ]; then
  start=$SECONDS
  bash scripts/build.sh
  echo "=== build/ (LibTorch 1.13) took $((SECONDS - start)) s ==="
  run_suite build "Debian's LibTorch 1.13 (CPU)"
  check_installed_package build
fi
if [ "$which" != debian ]; then
  start=$SECONDS
  bash scripts/build_torch2.sh
  echo "=== build-torch2/ (setup and build) took $((SECONDS - start)) s ==="
  venv=${TESSERA_TORCH2_VENV:-$PWD/.venv-torch2}
  # The multi-process tests launch torchrun: take the one of the same version,
  # whose store protocol matches the LibTorch the tests are built against
  # (only torchrun: the environment's python3 would shadow Debian's).
  mkdir -p build-torch2/launcher
  ln -sf "$venv/bin/torchrun" build-torch2/launcher/torchrun
  PATH="$PWD/build-torch2/launcher:$PATH" run_suite build-torch2 "pip LibTorch $("$venv/bin/python" -W ignore -c 'import torch; print(torch.__version__)' 2>/dev/null) (CUDA build, tests on the CPU)"
fi
