#!/usr/bin/python3
"""Train tessera's example plug-and-play denoiser and export it as TorchScript.

    /usr/bin/python3 scripts/train_denoiser.py [--output models/denoiser.pt] [--steps 1500]

Uses Debian's python3-torch (1.13); no other package. Reproducible: every
random draw comes from fixed seeds, so the same torch build and thread count
(set with --threads, default 2) give the same weights (checked: two runs,
identical state_dict; the file's bytes differ only in the recorded time).
Time: 1500 steps at 0.10-0.16 s each on 2 idle CPU cores, about 3-4 minutes;
9-17 minutes were measured on a shared 2-core machine at load average 5.

Tensor convention (models/priors/torchscript.h): the module receives the
complex object as a real tensor x of shape (L, 2, H, W), channel 0 the real
and channel 1 the imaginary part, one batch entry per object slice, any H and
W, float32 (float64 in double-precision runs: tessera casts the weights); it
returns the denoised object in the same layout, shape and dtype.

What the network must handle, and how it is built for it:
  * A reconstruction's object is defined up to a global phase factor and, with
    a refined probe, a global amplitude scale. The network is bias-free with
    ReLU activations (Mohan et al., ICLR 2020), hence exactly equivariant to a
    positive scale, D(a x) = a D(x); equivariance to a global phase is learned
    by drawing a random global phase for every training object.
  * The noise level of a reconstruction is not known in advance and varies
    across the field of view (illumination): training draws the noise level
    per object over a wide range, and bias-free networks generalise across
    noise levels.
  * Tiles: tessera runs the denoiser on each tile's working array (owned
    region plus halo). The receptive field is DEPTH pixels in each direction
    (DEPTH 3x3 convolutions), far less than the halo of usual frame sizes, so
    tiled and undecomposed results agree (tests/test_priors.cpp measures it).
    Replicate padding: beyond the array edge the object is continued, not set
    to zero (a zero border would look like a strong edge).

Training data: random phantoms (discs, soft blobs, thin bars, a gentle phase
ramp; random phase and amplitude ranges), in the spirit of data/phantom.cpp,
with the noise of low-dose reconstructions: additive complex Gaussian noise,
partly white and partly spatially correlated (a reconstruction's error is
smoothed by the overlap of probe windows), of standard deviation between
0.01 and 0.3 of the object amplitude.
"""
import argparse
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CHANNELS = 24
DEPTH = 6  # 3x3 convolutions: receptive field radius DEPTH pixels


class Denoiser(nn.Module):
    """Bias-free residual CNN: D(x) = x - N(x), N predicting the noise."""

    def __init__(self, channels: int = CHANNELS, depth: int = DEPTH):
        super().__init__()
        layers = [nn.Conv2d(2, channels, 3, padding=1, padding_mode="replicate", bias=False), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, padding_mode="replicate", bias=False), nn.ReLU()]
        layers += [nn.Conv2d(channels, 2, 3, padding=1, padding_mode="replicate", bias=False)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.net(x)


def uniform(g, lo, hi, n=()):
    return lo + (hi - lo) * torch.rand(n, generator=g)


def phantom(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """A random complex object (h, w): amplitude in [0.5, 1], phase of 0.2 to 1.2 rad RMS."""
    yy = torch.arange(h, dtype=torch.float32).view(h, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, w)
    size = math.sqrt(h * w)
    phase = torch.zeros(h, w)
    absorb = torch.zeros(h, w)
    # Sharp-edged discs.
    for _ in range(int(torch.randint(3, 14, (), generator=g))):
        cy, cx = float(uniform(g, 0, h)), float(uniform(g, 0, w))
        r = float(uniform(g, 0.03, 0.22)) * size
        inside = (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r).float()
        phase += inside * float(uniform(g, -0.5, 0.5))
        absorb += inside * float(uniform(g, 0, 0.15))
    # Soft blobs.
    for _ in range(int(torch.randint(2, 10, (), generator=g))):
        cy, cx = float(uniform(g, 0, h)), float(uniform(g, 0, w))
        s = float(uniform(g, 0.03, 0.15)) * size
        blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        phase += blob * float(uniform(g, -0.4, 0.4))
        absorb += blob * float(uniform(g, -0.05, 0.1))
    # Thin bars (resolution features), horizontal or vertical.
    if float(uniform(g, 0, 1)) < 0.6:
        n = int(torch.randint(3, 8, (), generator=g))
        width = int(torch.randint(1, 3, (), generator=g))
        gap = width + int(torch.randint(1, 4, (), generator=g))
        length = int(uniform(g, 0.2, 0.6) * min(h, w))
        y0, x0 = int(uniform(g, 0, h - length)), int(uniform(g, 0, w - n * gap))
        bars = torch.zeros(h, w)
        for k in range(n):
            bars[y0:y0 + length, x0 + k * gap:x0 + k * gap + width] = 1
        if float(uniform(g, 0, 1)) < 0.5:
            bars = bars.t()[:h, :w] if h == w else bars
        phase += bars * float(uniform(g, 0.1, 0.4))
    # A gentle linear phase ramp, as a slightly mis-positioned reconstruction has.
    phase += float(uniform(g, -0.01, 0.01)) * yy + float(uniform(g, -0.01, 0.01)) * xx
    # Strong phase objects as data/phantom.cpp makes them (0.8 rad RMS there):
    # the RMS phase is drawn in [0.2, 1.2] rad, so thin bars and disc edges
    # carry steps of up to a few radians (wrapping included).
    phase = (phase - phase.mean()) / (phase.std() + 1e-6) * float(uniform(g, 0.2, 1.2))
    amplitude = torch.clamp(1 - absorb * float(uniform(g, 0.5, 2.5)), 0.5, 1.0)
    return torch.polar(amplitude, phase)


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of (B, 2, h, w) fields, one sigma per batch entry (circular borders)."""
    r = max(1, int(3 * float(sigma.max())))
    t = torch.arange(-r, r + 1, dtype=torch.float32).view(1, -1)
    k = torch.exp(-t ** 2 / (2 * sigma.view(-1, 1) ** 2))
    k = k / k.sum(1, keepdim=True)  # (B, 2r+1)
    b, c, h, w = x.shape
    kk = k.repeat_interleave(c, 0)  # one kernel per (batch, channel) plane
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="circular"), kk.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="circular"), kk.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


class TrainingData:
    """A fixed pool of phantoms; batches are random crops, flips and 90-degree
    turns of them, with a random global phase and scale and low-dose noise."""

    def __init__(self, pool: int, size: int, seed: int):
        self.g = torch.Generator().manual_seed(seed)
        self.pool = torch.stack([torch.view_as_real(phantom(size, size, self.g)).permute(2, 0, 1) for _ in range(pool)])

    def batch(self, n: int, patch: int):
        g = self.g
        size = self.pool.shape[-1]
        idx = torch.randint(0, self.pool.shape[0], (n,), generator=g)
        oy = torch.randint(0, size - patch + 1, (n,), generator=g)
        ox = torch.randint(0, size - patch + 1, (n,), generator=g)
        turns = torch.randint(0, 4, (n,), generator=g)
        flips = torch.randint(0, 2, (n,), generator=g)
        crops = []
        for i in range(n):
            c = self.pool[idx[i], :, oy[i]:oy[i] + patch, ox[i]:ox[i] + patch]
            c = torch.rot90(c, int(turns[i]), (1, 2))
            crops.append(torch.flip(c, (2,)) if flips[i] else c)
        clean = torch.stack(crops)  # (n, 2, patch, patch)
        # Random global phase (a reconstruction's is arbitrary) and scale.
        theta = uniform(g, -math.pi, math.pi, (n,))
        scale = torch.exp(uniform(g, -0.7, 0.7, (n,)))
        cos, sin = (scale * torch.cos(theta)).view(n, 1, 1), (scale * torch.sin(theta)).view(n, 1, 1)
        re, im = clean[:, 0], clean[:, 1]
        clean = torch.stack([cos * re - sin * im, sin * re + cos * im], 1)
        # Noise: std 0.01 .. 0.3 of the mean amplitude, a mix of white and
        # correlated, with a smooth gain across the field (illumination).
        amp = clean.pow(2).sum(1).sqrt().mean((1, 2)).view(n, 1, 1, 1)
        sigma = torch.exp(uniform(g, math.log(0.01), math.log(0.3), (n,))).view(n, 1, 1, 1) * amp
        white = torch.randn(clean.shape, generator=g)
        corr = blur(torch.randn(clean.shape, generator=g), uniform(g, 0.6, 1.5, (n,)))
        corr = corr / corr.std((1, 2, 3), keepdim=True)
        mix = uniform(g, 0, 1, (n,)).view(n, 1, 1, 1)
        noise = torch.sqrt(1 - mix) * white + torch.sqrt(mix) * corr
        yy = torch.linspace(-1, 1, patch).view(1, 1, patch, 1)
        xx = torch.linspace(-1, 1, patch).view(1, 1, 1, patch)
        gain = 1 + 0.4 * torch.tanh(uniform(g, -1, 1, (n,)).view(n, 1, 1, 1) * yy +
                                    uniform(g, -1, 1, (n,)).view(n, 1, 1, 1) * xx)
        return clean + sigma * gain * noise, clean


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output", default=os.path.join(here, "..", "models", "denoiser.pt"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--patch", type=int, default=40)
    ap.add_argument("--pool", type=int, default=400, help="training phantoms (64 x 64)")
    ap.add_argument("--rate", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # weight initialisation
    t0 = time.time()
    data = TrainingData(args.pool, 64, args.seed + 1)  # training objects and noise
    held_out = TrainingData(32, 64, args.seed + 2)
    val_noisy, val_clean = held_out.batch(32, 64)
    model = Denoiser()
    opt = torch.optim.Adam(model.parameters(), lr=args.rate)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.rate, total_steps=args.steps, pct_start=0.1)

    def validation():
        with torch.no_grad():
            before = (val_noisy - val_clean).pow(2).mean().item()
            after = (model(val_noisy) - val_clean).pow(2).mean().item()
        return before, after

    print(f"{args.pool} training phantoms in {time.time() - t0:.1f} s", flush=True)
    for step in range(1, args.steps + 1):
        noisy, clean = data.batch(args.batch, args.patch)
        loss = (model(noisy) - clean).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps:
            before, after = validation()
            print(f"step {step:5d}  train mse {loss.item():.3e}  held-out mse {before:.3e} -> {after:.3e} "
                  f"({10 * math.log10(before / after):.2f} dB)  {time.time() - t0:.0f} s", flush=True)
    seconds = time.time() - t0

    model.eval()
    scripted = torch.jit.script(model)
    # Self-checks of the convention before export.
    x = val_noisy[:2]
    with torch.no_grad():
        assert scripted(x).shape == x.shape and scripted(x).dtype == x.dtype
        assert torch.allclose(scripted(2.5 * x), 2.5 * scripted(x), rtol=1e-4, atol=1e-5), "not scale-equivariant"
    before, after = validation()
    info = (f"tessera example denoiser\nconvention: x (L, 2, H, W) real/imaginary channels -> same\n"
            f"architecture: bias-free residual CNN, {DEPTH} 3x3 convolutions, {CHANNELS} channels, replicate padding\n"
            f"training: {args.steps} steps of {args.batch} patches {args.patch}x{args.patch}, seed {args.seed}, "
            f"{args.threads} threads, {seconds:.0f} s, torch {torch.__version__}\n"
            f"held-out mse {before:.4e} -> {after:.4e}\n")
    out = os.path.normpath(args.output)
    scripted.save(out, _extra_files={"tessera_info.txt": info})
    print(info + f"wrote {out} ({os.path.getsize(out) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
