#!/usr/bin/env bash
# Noiseless sanity check that the independent simulator and tessera agree on
# every convention (frame centring, FFT normalisation, x/y order and sign of
# the positions, the object grid and window corners of the truth):
#
#   scripts/sim/sanity_check.sh TESSERA_BINARY [OUTDIR] [tessera reconstruct flags...]
#
# 1. simulates a centred, noiseless aperture on a raster (OUTDIR, default
#    /tmp/tessera-sim-sanity) and checks the file with check_convention.py;
# 2. reconstructs it (100 iterations, one thread; flags default to
#    --no-probe-centring --no-defocus-search, with which tessera's score does
#    not depend on its probe-start heuristics; `--defaults` runs tessera's
#    defaults) and requires a correlation with the truth >= 0.99.
# Exit status 0 when both pass.
set -euo pipefail
if (($# < 1)); then
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
bin=$(readlink -f "$1")
out=${2:-/tmp/tessera-sim-sanity}
shift $(($# >= 2 ? 2 : 1))
flags=("$@")
((${#flags[@]})) || flags=(--no-probe-centring --no-defocus-search)
[ "${flags[0]}" = --defaults ] && flags=("${flags[@]:1}")
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
mkdir -p "$out"

data="$out/aperture_centred_raster_noiseless.cxi"
[ -f "$data" ] || nice /usr/bin/python3 "$here/independent_sim.py" "$data" --probe aperture --scan raster --no-noise --seed 1
nice /usr/bin/python3 "$here/check_convention.py" "$data"

log="$out/reconstruct.log"
nice "$bin" reconstruct "$data" -o "$out/result.h5" --iterations 100 --threads 1 "${flags[@]}" > "$log" 2>&1 ||
  { tail -5 "$log"; echo "sanity check FAILED: tessera exited with an error (log $log)"; exit 1; }
score=$(grep -o 'correlation with the true object [0-9.e+-]*' "$log" | awk '{print $NF}')
echo "tessera ${flags[*]:-(defaults)}: correlation with the true object $score"
if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s >= 0.99) }'; then
  echo "sanity check passed"
else
  echo "sanity check FAILED: correlation ${score:-missing} < 0.99 (log $log)"
  exit 1
fi
