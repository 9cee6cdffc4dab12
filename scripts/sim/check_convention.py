#!/usr/bin/python3
"""Checks, without tessera, that a simulated CXI file is self-consistent in
the conventions tessera reads (a mismatch here would make a low score a
simulator bug rather than a tessera failure):

1. the truth window corners (tessera_truth/positions_px) are what tessera
   derives from the stored metres (position / (lambda z / (N p)) - N / 2,
   shifted so that the smallest corner lies 2 pixels inside the object);
2. the frames are |FFT_ortho(probe * window)|^2 in detector order (zero order
   at [h/2, w/2] + the beam tilt), the window taken from the truth object by
   bilinear interpolation at those corners (the object is continuous, so the
   agreement is close, not exact: the printed relative error measures the
   interpolation error; on the noiseless aperture it is 4.6e-4, and moving
   every truth corner by one pixel raises it to 9.4e-3, so noiseless files
   are held to 2e-3; on noisy files the amplitude residual less the Poisson
   variance is a weaker check, held to 0.05);
3. the zero order (centre of mass of the mean pattern) is where the file's
   simulation settings put it.

  /usr/bin/python3 scripts/sim/check_convention.py FILE.cxi [--tolerance T]
Exit status 1 when a check fails.
"""
import argparse
import ast
import math
import sys

import h5py
import numpy as np


def bilinear_windows(obj, corners, n):
    iy, ix = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    for cy, cx in corners:
        y0, x0 = int(math.floor(cy)), int(math.floor(cx))
        fy, fx = cy - y0, cx - x0
        a = obj[y0 + iy, x0 + ix]
        b = obj[y0 + iy, x0 + 1 + ix]
        c = obj[y0 + 1 + iy, x0 + ix]
        d = obj[y0 + 1 + iy, x0 + 1 + ix]
        yield (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--tolerance", type=float, default=None,
                    help="largest relative L2 error of the frames (default 2e-3 noiseless, 0.05 with noise)")
    args = ap.parse_args()
    ok = True
    with h5py.File(args.file, "r") as f:
        det = f["entry_1/instrument_1/detector_1"]
        frames = det["data"][()].astype(np.float64)
        dist, pix = float(det["distance"][()]), float(det["y_pixel_size"][()])
        wl = float(f["entry_1/instrument_1/source_1/wavelength"][()])
        tr = f["entry_1/sample_1/geometry_1/translation"][()]
        obj = f["entry_1/tessera_truth/object"][()][0].astype(np.complex128)
        probe = f["entry_1/tessera_truth/probe"][()].astype(np.complex128)
        corners = f["entry_1/tessera_truth/positions_px"][()]
        settings = dict(f["entry_1/independent_sim"].attrs) if "entry_1/independent_sim" in f else {}
    n_frames, h, w = frames.shape

    pixel = wl * dist / (h * pix)
    px = np.stack([tr[:, 1] / pixel - 0.5 * h, tr[:, 0] / pixel - 0.5 * w], 1)
    px -= np.floor(px.min(0)) - 2
    err = np.abs(px - corners).max()
    size_ok = obj.shape == (int(math.floor(px[:, 0].max())) + h + 3, int(math.floor(px[:, 1].max())) + w + 3)
    print(f"corners from metres vs truth: max difference {err:.2e} px; object {obj.shape} "
          f"{'as tessera sizes it' if size_ok else 'NOT as tessera sizes it'}")
    ok &= err < 1e-6 and size_ok

    noiseless = settings.get("no_noise") == "True"
    sel = np.linspace(0, n_frames - 1, min(n_frames, 40)).astype(int)
    num = den = 0.0
    for j, win in zip(sel, bilinear_windows(obj, corners[sel], h)):
        model = np.fft.fftshift((np.abs(np.fft.fft2(probe * win[None], norm="ortho")) ** 2).sum(0))
        if noiseless:
            num += np.sum((model - frames[j]) ** 2)
            den += np.sum(frames[j] ** 2)
        else:  # amplitudes, where Poisson noise has variance 1/4
            num += np.sum((np.sqrt(model) - np.sqrt(frames[j])) ** 2) - 0.25 * h * w
            den += np.sum(frames[j])
    rel = math.sqrt(max(num, 0) / den)
    print(f"frames vs |FFT(probe * bilinear truth window)|^2: relative error {rel:.3g}"
          f" ({'intensity' if noiseless else 'amplitude, noise variance removed'}) on {len(sel)} frames")
    tolerance = args.tolerance if args.tolerance is not None else (2e-3 if noiseless else 0.05)
    ok &= rel < tolerance

    mean = frames.mean(0)
    yy, xx = np.indices(mean.shape)
    com = ((mean * yy).sum() / mean.sum(), (mean * xx).sum() / mean.sum())
    if "offset" in settings:
        dy, dx = ast.literal_eval(settings["offset"])
        want = (h // 2 + dy, w // 2 + dx)
        # The object's own scattering moves the centre of mass a little.
        d = math.hypot(com[0] - want[0], com[1] - want[1])
        print(f"zero order: centre of mass of the mean pattern ({com[0]:.2f}, {com[1]:.2f}), "
              f"simulated at ({want[0]:.2f}, {want[1]:.2f}), {d:.2f} px apart")
        ok &= d < 0.3
    print("convention check:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
