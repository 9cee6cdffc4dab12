#!/usr/bin/env bash
# Hostile sweep of the tessera tool (issue 14): many bad inputs, each run with
# a time limit, counted as
#   crash            killed by a signal (SIGSEGV, abort, ...)
#   hang             still running at the time limit
#   data loss        an input file changed
#   wrong acceptance exit code 0 where the input must be refused
# Usage: scripts/hostile_sweep.sh [build-dir]   (needs /usr/bin/python3 with h5py)
set -u
BUILD=${1:-build}
TESSERA=$(realpath "$BUILD/train/tessera")
PY=/usr/bin/python3
LIMIT=${HOSTILE_LIMIT:-60}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
W=$(mktemp -d /tmp/tessera_hostile_XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W"

cases=0 crashes=0 hangs=0 losses=0 wrong=0 unexpected_refusals=0
failures=()

# Checksums of the regular files among the arguments (a FIFO would block sha256sum).
sum() {
  local f
  for f in "$@"; do [ -f "$f" ] && [ ! -p "$f" ] && sha256sum "$f" | cut -c1-64; done | tr '\n' ' '
}

# check EXPECT INPUTS... -- ARGS...: EXPECT is fail (must exit 1) or ok (must exit 0).
check() {
  local expect=$1; shift
  local inputs=()
  while [ "$1" != "--" ]; do inputs+=("$1"); shift; done
  shift
  cases=$((cases + 1))
  local before; before=$(sum "${inputs[@]}")
  timeout -s KILL "$LIMIT" "$TESSERA" "$@" >"$W/out.txt" 2>&1 </dev/null
  local rc=$?
  local after; after=$(sum "${inputs[@]}")
  local what=""
  if [ $rc -eq 137 ]; then hangs=$((hangs + 1)); what="HANG"
  elif [ $rc -gt 128 ] || [ $rc -eq 134 ] || grep -q "terminate called\|Segmentation\|core dumped\|INTERNAL ASSERT" "$W/out.txt"; then
    crashes=$((crashes + 1)); what="CRASH rc=$rc"
  elif [ "$before" != "$after" ]; then losses=$((losses + 1)); what="DATA LOSS"
  elif [ "$expect" = fail ] && [ $rc -eq 0 ]; then wrong=$((wrong + 1)); what="WRONG ACCEPTANCE"
  elif [ "$expect" = ok ] && [ $rc -ne 0 ]; then unexpected_refusals=$((unexpected_refusals + 1)); what="REFUSED (expected success)"
  fi
  if [ -n "$what" ]; then
    failures+=("$what: tessera $*  :: $(tail -c 300 "$W/out.txt" | tr '\n' ' ')")
  fi
}

"$TESSERA" simulate -o good.cxi --scan 5 --frame 16 --step 4 >/dev/null 2>&1 || { echo "cannot simulate"; exit 2; }
"$TESSERA" simulate --electron -o stem.h5 --scan 4 --frame 16 --step 4 >/dev/null 2>&1 || { echo "cannot simulate 4D-STEM"; exit 2; }
R="-i 2 --threads 1 --no-previews --no-defocus-search"

# ---- bad files (crafted with h5py)
$PY - <<'PYEOF'
import h5py, numpy as np, shutil
D = "/entry_1/instrument_1/detector_1/data"
T = "/entry_1/sample_1/geometry_1/translation"
def variant(name, fn, src="good.cxi"):
    shutil.copy(src, name)
    with h5py.File(name, "r+") as f:
        fn(f)
def replace(key, value, dtype=None):
    def fn(f):
        del f[key]
        if value is None:
            f.create_dataset(key, shape=None, dtype="f8")  # null dataspace
        else:
            f.create_dataset(key, data=np.asarray(value, dtype=dtype))
    return fn
d = h5py.File("good.cxi", "r")[D][...]
t = h5py.File("good.cxi", "r")[T][...]
variant("nan.cxi", replace(D, np.where(np.arange(d.size).reshape(d.shape) % 7 == 0, np.nan, d).astype("f4")))
variant("neg.cxi", replace(D, (d - 1e6).astype("f4")))
variant("huge.cxi", replace(D, np.full(d.shape, 3e38, "f4")))
variant("u64max.cxi", replace(D, np.full(d.shape, 2**64 - 1, np.uint64)))
variant("zero.cxi", replace(D, np.zeros(d.shape, "f4")))
variant("tiny1.cxi", replace(D, d[:, :1, :1]))
variant("tiny3.cxi", replace(D, d[:, :3, :3]))
variant("strip.cxi", replace(D, np.ones((d.shape[0], 1, 64), "f4")))
variant("fewframes.cxi", replace(D, d[:3]))
variant("samepos.cxi", replace(T, np.zeros_like(t)))
variant("nanpos.cxi", replace(T, np.where(np.arange(t.size).reshape(t.shape) == 4, np.nan, t)))
variant("hugepos.cxi", replace(T, t * 1e9))
variant("nulldist.cxi", replace("/entry_1/instrument_1/detector_1/distance", None))
variant("nullenergy.cxi", replace("/entry_1/instrument_1/source_1/energy", None))
variant("negdist.cxi", replace("/entry_1/instrument_1/detector_1/distance", -1.0))
variant("strdist.cxi", lambda f: (f.__delitem__("/entry_1/instrument_1/detector_1/distance"),
                                   f.create_dataset("/entry_1/instrument_1/detector_1/distance", data="far")))
variant("nodata.cxi", lambda f: f.__delitem__(D))
variant("lazy.cxi", lambda f: (f.__delitem__(D), f.create_dataset(D, shape=(1000000, 4096, 4096), dtype="f4",
                                                                 chunks=(1, 4096, 4096))))
variant("bigprobe.cxi", lambda f: f.create_dataset("/entry_1/instrument_1/source_1/illumination_big",
                                                  shape=(1,), dtype="f4"))
S = "/stem4d/"
for key, value in [("c3_mm", 1e300), ("defocus_angstrom", 1e30), ("convergence_semiangle_mrad", 1e6),
                   ("convergence_semiangle_mrad", 20000), ("beam_energy_kev", 1e-6), ("beam_energy_kev", -5),
                   ("scan_step_angstrom", 0.0), ("beam_energy_kev", None)]:
    name = "stem_%s_%s.h5" % (key, str(value).replace("-", "m"))
    variant(name, lambda f, key=key, value=value: replace(S + key, value)(f) if key in f["/stem4d"] else
            f.create_dataset(S + key, data=value), src="stem.h5")
with open("text.cxi", "w") as f:
    f.write("not hdf5\n")
open("empty.cxi", "w").close()
PYEOF
mkfifo fifo.cxi
mkdir -p adir

# An empty (null-dataspace) energy beside a valid wavelength is a problem for
# info and ignored by reconstruct, which uses the wavelength.
check fail nullenergy.cxi -- info nullenergy.cxi
check ok nullenergy.cxi -- reconstruct nullenergy.cxi -o r_nullenergy.h5 $R
for f in nan neg huge u64max zero tiny1 tiny3 strip fewframes samepos nanpos hugepos nulldist negdist \
         strdist nodata text empty; do
  check fail $f.cxi -- info $f.cxi
  check fail $f.cxi -- reconstruct $f.cxi -o r_$f.h5 $R
done
check fail lazy.cxi -- reconstruct lazy.cxi -o r_lazy.h5 $R
check fail -- info fifo.cxi
check fail -- info adir
check fail -- info missing.cxi
for f in stem_*.h5; do
  check fail $f -- info $f
  check fail $f -- reconstruct $f -o r_$f $R
done
# info on a file declaring 1e6 x 4096^2 frames and storing none: must answer within the limit
check fail lazy.cxi -- info lazy.cxi

# ---- command-line abuse
for opt in "--tiles 0" "--tiles -2" "--batch-size 0" "--batch-size -1" "--threads -1" "--probe-rate -1" \
           "--probe-rate 0" "--object-rate -3" "--rate-scale -1" "--rate-scale 0" "--checkpoint-every -1" \
           "--tile-grid 2x" "--tile-grid x2" "--tile-grid 2x2x2" "--tile-grid axb" "--tile-grid 0x2" \
           "--iterations -1" "--iterations many" "--modes 0" "--modes -1" "--slices 0" "--slices 2" \
           "--chunk-size 0" "--precision half" "--optimizer adamw9" "--loss l7" "--device tpu" \
           "--crop 0" "--crop 4" "--bin 0" "--bin 100" "--timeout -1" "--object-rate nan" "--rate-scale inf" \
           "--prior tv" "--prior-weight 1" "--denoiser missing.pt" "--c3-mm 1" "good.cxi" \
           "--positions-from -5" "--probe-from -7" "--convergence-mrad 20" "--slices 1000000 --slice-thickness 1e-9" \
           "--modes 100000000"; do
  check fail good.cxi -- reconstruct good.cxi -o r_opt.h5 $R $opt
done
for opt in "--c3-mm 1e300" "--defocus-angstrom 1e30" "--convergence-mrad 1e6" "--convergence-mrad 20000" \
           "--convergence-mrad -1" "--c3-mm nan"; do
  check fail stem.h5 -- reconstruct stem.h5 -o r_opt.h5 $R $opt
done
check fail good.cxi -- info good.cxi good.cxi
check fail good.cxi -- plan good.cxi extra
check fail -- simulate -o s.cxi extra
check fail -- simulate -o s.cxi --frame 4
check ok good.cxi -- reconstruct good.cxi -o r_threads.h5 $R --threads 10000

# ---- output paths
cp good.cxi victim.cxi
ln -sf victim.cxi link.h5
ln -f victim.cxi hard.h5
echo "my notes" > notes.h5
check fail victim.cxi -- reconstruct victim.cxi -o victim.cxi $R
check fail victim.cxi -- reconstruct victim.cxi -o ./victim.cxi $R
check fail victim.cxi -- reconstruct victim.cxi -o "$W/victim.cxi" $R
check fail victim.cxi -- reconstruct victim.cxi -o link.h5 $R
check fail victim.cxi -- reconstruct victim.cxi -o hard.h5 $R
check fail victim.cxi notes.h5 -- reconstruct victim.cxi -o notes.h5 $R
check fail victim.cxi -- reconstruct victim.cxi -o no/such/dir/r.h5 -i 100000 --threads 1
check fail victim.cxi -- reconstruct victim.cxi -o adir $R
check fail victim.cxi -- reconstruct victim.cxi -o "" $R
check ok victim.cxi -- reconstruct victim.cxi -o ok.h5 $R
check ok victim.cxi -- reconstruct victim.cxi -o ok.h5 $R

# ---- run files (--config)
printf 'data = "good.cxi"\niterations = 2\nthreads = 1\nno-previews = true\n' > run.toml
printf 'iterations = 2\nloss = \n' > broken.toml
printf 'iteratoins = 2\n' > typo.toml
printf 'iterations = "many"\n' > wrongtype.toml
printf 'batch-size = -4\n' > negative.toml
printf '[loading]\nbin = 2\n' > table.toml
head -c 2000000 /dev/zero > huge.toml
check ok good.cxi run.toml -- reconstruct --config run.toml -o r_cfg.h5
check ok good.cxi r_cfg.h5 -- reconstruct --config r_cfg.h5 -o r_cfg2.h5
check fail good.cxi r_cfg.h5 -- reconstruct --config r_cfg.h5
for cfg in missing.toml broken.toml typo.toml wrongtype.toml negative.toml table.toml huge.toml good.cxi /dev/null; do
  check fail good.cxi -- reconstruct good.cxi -o r_cfgbad.h5 $R --config $cfg
done

# ---- resume mismatches
"$TESSERA" reconstruct good.cxi -o base.h5 $R >/dev/null 2>&1
"$TESSERA" simulate -o other.cxi --scan 5 --frame 16 --step 4 --seed 7 >/dev/null 2>&1
for opt in "--slices 2 --slice-thickness 1e-6" "--modes 2" "--precision double" "--optimizer sgd" \
           "--optimizer rmsprop"; do
  check fail base.h5 good.cxi -- reconstruct good.cxi -o r_res.h5 -i 4 --threads 1 --no-previews --resume base.h5 $opt
done
for opt in "--tiles 2" "--tile-grid 2x2" "--tile-grid 4x1" "--tiles 1"; do
  check ok base.h5 good.cxi -- reconstruct good.cxi -o r_res.h5 -i 4 --threads 1 --no-previews --resume base.h5 $opt
done
check fail base.h5 other.cxi -- reconstruct other.cxi -o r_res.h5 -i 4 --threads 1 --resume base.h5
check fail good.cxi -- reconstruct good.cxi -o r_res.h5 -i 4 --threads 1 --resume good.cxi
for bad in nan -3 1e12; do
  cp base.h5 damaged.h5
  $PY -c "
import h5py, numpy as np
with h5py.File('damaged.h5', 'r+') as f:
    del f['/reconstruction/iteration']; f['/reconstruction/iteration'] = np.float64('$bad')"
  check fail good.cxi -- reconstruct good.cxi -o r_res.h5 -i 4 --threads 1 --resume damaged.h5
done

# ---- signals: SIGTERM during a run leaves no temporary file and the checkpoint readable
"$TESSERA" simulate -o big.cxi --scan 12 --frame 32 --step 4 >/dev/null 2>&1
for delay in 1 2 3; do
  cases=$((cases + 1))
  rm -f sig.h5 .sig.h5.tmp-*
  "$TESSERA" reconstruct big.cxi -o sig.h5 -i 100000 --threads 1 --checkpoint-every 1 --no-previews >/dev/null 2>&1 &
  pid=$!
  sleep $delay
  kill -TERM $pid
  wait $pid
  if ls .sig.h5.tmp-* >/dev/null 2>&1; then losses=$((losses + 1)); failures+=("TEMPORARY LEFT after SIGTERM at ${delay}s"); fi
  if [ -e sig.h5 ] && ! "$PY" -c "import h5py; h5py.File('sig.h5','r')['/reconstruction/object']" 2>/dev/null; then
    losses=$((losses + 1)); failures+=("CHECKPOINT UNREADABLE after SIGTERM at ${delay}s")
  fi
done

echo "cases: $cases"
echo "crashes: $crashes"
echo "hangs: $hangs"
echo "data losses: $losses"
echo "wrong acceptances: $wrong"
echo "refused although valid: $unexpected_refusals"
for f in "${failures[@]}"; do echo "  $f"; done
