#!/usr/bin/env bash
# Scores a tessera binary on independently simulated data (issue 13): probe
# types x {centred, tilted zero order} x {raster, Fermat spiral} at 1e6
# photons, plus low-dose (1e4) raster cases, 100 iterations each, one thread.
#
#   scripts/sim/probe_matrix.sh TESSERA_BINARY OUTDIR [extra tessera reconstruct flags...]
#
# The data are simulated once by scripts/sim/independent_sim.py and cached in
# OUTDIR/data. Each run (binary + flags) gets a folder OUTDIR/runs/LABEL with
# one log and result per case; finished cases are not rerun, so an interrupted
# matrix resumes. At the end the table of every run in OUTDIR is printed
# (one row per case, one column per run; scripts/sim/matrix_table.py).
#
# Environment:
#   LABEL   column name (default: first 8 hex digits of the binary's sha256,
#           then the flags or "defaults")
#   JOBS    reconstructions at once (default 1; each uses one thread)
#   CASES   space-separated subset of case names (default: all)
#   ITERATIONS (default 100)
# Runs nice'd, OMP_NUM_THREADS=1, OMP_WAIT_POLICY=PASSIVE. In the background:
#   nohup scripts/sim/probe_matrix.sh BIN OUT > OUT/matrix.log 2>&1 &
# TESSERA_BINARY "-" only simulates the data.
set -euo pipefail

if (($# < 2)); then
  sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
bin=$1
out=$2
shift 2
extra=("$@")
if [ "$bin" != - ]; then
  bin=$(readlink -f "$bin")
  [ -x "$bin" ] || { echo "probe_matrix: $bin is not an executable tessera binary" >&2; exit 2; }
fi

here=$(cd "$(dirname "$0")" && pwd)
python=/usr/bin/python3
iterations=${ITERATIONS:-100}
jobs=${JOBS:-1}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
mkdir -p "$out/data"

tilt=2.4,-1.6
all_cases() {
  for probe in aperture zoneplate gaussian electron modes3; do
    for centring in centred tilted; do
      for scan in raster spiral; do echo "${probe}_${centring}_${scan}_1e6"; done
    done
    for centring in centred tilted; do echo "${probe}_${centring}_raster_1e4"; done
  done
}

simulate() {  # case name -> OUTDIR/data/NAME.cxi (once)
  local name=$1 file="$out/data/$1.cxi"
  [ -f "$file" ] && return 0
  local probe centring scan photons offset=0,0
  IFS=_ read -r probe centring scan photons <<< "$name"
  [ "$centring" = tilted ] && offset=$tilt
  nice "$python" "$here/independent_sim.py" "$file" --probe "$probe" --offset="$offset" --scan "$scan" \
    --photons "$photons" --seed 1 > "$out/data/$name.txt" 2>&1 || { cat "$out/data/$name.txt" >&2; return 1; }
}

read -r -a cases <<< "${CASES:-$(all_cases | tr '\n' ' ')}"
for name in "${cases[@]}"; do simulate "$name"; done
echo "$(date +%T) data ready in $out/data (${#cases[@]} cases)"
[ "$bin" = - ] && exit 0

flags_text=${extra[*]:-defaults}
label=${LABEL:-"$(sha256sum "$bin" | cut -c1-8) $flags_text"}
run_dir="$out/runs/$(echo "$label" | tr -c 'A-Za-z0-9._-' '_' | sed 's/_*$//')"
mkdir -p "$out/data" "$run_dir"
[ -f "$run_dir/run.txt" ] || {
  echo "label: $label"
  echo "created: $(date +%s)"
  echo "binary: $bin"
  echo "sha256: $(sha256sum "$bin" | cut -d' ' -f1)"
  echo "flags: ${extra[*]:-}"
  echo "iterations: $iterations"
} > "$run_dir/run.txt"

reconstruct() {  # case name -> run_dir/NAME.log (skipped when already scored)
  local name=$1 log="$run_dir/$1.log"
  if [ -f "$log" ] && grep -q "^done:" "$log"; then return 0; fi
  local modes=()
  [[ $name == modes3_* ]] && modes=(--modes 3)
  mkdir -p "$run_dir/$name"
  local start=$SECONDS
  if nice "$bin" reconstruct "$out/data/$name.cxi" -o "$run_dir/$name/result.h5" --iterations "$iterations" \
       --threads 1 "${modes[@]}" "${extra[@]}" > "$log.tmp" 2>&1; then
    mv "$log.tmp" "$log"
  else
    echo "exit status $?" >> "$log.tmp"
    mv "$log.tmp" "$log"
  fi
  echo "$(date +%T) $label: $name $(grep -o 'correlation with the true object [0-9.e+-]*' "$log" | awk '{print $NF}') ($((SECONDS - start)) s)"
}

echo "$(date +%T) running '$label'"

running=0
for name in "${cases[@]}"; do
  reconstruct "$name" &
  running=$((running + 1))
  if ((running >= jobs)); then wait -n || true; running=$((running - 1)); fi
done
wait

"$python" "$here/matrix_table.py" "$out"
