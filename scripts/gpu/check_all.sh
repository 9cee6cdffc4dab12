#!/usr/bin/env bash
# The GPU checks of issue 16 in one command, for the GPU machine (PyTorch 2.x
# with CUDA, nvcc, CMake, ninja; no package registry), each step under its own
# time limit inside one overall budget, everything it measures under $OUT:
#
#   summary.txt      one line per figure (what the issue asks for), and each step's exit status and time
#   steps.log        every step's full output
#   results.tar.gz   the reconstructions' previews and metrics (no HDF5 results: too large)
#
# On the GPU machine (after scripts/gpu/prepare_deps.sh here, carrying .gpu-deps):
#   bash scripts/gpu/check_all.sh
# Here, to prove every step's commands run (CPU, the Debian LibTorch build in
# build/ or $BUILD, small sizes):
#   bash scripts/gpu/check_all.sh --dry-run
#
# Steps, in order of what matters most if time runs out: build (LibTorch of
# the machine's python3), the CUDA-vs-CPU op tests (max relative error per
# op), a paper-sized one-GPU benchmark (positions/s, s/iteration, cuFFT floor,
# peak memory against `tessera plan`), the demo and the Siemens star on cuda
# and on cpu (correlation), the patch kernels against autograd indexing, 1, 2
# and 4 ranks on the one GPU (Gloo on CUDA tensors, double: equal to 1 rank;
# s/iteration against the time model), then the whole ctest suite.
#
#   CHECK_BUDGET_S   seconds for all steps together (default 540: one device call is 600 at most)
#   CHECK_STEPS      space-separated subset of steps to run (default: all)
#   CHECK_DEPS_BUILD=1  (dry run) also build and run test_cxi against .gpu-deps (minutes)
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

if [ "${1:-}" = "__step" ]; then
  mode=step
  step_name=$2
else
  mode=main
  export CHECK_DRY=0
  [ "${1:-}" = "--dry-run" ] && CHECK_DRY=1
  export OUT=${OUT:-$repo/out/gpu-check}
  mkdir -p "$OUT"
  export CHECK_WORK=$(mktemp -d "${TMPDIR:-/tmp}/tessera_gpu_check.XXXXXX")
  if [ "$CHECK_DRY" = 1 ]; then
    export DEVICE=cpu DEVICE0=cpu BUILD=${BUILD:-build} PY=${PY:-/usr/bin/python3} TORCHRUN=${TORCHRUN:-torchrun}
  else
    export DEVICE=cuda DEVICE0=cuda:0 BUILD=${BUILD:-build-gpu} PY=${PY:-python3} TORCHRUN=${TORCHRUN:-torchrun}
    # The tests launch `torchrun` by name: the machine's python3 may hold
    # torch without its torchrun script on the PATH.
    if ! command -v torchrun > /dev/null; then
      mkdir -p "$CHECK_WORK/bin"
      printf '#!/bin/sh\nexec %s -m torch.distributed.run "$@"\n' "$(command -v "$PY")" > "$CHECK_WORK/bin/torchrun"
      chmod +x "$CHECK_WORK/bin/torchrun"
      export PATH="$CHECK_WORK/bin:$PATH"
    fi
  fi
fi

# ---------------------------------------------------------------------------
# The steps (each runs in its own process, under timeout)

T=$repo/$BUILD/train/tessera
B=$repo/$BUILD/benchmarks
W=$CHECK_WORK
dry() { [ "$CHECK_DRY" = 1 ]; }
deps() {
  if ! dry; then source scripts/gpu/deps_env.sh || exit 1; fi
}
# Median seconds per iteration of a run's metrics CSV, its first iteration left out (warm-up).
median_seconds() {
  "$PY" -c 'import csv,sys,statistics; r=list(csv.DictReader(open(sys.argv[1]))); s=[float(x["seconds"]) for x in r[1:]] or [float(r[0]["seconds"])]; print(statistics.median(s))' "$1"
}

step_env() {
  date -u; uname -a; nproc; free -g | head -2
  nvidia-smi || echo "no nvidia-smi"
  nvcc --version | tail -2 || echo "no nvcc"
  g++ --version | head -1
  cmake --version | head -1
  "$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 || true
}

step_build() {
  deps
  if dry; then
    # The Debian LibTorch build here; and a configure against .gpu-deps, to
    # check that CMake finds every carried dependency there and nothing of
    # this machine's own (it has them all installed).
    cmake --build "$BUILD" -j2 -- -k 0 || exit 1
    [ -d .gpu-deps/root ] || { echo "no .gpu-deps: run scripts/gpu/prepare_deps.sh"; exit 1; }
    source scripts/gpu/deps_env.sh || exit 1
    cmake -S . -B "$W/deps-configure" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$TESSERA_DEPS_PREFIX" "${TESSERA_DEPS_CMAKE_ARGS[@]}" > "$W/deps-configure.log" 2>&1 \
      || { cat "$W/deps-configure.log"; exit 1; }
    local found='^(HDF5_C_INCLUDE_DIR|HDF5_hdf5_LIBRARY_RELEASE|PNG_LIBRARY|PNG_PNG_INCLUDE_DIR|ZLIB_LIBRARY|ZLIB_INCLUDE_DIR|GTest_DIR|cxxopts_DIR)[:=]'
    grep -E "$found" "$W/deps-configure/CMakeCache.txt"
    if [ "$(grep -cE "$found" "$W/deps-configure/CMakeCache.txt")" != 8 ] ||
       grep -E "$found" "$W/deps-configure/CMakeCache.txt" | grep -v "\.gpu-deps"; then
      echo "FAILED: not every dependency above was taken from .gpu-deps"
      exit 1
    fi
    echo "configure against .gpu-deps: every dependency found there"
    if [ "${CHECK_DEPS_BUILD:-0}" = 1 ]; then
      # Build and run an HDF5 test against them, every carried library on the
      # library path (as on a machine that has none of them).
      TESSERA_DEPS_ALL=1 source scripts/gpu/deps_env.sh || exit 1
      cmake --build "$W/deps-configure" -j2 --target test_cxi > "$W/deps-build.log" 2>&1 \
        || { tail -30 "$W/deps-build.log"; exit 1; }
      ldd "$W/deps-configure/tests/test_cxi" | grep -E "hdf5|curl|png|sz"
      "$W/deps-configure/tests/test_cxi" --gtest_brief=1 || exit 1
      echo "test_cxi built and passed against .gpu-deps"
    fi
    return 0
  fi
  local prefix
  prefix=$("$PY" -W ignore -c 'import torch; print(torch.utils.cmake_prefix_path)') || exit 1
  # Hopper only (sm_90): the machine's GPU; the other architectures cost build time here.
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix;$TESSERA_DEPS_PREFIX" \
    -DCMAKE_CUDA_ARCHITECTURES=90 "${TESSERA_DEPS_CMAKE_ARGS[@]}" || exit 1
  cmake --build "$BUILD" -j"$(nproc)" -- -k 0
}

step_cuda_ops() {
  deps
  # Verbose: the CUDA-vs-CPU comparisons print their max relative error.
  "$repo/$BUILD/tests/test_ops" --gtest_filter='*Cuda*:CudaBuild*'
  local a=$?
  "$repo/$BUILD/tests/test_halo_ops" --gtest_filter='*Cuda*'
  local b=$?
  # The fused GPU loss (tessera::window_far_field_loss) against the CPU fused operator.
  "$repo/$BUILD/tests/test_window_loss"
  local c=$?
  exit $(( a || b || c ))
}

step_paper_benchmark() {
  deps
  local scan=126x132 frame=128 iters=5
  dry && scan=12x12 frame=64 iters=2
  DEVICE=$DEVICE STEP=4 OMP_WAIT_POLICY=PASSIVE "$B/bench_iteration" "$scan" "$frame" "$iters" || exit 1
  "$T" plan --scan-y "${scan%x*}" --scan-x "${scan#*x}" --step 4 --frame "$frame" --ranks 1 --show 0
}

step_demo() {
  deps
  local iters=100
  dry && iters=3
  local sim=()
  dry && sim=(--scan 8)
  "$T" simulate -o "$W/demo.cxi" "${sim[@]}" || exit 1
  for d in "$DEVICE" cpu; do
    [ "$d" = cpu ] && [ "$DEVICE" = cpu ] && [ -f "$W/demo_cpu.h5" ] && continue
    "$T" reconstruct "$W/demo.cxi" -o "$W/demo_$d.h5" -i "$iters" --device "$d" || exit 1
  done
  local ref=$W/demo_cpu.h5
  "$PY" scripts/gpu/compare_results.py "$W/demo_$DEVICE.h5" "$ref" --min-correlation 0.999 --label "demo $DEVICE vs cpu"
}

step_star() {
  deps
  local data=.gpu-deps/data/siemens-star/siemens-star.cxi iters=50
  [ -f "$data" ] || data=../shared/data/siemens-star/siemens-star.cxi
  dry && iters=2
  for d in "$DEVICE" cpu; do
    [ "$d" = cpu ] && [ "$DEVICE" = cpu ] && [ -f "$W/star_cpu.h5" ] && continue
    "$T" reconstruct "$data" -o "$W/star_$d.h5" -i "$iters" --device "$d" || exit 1
  done
  "$PY" scripts/gpu/compare_results.py "$W/star_$DEVICE.h5" "$W/star_cpu.h5" --min-correlation 0.999 \
    --label "siemens star $DEVICE vs cpu"
}

step_patches() {
  deps
  local size=()
  dry && size=(--windows 64 --window 32 --object 256 --iters 2)
  for g in gather index; do
    "$B/bench_patches" --device "$DEVICE" --gather "$g" "${size[@]}" || exit 1
  done
}

step_ranks() {
  deps
  local sim=(--scan 32 --frame 64 --step 4) iters=6
  dry && sim=(--scan 12 --frame 32 --step 4) iters=3
  "$T" simulate -o "$W/ranks.cxi" "${sim[@]}" || exit 1
  # NCCL refuses two ranks on one GPU: Gloo through host copies (src/comm/communicator.h).
  export TESSERA_CUDA_COMM=gloo
  local common=(-i "$iters" --device "$DEVICE0" --precision double --no-defocus-search)
  # The K ranks share one device: the GPU, or (dry run) the cores, one thread per rank.
  local devices=1
  dry && common+=(--threads 1) && devices=$(nproc)
  "$T" reconstruct "$W/ranks.cxi" -o "$W/ranks_1.h5" "${common[@]}" || exit 1
  local status=0
  for K in 2 4; do
    # Each process's GPU memory, sampled (it includes the CUDA context, which
    # the memory model leaves out).
    local sampler=""
    if command -v nvidia-smi > /dev/null; then
      nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 200 > "$W/gpu_memory_$K.csv" 2>/dev/null &
      sampler=$!
    fi
    # One thread per rank on the CPU (the dry run); the GPU does the work otherwise.
    OMP_NUM_THREADS=1 $TORCHRUN --no_python --redirects 1 --tee 1 --standalone --nproc_per_node "$K" \
      "$T" reconstruct "$W/ranks.cxi" -o "$W/ranks_$K.h5" "${common[@]}" --tiles "$K" > "$W/ranks_$K.log" 2>&1 \
      || { cat "$W/ranks_$K.log"; [ -n "$sampler" ] && kill "$sampler"; exit 1; }
    if [ -n "$sampler" ]; then
      kill "$sampler"
      echo "K=$K GPU memory per process (MiB, peak of 200 ms samples, CUDA context included):" \
        "$(awk -F', *' '{if ($2 > m[$1]) m[$1] = $2} END {for (p in m) printf "%s ", m[p]}' "$W/gpu_memory_$K.csv")"
      "$T" plan "$W/ranks.cxi" --ranks "$K" --show 0 --precision double | grep "peak memory per rank"
    fi
    "$PY" scripts/gpu/compare_results.py "$W/ranks_$K.h5" "$W/ranks_1.h5" --max-difference 1e-9 \
      --label "$K ranks vs 1 rank on one $DEVICE, double" || status=1
  done
  # The time model against these runs: throughput from the 1-rank run, K ranks sharing one device.
  local n s1
  n=$("$T" plan "$W/ranks.cxi" --ranks 1 --show 0 | sed -n 's/^scan: .*, \([0-9][0-9]*\) patterns of .*/\1/p')
  s1=$(median_seconds "$W/ranks_1_metrics.csv")
  local throughput
  throughput=$("$PY" -c "print($n / $s1)")
  echo "1 rank: $n patterns, $s1 s/iteration (median), throughput $throughput patterns/s"
  for K in 2 4; do
    echo "K=$K measured $(median_seconds "$W/ranks_${K}_metrics.csv") s/iteration (median, rank 0)"
  done
  "$T" plan "$W/ranks.cxi" --ranks 1,2,4 --show 0 --precision double --throughput "$throughput" --devices "$devices" \
    --network loopback-gloo | grep -E "^K =|time model"
  # The same with the network measured here, between two ranks on this device.
  OMP_NUM_THREADS=1 $TORCHRUN --no_python --redirects 1 --tee 1 --standalone --nproc_per_node 2 \
    "$B/bench_network" --device "$DEVICE" > "$W/network.log" 2>&1 || { cat "$W/network.log"; exit 1; }
  local fitted latency gbit
  sed -n 's/^\[default0\]://p' "$W/network.log"
  fitted=$(sed -n 's/^\[default0\]://p' "$W/network.log" | grep "^fitted:")
  latency=$(echo "$fitted" | sed -n 's/.*latency \([0-9.]*\) us.*/\1/p')
  gbit=$(echo "$fitted" | sed -n 's/.*bandwidth \([0-9.]*\) GB\/s.*/\1/p' | awk '{print $1 * 8}')
  echo "network measured between 2 ranks on one $DEVICE: $latency us, $gbit Gb/s"
  "$T" plan "$W/ranks.cxi" --ranks 1,2,4 --show 0 --precision double --throughput "$throughput" --devices "$devices" \
    --latency-us "$latency" --bandwidth-gbps "$gbit" | grep -E "time model"
  exit $status
}

step_ctest() {
  deps
  local args=(--output-on-failure -j4 --timeout 240)
  dry && args+=(-R 'TimeModel|Cli\.PlanTimeModel|PatchesCuda|CudaBuild')
  ctest --test-dir "$BUILD" "${args[@]}"
}

if [ "$mode" = step ]; then
  "step_$step_name"
  exit $?
fi

# ---------------------------------------------------------------------------
# Driver

budget=${CHECK_BUDGET_S:-540}
t_start=$(date +%s)
summary=$OUT/summary.txt
log=$OUT/steps.log
: > "$summary"
: > "$log"
note() { echo "$*" | tee -a "$summary"; }

# run NAME LIMIT_S: step NAME under timeout, at most what is left of the budget.
run() {
  local name=$1 limit=$2
  if [ -n "${CHECK_STEPS:-}" ] && [[ " $CHECK_STEPS " != *" $name "* ]]; then return 0; fi
  local left=$(( budget - ($(date +%s) - t_start) ))
  if (( left < 20 )); then
    note "step $name: SKIPPED (budget of $budget s spent)"
    return 0
  fi
  (( limit > left )) && limit=$left
  echo "===== $name (limit $limit s) $(date -u +%T)" >> "$log"
  local t0 rc
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" bash "$0" __step "$name" > "$W/$name.out" 2>&1
  rc=$?
  cat "$W/$name.out" >> "$log"
  local what="ok"
  (( rc != 0 )) && what="FAILED (exit $rc)"
  (( rc == 124 || rc == 137 )) && what="TIMED OUT"
  note "step $name: $what in $(( $(date +%s) - t0 )) s"
  # The figures, into the summary.
  grep -E "CUDA vs CPU max relative error|^\[  (PASSED|FAILED|SKIPPED) |seconds per iteration|FFT floor per iteration|ratio iteration|patterns per second|peak memory|^device |undecomposed process|peak memory per rank|speed-up of custom|check: custom|correlation|ranks vs 1 rank|^1 rank:|^K=[0-9] measured|time model|network measured|allreduce of|GPU memory per process|tests passed|tests failed|configure against|^FAILED|every dependency|-- tessera:|torch [0-9]|NVIDIA H|error:" \
    "$W/$name.out" | sed 's/^/    /' | head -60 >> "$summary"
}

note "check_all: $( [ "$CHECK_DRY" = 1 ] && echo "DRY RUN on the CPU" || echo "GPU run" ), build $BUILD, device $DEVICE, budget $budget s, $(date -u)"
note "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
run env 30
build_limit=330
[ "$CHECK_DRY" = 1 ] && [ "${CHECK_DEPS_BUILD:-0}" = 1 ] && build_limit=1200
run build "$build_limit"
run cuda_ops 60
run paper_benchmark 120
run demo 90
run star 120
run patches 60
run ranks 120
run ctest 300
tar -czf "$OUT/results.tar.gz" -C "$W" $(cd "$W" && ls *.png *.csv *.log 2>/dev/null) 2>/dev/null || true
note "check_all: done in $(( $(date +%s) - t_start )) s"
rm -rf "$W"
