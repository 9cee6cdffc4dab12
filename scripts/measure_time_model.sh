#!/usr/bin/env bash
# Checks `tessera plan`'s time model against runs on this machine (issue 16):
# measures the Gloo loopback network (bench_network) and the one-rank
# throughput (1 thread), then runs 2 and 4 ranks through torchrun (1 thread
# each) and prints measured against predicted seconds per iteration.
#
#   scripts/measure_time_model.sh [BUILD_DIR=build] [CORES=$(nproc)] [SCAN=48] [FRAME=64]
#
# Ranks beyond CORES share cores: the model is told so with --devices CORES
# (a core is the "device" of a one-thread rank). Every run is at nice 0;
# other work on the machine still slows some runs (the load average is printed).
set -euo pipefail
BUILD=${1:-build}
CORES=${2:-$(nproc)}
SCAN=${3:-48}
FRAME=${4:-64}
ITERS=${ITERS:-8}
T=$BUILD/train/tessera
NET=$BUILD/benchmarks/bench_network
for f in "$T" "$NET"; do
  [ -x "$f" ] || { echo "$0: $f not found: build the tessera and bench_network targets" >&2; exit 1; }
done
DIR=$(mktemp -d "${TMPDIR:-/tmp}/tessera_time_model.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
export OMP_WAIT_POLICY=PASSIVE
run() { torchrun --no_python --redirects 1 --tee 1 --standalone --nproc_per_node "$@"; }
median_seconds() {  # of a metrics CSV, the first iteration left out
  /usr/bin/python3 -c 'import csv,sys,statistics; r=list(csv.DictReader(open(sys.argv[1]))); print(statistics.median(float(x["seconds"]) for x in r[1:]))' "$1"
}

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores (model: $CORES), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== network: bench_network, 2 ranks"
OMP_NUM_THREADS=1 run 2 "$NET" 2>&1 | sed -n 's/^\[default0\]://p'

echo "== data: tessera simulate --scan $SCAN --frame $FRAME --step 4"
"$T" simulate -o "$DIR/d.cxi" --scan "$SCAN" --frame "$FRAME" --step 4 > /dev/null
N=$((SCAN * SCAN))
common=(-i "$ITERS" --threads 1 --no-defocus-search --checkpoint-every 0)

"$T" reconstruct "$DIR/d.cxi" -o "$DIR/k1.h5" "${common[@]}" > "$DIR/k1.log"
s1=$(median_seconds "$DIR/k1_metrics.csv")
steps=$("$T" plan "$DIR/d.cxi" --ranks 1 --show 0 | sed -n 's/.* \([0-9][0-9]*\) optimiser steps per iteration.*/\1/p')
throughput=$(/usr/bin/python3 -c "print($N / $s1)")
echo "== 1 rank, 1 thread: $N patterns in $steps steps, $s1 s/iteration (median of iterations 2-$ITERS): $throughput patterns/s"

declare -A measured
measured[1]=$s1
for K in 2 4; do
  OMP_NUM_THREADS=1 run "$K" "$T" reconstruct "$DIR/d.cxi" -o "$DIR/k$K.h5" "${common[@]}" --tiles "$K" > "$DIR/k$K.log" 2>&1 \
    || { cat "$DIR/k$K.log"; exit 1; }
  measured[$K]=$(median_seconds "$DIR/k${K}_metrics.csv")
done
echo "== load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"

"$T" plan "$DIR/d.cxi" --ranks 1,2,4 --show 0 --throughput "$throughput" \
  --devices "$CORES" --network loopback-gloo > "$DIR/plan.txt"
echo
printf "%3s %12s %14s %12s %9s\n" K measured overlapped serial "meas/ovl"
for K in 1 2 4; do
  line=$(awk -v k="K = $K ranks" '$0 ~ "^"k {f=1} f && /time model/ {print; exit}' "$DIR/plan.txt")
  ovl=$(echo "$line" | sed -n 's/.*: \([0-9.e+-]*\) s\/iteration overlapped.*/\1/p')
  ser=$(echo "$line" | sed -n 's/.*overlapped, \([0-9.e+-]*\) s serial.*/\1/p')
  printf "%3s %12.4f %14.4f %12.4f %9.2f\n" "$K" "${measured[$K]}" "$ovl" "$ser" \
    "$(/usr/bin/python3 -c "print(${measured[$K]} / $ovl)")"
done
echo
echo "== tessera plan (the prediction in full)"
grep -E "^K =|time model|compute|halo reduction" "$DIR/plan.txt"
