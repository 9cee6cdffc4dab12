#!/usr/bin/python3
"""Far-field ptychography simulator written independently of tessera.

Issue 13: tessera's defaults were tuned on data from its own simulator
(data/simulate.cpp, data/phantom.cpp). This script shares no code or model
with them, so the scores it leads to test tessera on data it did not write:

* the object is a continuous function (random Gaussian blobs and soft-edged
  ellipses, bars and a polygon) evaluated exactly at every window pixel, not
  a grid sampled by tessera's bilinear windows;
* the probes are built here from optics: a pinhole propagated by the angular
  spectrum, a zone plate's annular pupil with a central stop, a Gaussian beam,
  an electron aperture with defocus and spherical aberration, and the
  coherent modes of an extended source (eigen-decomposition of the mutual
  intensity of shifted-source probes);
* a detector offset (sub-pixel) is a tilt of the beam: the zero order falls
  at [h/2 + dy, w/2 + dx] of the stored frames, as on a detector that is not
  centred on the beam.

What is shared with tessera is only the file convention (CXI 1.6, see
/work/shared/reference/cxi.md and data/cxi_writer.h):
  detector_1/data (N, h, w) as measured (zero order at [h/2, w/2] when
  centred), the far field being the orthonormal 2-D FFT of the exit wave;
  sample_1/geometry_1/translation (N, 3) = x, y, z of the probe on the sample
  in metres; the sample pixel lambda * z / (N * p).
The truth (/entry_1/tessera_truth/{object, probe, positions_px}) is written on
the object grid that tessera derives from those metres (ScanGeometry::
from_metres: window corner = position / pixel - frame / 2, the corners
shifted so that the smallest lies `margin` = 2 pixels inside, the object
floor(largest corner) + frame + 1 + margin pixels), so that the correlation
`tessera reconstruct` prints is valid.

Run with Debian's python3 (python3-numpy, python3-h5py):
  /usr/bin/python3 scripts/sim/independent_sim.py out.cxi --probe zoneplate \
      --offset 2.4,-1.6 --scan spiral --photons 1e6 --seed 1
"""
import argparse
import math
import os
import sys

import numpy as np

HC_EV_M = 1.23984198e-6
JOULE_PER_EV = 1.602176634e-19
MARGIN = 2  # tessera's ScanGeometry::from_metres default


# ----------------------------------------------------------------- object
class Phantom:
    """A continuous complex transmission t(y, x) = a(y, x) exp(i phi(y, x)).

    Coordinates are in sample pixels. Phase spans [0, phase_range] and the
    amplitude [amp_min, 1] over the object grid (normalised once on it).
    """

    def __init__(self, height, width, rng, phase_range=1.0, amp_min=0.7, edge_px=1.0):
        self.edge = edge_px
        area = height * width
        nb = max(8, int(area / 400))  # about one blob per 20 x 20 pixels
        self.blobs = []  # (y, x, sigma, weight_phase, weight_amp)
        for _ in range(nb):
            self.blobs.append((rng.uniform(0, height), rng.uniform(0, width), rng.uniform(2.5, 12.0),
                               rng.normal(), rng.normal()))
        ns = max(4, int(area / 2500))
        self.shapes = []  # soft-edged ellipses and bars
        for _ in range(ns):
            kind = rng.choice(["ellipse", "bar"])
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            angle = rng.uniform(0, math.pi)
            if kind == "ellipse":
                ry, rx = rng.uniform(4, 18), rng.uniform(4, 18)
            else:
                ry, rx = rng.uniform(1.5, 3.5), rng.uniform(10, 40)
            self.shapes.append((cy, cx, ry, rx, angle, rng.normal(), rng.normal()))
        # One polygon with sharp corners (a star-like test feature).
        k = 5
        cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
        r_out, r_in = rng.uniform(12, 22), rng.uniform(5, 9)
        rot = rng.uniform(0, 2 * math.pi)
        pts = []
        for i in range(2 * k):
            r = r_out if i % 2 == 0 else r_in
            a = rot + i * math.pi / k
            pts.append((cy + r * math.sin(a), cx + r * math.cos(a)))
        self.polygon = np.array(pts)
        self.poly_w = (rng.normal(), rng.normal())
        # Normalisation on the grid.
        yy, xx = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
        p, a = self._raw(yy, xx)
        self.p_lo, self.p_hi = p.min(), p.max()
        self.a_lo, self.a_hi = a.min(), a.max()
        self.phase_range, self.amp_min = phase_range, amp_min

    def _soft(self, d):
        # Signed distance d (negative inside) to a smooth step of width edge_px.
        return 0.5 * (1 - np.tanh(d / self.edge))

    def _polygon_inside(self, y, x):
        # Soft indicator of a simple polygon: the signed distance to its
        # boundary, the sign from the even-odd rule.
        pts = self.polygon
        dist = np.full(y.shape, np.inf)
        inside = np.zeros(y.shape, dtype=bool)
        n = len(pts)
        for i in range(n):
            y0, x0 = pts[i]
            y1, x1 = pts[(i + 1) % n]
            dy, dx = y1 - y0, x1 - x0
            t = np.clip(((y - y0) * dy + (x - x0) * dx) / (dy * dy + dx * dx), 0, 1)
            dist = np.minimum(dist, np.hypot(y - y0 - t * dy, x - x0 - t * dx))
            crosses = ((y0 > y) != (y1 > y)) & (x < x0 + (y - y0) * dx / (dy if dy != 0 else 1e-300))
            inside ^= crosses
        return self._soft(np.where(inside, -dist, dist))

    def _raw(self, y, x):
        p = np.zeros(y.shape)
        a = np.zeros(y.shape)
        for by, bx, s, wp, wa in self.blobs:
            g = np.exp(-((y - by) ** 2 + (x - bx) ** 2) / (2 * s * s))
            p += wp * g
            a += wa * g
        for cy, cx, ry, rx, ang, wp, wa in self.shapes:
            c, s = math.cos(ang), math.sin(ang)
            u = (y - cy) * c + (x - cx) * s
            v = -(y - cy) * s + (x - cx) * c
            # Approximate signed distance of an ellipse, in pixels.
            r = np.sqrt((u / ry) ** 2 + (v / rx) ** 2)
            d = (r - 1) * min(ry, rx)
            m = self._soft(d)
            p += 1.5 * wp * m
            a += 1.5 * wa * m
        m = self._polygon_inside(y, x)
        p += 2.0 * self.poly_w[0] * m
        a += 2.0 * self.poly_w[1] * m
        return p, a

    def __call__(self, y, x):
        p, a = self._raw(y, x)
        phase = (p - self.p_lo) / (self.p_hi - self.p_lo) * self.phase_range
        amp = 1 - (a - self.a_lo) / (self.a_hi - self.a_lo) * (1 - self.amp_min)
        return amp * np.exp(1j * phase)


# ----------------------------------------------------------------- probes
def _freq_grid(n):
    """Spatial frequencies in detector pixels, centred: 0 at index n/2."""
    k = np.arange(n) - n // 2
    return np.meshgrid(k.astype(np.float64), k.astype(np.float64), indexing="ij")


def _pupil_to_probe(pupil_centred):
    """Sample-plane probe from a pupil given in centred detector order (zero
    frequency at [n/2, n/2]); the probe's centre lands on pixel [n/2, n/2]."""
    p = np.fft.ifftshift(pupil_centred)
    return np.fft.fftshift(np.fft.ifft2(p, norm="ortho"))


def probe_aperture(n, args):
    """A pinhole of radius args.pinhole_px (soft edge) in the sample-plane grid,
    propagated downstream by args.propagation_m with the angular spectrum on a
    4x padded grid (no wrap-around), then cropped to the window."""
    pad = 4 * n
    y, x = np.meshgrid(np.arange(pad) - pad / 2, np.arange(pad) - pad / 2, indexing="ij")
    r = np.hypot(y, x)
    pin = 0.5 * (1 - np.tanh((r - args.pinhole_px) / 0.6))
    ky, kx = np.meshgrid(np.fft.fftfreq(pad, d=args.pixel_m), np.fft.fftfreq(pad, d=args.pixel_m), indexing="ij")
    lam = args.wavelength_m
    arg = 1 - (lam * ky) ** 2 - (lam * kx) ** 2
    kz = 2 * math.pi / lam * np.sqrt(np.maximum(arg, 0))
    h = np.exp(1j * kz * args.propagation_m) * (arg > 0)
    wave = np.fft.ifft2(np.fft.fft2(pin) * h)
    c = pad // 2
    return wave[c - n // 2:c + n - n // 2, c - n // 2:c + n - n // 2]


def probe_zoneplate(n, args):
    """Annular pupil (zone plate with a central stop), defocused."""
    ky, kx = _freq_grid(n)
    k = np.hypot(ky, kx)
    kmax = args.pupil_px
    pupil = 0.5 * (1 - np.tanh((k - kmax) / 0.5)) * 0.5 * (1 + np.tanh((k - args.stop_fraction * kmax) / 0.5))
    return _pupil_to_probe(pupil * np.exp(1j * args.defocus_rad * (k / kmax) ** 2))


def probe_gaussian(n, args):
    """Gaussian beam of 1/e^2 intensity radius 2 sigma, with a weak curvature."""
    y, x = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    r2 = (y ** 2 + x ** 2).astype(np.float64)
    s = args.gauss_sigma_px
    return np.exp(-r2 / (4 * s * s)) * np.exp(1j * args.gauss_curvature_rad * r2 / (2 * s) ** 2)


def probe_electron(n, args):
    """Convergent electron beam: a hard-edged condenser aperture (as in
    electron optics, only antialiased by 0.3 px) with the aberration function
    chi = C1 (k/kmax)^2 + C3 (k/kmax)^4 in radians at the aperture edge; the
    wave is exp(-i chi) in the pupil."""
    ky, kx = _freq_grid(n)
    k = np.hypot(ky, kx)
    kmax = args.pupil_px
    a = np.clip((kmax - k) / 0.6 + 0.5, 0, 1)
    rho = k / kmax
    chi = args.defocus_rad * rho ** 2 + args.c3_rad * rho ** 4
    return _pupil_to_probe(a * np.exp(-1j * chi))


def probe_defocused_aperture_pupil(n, args, shift_y=0.0, shift_x=0.0):
    """Circular pupil, defocused; a source point off axis shifts the probe
    in the sample plane by (shift_y, shift_x) pixels (a phase ramp in the pupil)."""
    ky, kx = _freq_grid(n)
    k = np.hypot(ky, kx)
    kmax = args.pupil_px
    pupil = 0.5 * (1 - np.tanh((k - kmax) / 0.5)) * np.exp(1j * args.defocus_rad * (k / kmax) ** 2)
    pupil = pupil * np.exp(-2j * math.pi * (ky * shift_y + kx * shift_x) / n)
    return _pupil_to_probe(pupil)


def probe_modes3(n, args, rng):
    """Three incoherent modes of a partially coherent defocused aperture: the
    mutual intensity of probes from an extended, anisotropic Gaussian source
    (each source point shifts the probe), eigen-decomposed; the three strongest
    modes are kept and given the powers args.mode_powers."""
    pts = 61
    sy, sx = args.source_px
    waves = []
    for _ in range(pts):
        waves.append(probe_defocused_aperture_pupil(n, args, rng.normal(0, sy), rng.normal(0, sx)).ravel())
    a = np.array(waves)  # (pts, n*n): the incoherent ensemble
    # Mutual intensity J = A^H A / pts; its eigenvectors are the right singular vectors.
    _, sv, vh = np.linalg.svd(a, full_matrices=False)
    powers = np.array(args.mode_powers, dtype=np.float64)
    powers = powers / powers.sum()
    modes = vh[:len(powers)].reshape(len(powers), n, n)
    natural = sv[:len(powers)] ** 2 / (sv ** 2).sum()
    print(f"modes3: natural power fractions of the source {np.round(natural, 3).tolist()}, "
          f"written as {np.round(powers, 3).tolist()}", file=sys.stderr)
    return np.stack([m / np.linalg.norm(m) * math.sqrt(p) for m, p in zip(modes, powers)])


def make_probe(args, rng):
    n = args.frame
    if args.probe == "modes3":
        modes = probe_modes3(n, args, rng)
    else:
        fn = {"aperture": probe_aperture, "zoneplate": probe_zoneplate, "gaussian": probe_gaussian,
              "electron": probe_electron}[args.probe]
        p = fn(n, args)
        modes = (p / np.linalg.norm(p))[None]
    # Beam tilt: a linear phase across the window moves the far field by
    # (dy, dx) detector pixels (numpy's forward FFT has exp(-2 pi i k n / N)).
    dy, dx = args.offset
    y, x = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    ramp = np.exp(2j * math.pi * (dy * y + dx * x) / n)
    modes = modes * ramp[None]
    # Total power = photons per frame through an empty object.
    total = sum(np.sum(np.abs(m) ** 2) for m in modes)
    return modes * math.sqrt(args.photons / total)


# ----------------------------------------------------------------- scans
def scan_centres_px(args, rng):
    """Probe centres in sample pixels (y, x), about args.positions of them."""
    step = args.step_px
    if args.scan in ("raster", "jittered"):
        side = int(round(math.sqrt(args.positions)))
        iy, ix = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        c = np.stack([iy.ravel() * step, ix.ravel() * step], 1).astype(np.float64)
        if args.scan == "jittered":
            c += rng.uniform(-args.jitter_px, args.jitter_px, c.shape)
        return c
    # Fermat spiral clipped to the raster's square field of view, as beamlines
    # scan a rectangle with it, with the same number of points: the scanned
    # field (and the region tessera scores) is then the raster's, not a disc
    # whose bounding box has unlit corners.
    side = int(round(math.sqrt(args.positions)))
    half = (side - 1) * step / 2
    c = 2 * half / math.sqrt(math.pi * args.positions)
    i = np.arange(4 * args.positions, dtype=np.float64)
    r = c * np.sqrt(i + 0.5)
    theta = i * math.pi * (3 - math.sqrt(5))
    pts = np.stack([r * np.sin(theta), r * np.cos(theta)], 1)
    pts = pts[np.all(np.abs(pts) <= half, 1)][:args.positions]
    return pts + half


def tessera_corners(positions_m_yx, pixel_y, pixel_x, h, w):
    """Window corners and object size exactly as ScanGeometry::from_metres."""
    px = np.stack([positions_m_yx[:, 0] / pixel_y - 0.5 * h, positions_m_yx[:, 1] / pixel_x - 0.5 * w], 1)
    lo = px.min(0)
    px = px - (np.floor(lo) - MARGIN)
    hi = px.max(0)
    obj_h = int(math.floor(hi[0])) + h + 1 + MARGIN
    obj_w = int(math.floor(hi[1])) + w + 1 + MARGIN
    return px, obj_h, obj_w


# ----------------------------------------------------------------- main
def parse_pair(text):
    parts = [float(v) for v in text.split(",")]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected two numbers Y,X, got '{text}'")
    return tuple(parts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("output", help="CXI file to write")
    ap.add_argument("--probe", choices=["aperture", "zoneplate", "gaussian", "electron", "modes3"], default="aperture")
    ap.add_argument("--offset", type=parse_pair, default=(0.0, 0.0),
                    help="zero order offset from [h/2, w/2] in detector pixels, DY,DX (a beam tilt)")
    ap.add_argument("--scan", choices=["raster", "spiral", "jittered"], default="raster")
    ap.add_argument("--positions", type=int, default=400, help="scan points (raster: nearest square)")
    ap.add_argument("--step-px", type=float, default=5.3, help="scan step (raster) or mean spacing (spiral), sample pixels")
    ap.add_argument("--jitter-px", type=float, default=0.5, help="jittered raster: uniform +- offset, sample pixels")
    ap.add_argument("--photons", type=float, default=1e6, help="photons per frame through an empty object")
    ap.add_argument("--no-noise", action="store_true", help="write the expected intensities (float32), no Poisson noise")
    ap.add_argument("--frame", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    # Instrument (only the sample pixel lambda z / (N p) matters to the model).
    ap.add_argument("--energy-ev", type=float, default=6200.0)
    ap.add_argument("--distance-m", type=float, default=1.5)
    ap.add_argument("--detector-pixel-m", type=float, default=75e-6)
    # Probe parameters.
    ap.add_argument("--pinhole-px", type=float, default=9.0, help="aperture: pinhole radius, sample pixels")
    ap.add_argument("--propagation-m", type=float, default=1.2e-3, help="aperture: pinhole to sample distance")
    ap.add_argument("--pupil-px", type=float, default=11.0, help="pupil radius in detector pixels")
    ap.add_argument("--stop-fraction", type=float, default=0.45, help="zoneplate: central stop / outer radius")
    ap.add_argument("--defocus-rad", type=float, default=None,
                    help="defocus phase at the pupil edge (default 8, electron 4)")
    ap.add_argument("--c3-rad", type=float, default=1.5, help="electron: C3 phase at the aperture edge")
    ap.add_argument("--gauss-sigma-px", type=float, default=5.0, help="gaussian: amplitude sigma, sample pixels")
    ap.add_argument("--gauss-curvature-rad", type=float, default=1.0, help="gaussian: phase at r = 2 sigma")
    ap.add_argument("--source-px", type=parse_pair, default=(0.6, 1.0),
                    help="modes3: source size (sigma of the probe shift, y,x sample pixels)")
    ap.add_argument("--mode-powers", type=lambda s: [float(v) for v in s.split(",")], default=[0.60, 0.25, 0.15])
    ap.add_argument("--phase-range", type=float, default=1.0, help="object phase range, radians")
    ap.add_argument("--amp-min", type=float, default=0.7, help="object amplitude minimum (1: a pure phase object)")
    ap.add_argument("--edge-px", type=float, default=1.0, help="object edge width (tanh), sample pixels")
    args = ap.parse_args(argv)
    if args.defocus_rad is None:
        args.defocus_rad = 4.0 if args.probe == "electron" else 8.0

    # Independent streams, so that every probe type sees the same object and
    # scan for a given seed.
    rng_scan, rng_probe, rng_object, rng_noise = [np.random.default_rng(s)
                                                  for s in np.random.SeedSequence(args.seed).spawn(4)]
    n = args.frame
    wavelength = HC_EV_M / args.energy_ev
    args.wavelength_m = wavelength
    # Same operations as ExperimentGeometry::pixel_y_m (bit-identical).
    pixel = wavelength * args.distance_m / (n * args.detector_pixel_m)
    args.pixel_m = pixel

    centres = scan_centres_px(args, rng_scan)
    positions_m = centres * pixel  # probe centres on the sample, [y, x]
    corners, obj_h, obj_w = tessera_corners(positions_m, pixel, pixel, n, n)

    probe = make_probe(args, rng_probe)
    phantom = Phantom(obj_h, obj_w, rng_object, args.phase_range, amp_min=args.amp_min, edge_px=args.edge_px)
    yy, xx = np.meshgrid(np.arange(obj_h, dtype=np.float64), np.arange(obj_w, dtype=np.float64), indexing="ij")
    truth_object = phantom(yy, xx)

    # Window pixel (i, j) of corner c sees the object at c + (i, j).
    iy, ix = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij")
    frames = np.empty((len(corners), n, n), dtype=np.float64)
    for j, (cy, cx) in enumerate(corners):
        o = phantom(cy + iy, cx + ix)
        far = np.fft.fft2(probe * o[None], norm="ortho")
        frames[j] = np.fft.fftshift(np.sum(np.abs(far) ** 2, 0))
    if args.no_noise:
        data = frames.astype(np.float32)
    else:
        data = rng_noise.poisson(frames).astype(np.uint32)

    translation = np.zeros((len(corners), 3))
    translation[:, 0] = positions_m[:, 1]
    translation[:, 1] = positions_m[:, 0]
    write_cxi(args.output, data, translation, args, truth_object, probe, corners)
    zero = (n // 2 + args.offset[0], n // 2 + args.offset[1])
    print(f"{args.output}: {len(corners)} frames of {n}x{n}, probe {args.probe} ({probe.shape[0]} mode(s)), "
          f"scan {args.scan}, zero order at ({zero[0]:.2f}, {zero[1]:.2f}), object {obj_h}x{obj_w}, "
          f"mean counts per frame {frames.sum((1, 2)).mean():.4g}, sample pixel {pixel * 1e9:.4g} nm")


def write_cxi(path, data, translation, args, obj, probe, corners):
    import h5py

    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        f["cxi_version"] = 160
        e = f.create_group("entry_1")
        det = e.create_group("instrument_1/detector_1")
        d = det.create_dataset("data", data=data, chunks=(1,) + data.shape[1:])
        d.attrs["axes"] = "translation:y:x"
        det["distance"] = args.distance_m
        det["x_pixel_size"] = args.detector_pixel_m
        det["y_pixel_size"] = args.detector_pixel_m
        src = e.create_group("instrument_1/source_1")
        src["energy"] = args.energy_ev * JOULE_PER_EV
        src["wavelength"] = args.wavelength_m
        e.create_group("sample_1/geometry_1")["translation"] = translation
        d1 = e.create_group("data_1")
        d1["data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
        d1["translation"] = h5py.SoftLink("/entry_1/sample_1/geometry_1/translation")
        t = e.create_group("tessera_truth")
        t["object"] = obj[None].astype(np.complex64)
        t["probe"] = probe.astype(np.complex64)
        t["positions_px"] = corners.astype(np.float64)
        sim = e.create_group("independent_sim")
        for k, v in sorted(vars(args).items()):
            if k != "output":
                sim.attrs[k] = str(v)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
