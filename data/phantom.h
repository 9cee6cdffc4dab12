#pragma once
// Built-in test objects and probes for simulation: deterministic for a seed.
#include <cstdint>

#include <torch/torch.h>

namespace tessera {

// Complex object (H, W): amplitude in [0.75, 1], phase with 0.5 rad RMS,
// made of seeded discs, soft blobs and thin bars (sharp and smooth features,
// so that both resolution and low-frequency errors show).
torch::Tensor phantom_object(int64_t h, int64_t w, uint64_t seed);

// Focused-beam probe (h, w): a circular aperture of `aperture_fraction` of the
// Nyquist radius in the far field with `defocus_rad` radians of quadratic phase
// at the aperture edge, normalised so that sum |P|^2 = photons.
torch::Tensor phantom_probe(int64_t h, int64_t w, double aperture_fraction, double defocus_rad,
                            double photons);

}  // namespace tessera
