#!/usr/bin/env bash
# Two of issue 14's failures, checked on any build of the tool (e.g. an old
# one, to show the failure): a probe guess declaring 128 GiB (refused before it
# is read, with the size in GiB) and SIGTERM during checkpoints (no temporary
# result files left behind).
#   scripts/check_signal_and_huge_probe.sh [TOOL] [KILLS]   (needs /usr/bin/python3 with h5py)
set -u
TOOL=$(realpath "${1:-build/train/tessera}")
KILLS=${2:-60}
W=$(mktemp -d /tmp/tessera_sigterm_XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W"
"$TOOL" simulate -o data.cxi --frame 32 --scan 12 --step 6 > /dev/null 2>&1 || { echo "simulate failed"; exit 1; }
/usr/bin/python3 - <<'PY'
import h5py, shutil
shutil.copy('data.cxi', 'hugeprobe.cxi')
with h5py.File('hugeprobe.cxi', 'r+') as f:
    key = '/entry_1/instrument_1/source_1/probe'
    if key in f:
        del f[key]
    f.create_dataset(key, shape=(1 << 24, 32, 32), dtype='f4', chunks=(1, 32, 32))  # allocated lazily: a small file
PY
# 8 GB of address space: an attempt to read the 128 GiB fails instead of swapping.
(ulimit -v 8000000; timeout 60 "$TOOL" info hugeprobe.cxi > info.txt 2>&1; echo "exit code $?" >> info.txt)
echo "huge probe guess, first lines of 'tessera info':"
head -2 info.txt | cut -c1-240
tail -1 info.txt
"$TOOL" simulate -o run.cxi > /dev/null 2>&1
left=0
for i in $(seq 1 "$KILLS"); do
  "$TOOL" reconstruct run.cxi -o r.h5 -i 100000 --checkpoint-every 1 --threads 1 --no-previews -q \
    --no-defocus-search > /dev/null 2>&1 &
  pid=$!
  sleep "0.$((RANDOM % 9 + 1))$((RANDOM % 10))"
  kill -TERM "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  left=$((left + $(ls -a | grep -c '\.tmp-')))
  rm -f .*tmp-*
done
echo "SIGTERM during checkpoints, $KILLS times: temporary files left behind: $left"
