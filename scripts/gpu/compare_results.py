#!/usr/bin/env python3
"""Compares two tessera results of the same data (e.g. CUDA against CPU, or K
ranks against one): the object over the scan's well-lit interior and the
probe, as the correlation |<a, b>| / (|a| |b|) (blind to the global phase,
which the data cannot fix) and as the largest elementwise relative difference
after that phase is removed.

    compare_results.py A.h5 B.h5 [--min-correlation 0.999] [--max-difference X]

Exit 1 when a bound given is not met, so that a check script can count it.
"""
import argparse
import sys

import h5py
import numpy as np


def interior(result):
    """The scanned region less a quarter window per side (src/geometry.h's interior())."""
    obj = result["object"]
    pos = result["positions_px"]
    frame = result["probe"].shape[-1]
    y0, x0 = np.floor(pos.min(axis=0)).astype(int)
    y1, x1 = np.ceil(pos.max(axis=0)).astype(int) + frame
    q = frame // 4
    y0, x0, y1, x1 = y0 + q, x0 + q, y1 - q, x1 - q
    if y1 - y0 < 2 or x1 - x0 < 2:
        return obj
    return obj[..., y0:y1, x0:x1]


def load(path):
    with h5py.File(path, "r") as f:
        g = f["reconstruction"]
        return {k: np.asarray(g[k][()]) for k in ("object", "probe", "positions_px")}


def compare(a, b):
    a = a.astype(np.complex128).ravel()
    b = b.astype(np.complex128).ravel()
    inner = np.vdot(b, a)
    correlation = abs(inner) / (np.linalg.norm(a) * np.linalg.norm(b))
    phase = inner / abs(inner) if abs(inner) > 0 else 1
    difference = np.abs(a - b * phase).max() / max(np.abs(b).max(), 1e-300)
    return correlation, difference


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--min-correlation", type=float)
    p.add_argument("--max-difference", type=float)
    p.add_argument("--label", default="")
    args = p.parse_args()
    ra, rb = load(args.a), load(args.b)
    if ra["object"].shape != rb["object"].shape:
        print(f"{args.label}: objects differ in shape: {ra['object'].shape} vs {rb['object'].shape}")
        return 1
    oc, od = compare(interior(ra), interior(rb))
    pc, pd = compare(ra["probe"], rb["probe"])
    ok = True
    if args.min_correlation is not None:
        ok = ok and oc >= args.min_correlation and pc >= args.min_correlation
    if args.max_difference is not None:
        ok = ok and od <= args.max_difference and pd <= args.max_difference
    print(f"{args.label}: object correlation {oc:.8f}, max relative difference {od:.3e}; "
          f"probe correlation {pc:.8f}, max relative difference {pd:.3e} -> {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
