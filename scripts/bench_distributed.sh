#!/bin/bash
# Distributed benchmark on this machine (issue 4): simulates a sample, prints
# what `tessera plan` predicts for it, then runs bench_distributed for
# K = 1, 2, 4, 8 ranks (measured memory, time, traffic and waits next to the
# same memory model's predictions).
#
#   scripts/bench_distributed.sh [BUILD_DIR] [bench_distributed options, e.g. --launcher torchrun]
#
# BUILD_DIR defaults to ./build. One thread per rank (OMP_NUM_THREADS=1);
# ranks beyond the core count share cores.
set -euo pipefail
BUILD=${1:-build}
shift || true
TESSERA=$BUILD/train/tessera
BENCH=$BUILD/benchmarks/bench_distributed
for f in "$TESSERA" "$BENCH"; do
  [ -x "$f" ] || { echo "$0: $f not found: build the tessera and bench_distributed targets first" >&2; exit 1; }
done
DIR=$(mktemp -d "${TMPDIR:-/tmp}/tessera_bench_dist.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
SAMPLE=$DIR/sample.cxi

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== sample: tessera simulate --scan 48 --frame 64 --step 4"
OMP_NUM_THREADS=2 "$TESSERA" simulate -o "$SAMPLE" --scan 48 --frame 64 --step 4
echo
echo "== tessera plan (predictions)"
"$TESSERA" plan "$SAMPLE" --ranks 1,2,4,8 --show 0
echo
echo "== bench_distributed (measurements)"
"$BENCH" --data "$SAMPLE" --ranks 1,2,4,8 --iterations 4 --warmup 1 "$@"
