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

if [ "$which" != torch2 ]; then
  start=$SECONDS
  bash scripts/build.sh
  echo "=== build/ (LibTorch 1.13) took $((SECONDS - start)) s ==="
  run_suite build "Debian's LibTorch 1.13 (CPU)"
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
