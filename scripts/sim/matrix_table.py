#!/usr/bin/python3
"""Markdown tables of every run in a probe_matrix.sh OUTDIR: one row per
case, one column per run. The first table is the correlation with the true
object that `tessera reconstruct` prints; the second the same after also
removing a linear phase ramp (a large gap between the two means the result
carries a ramp, as issue 13 describes).

  /usr/bin/python3 scripts/sim/matrix_table.py OUTDIR
"""
import os
import re
import sys

SCORE = re.compile(r"correlation with the true object ([-0-9.eE+naif]+) \(([-0-9.eE+naif]+) after also removing")
TIME = re.compile(r"^done: \d+ iterations in ([0-9.]+) s", re.M)


def case_order(name):
    probe, centring, scan, photons = name.split("_")
    probes = ["aperture", "zoneplate", "gaussian", "electron", "modes3"]
    return (photons != "1e6", probes.index(probe) if probe in probes else 99, centring, scan)


def main(out):
    runs_dir = os.path.join(out, "runs")
    runs = []
    for d in sorted(os.listdir(runs_dir)):
        path = os.path.join(runs_dir, d)
        info = {}
        try:
            with open(os.path.join(path, "run.txt")) as f:
                for line in f:
                    k, _, v = line.partition(": ")
                    info[k] = v.strip()
        except OSError:
            continue
        results = {}
        for fn in os.listdir(path):
            if not fn.endswith(".log"):
                continue
            text = open(os.path.join(path, fn)).read()
            m, t = SCORE.search(text), TIME.search(text)
            if m:
                results[fn[:-4]] = (m.group(1), m.group(2), t.group(1) if t else "")
            else:
                results[fn[:-4]] = ("failed", "failed", "")
        runs.append((info.get("label", d), float(info.get("created", "0")), results))
    runs.sort(key=lambda r: r[1])
    cases = sorted({c for _, _, r in runs for c in r}, key=case_order)
    for title, index in (("correlation with the true object", 0), ("after also removing a phase ramp", 1),
                         ("seconds per reconstruction", 2)):
        print(f"\n### {title}\n")
        print("| case | " + " | ".join(label for label, _, _ in runs) + " |")
        print("|---|" + "---|" * len(runs))
        for c in cases:
            cells = []
            for _, _, r in runs:
                v = r.get(c)
                if v is None:
                    cells.append("")
                elif index < 2 and v[index] not in ("failed",):
                    cells.append(f"{float(v[index]):.3f}")
                else:
                    cells.append(v[index] if index < 2 else (f"{float(v[2]):.0f}" if v[2] else ""))
            print(f"| {c} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
