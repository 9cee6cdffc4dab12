#!/usr/bin/env bash
# The paper's run through `tessera plan`'s time model (issue 16): 16632
# patterns (126 x 132 raster, step 4, 128 x 128 frames) on 4158 ranks with the
# Summit network preset, for a range of single-V100 throughputs and per-step
# overheads (assumptions: nobody has measured tessera on a V100), ring and
# tree allreduce, next to the paper's 2.2 minutes. The paper's abstract (all
# we have, ../shared/reference/paper.md) gives no iteration count, so the
# comparison is the number of iterations 2.2 minutes would hold.
#
#   scripts/paper_projection.sh [BUILD_DIR=build]
set -euo pipefail
T=${1:-build}/train/tessera
[ -x "$T" ] || { echo "$0: $T not found: build the tessera target" >&2; exit 1; }
paper_s=132  # 2.2 minutes
printf "%12s %10s %6s %12s %12s %12s %14s\n" "V100 pat/s" "step s" "allred" "compute s" "comm s" "s/iteration" "iter in 2.2min"
for throughput in 1e4 1e5 1e6; do
  for overhead in 0 1e-3; do
    for allreduce in ring tree; do
      out=$("$T" plan --ranks 4158 --show 0 --throughput "$throughput" --step-overhead-s "$overhead" \
              --network summit --allreduce "$allreduce")
      per_it=$(echo "$out" | sed -n 's/.*: \([0-9.e+-]*\) s\/iteration overlapped.*/\1/p')
      compute=$(echo "$out" | sed -n 's/^    compute \([0-9.e+-]*\) s .*/\1/p')
      comm=$(echo "$out" | sed -n 's/.*halo reduction \([0-9.e+-]*\) s + refresh \([0-9.e+-]*\) s.* allreduce \([0-9.e+-]*\) s,.*/\1 \2 \3/p' \
             | awk '{print $1 + $2 + $3}')
      printf "%12s %10s %6s %12.3g %12.3g %12.3g %14.0f\n" "$throughput" "$overhead" "$allreduce" "$compute" "$comm" \
        "$per_it" "$(awk -v p="$paper_s" -v t="$per_it" 'BEGIN {print p / t}')"
    done
  done
done
echo
echo "The same geometry's memory and traffic per rank:"
"$T" plan --ranks 4158 --show 0 | tail -3
