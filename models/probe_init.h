#pragma once
// Initial probe estimated from the measured data, never from a ground truth.
#include <utility>

#include <torch/torch.h>

namespace tessera {

// mean_pattern: (h, w) mean measured intensity in FFT order (masked pixels 0).
// The first mode is the zero-phase wave whose far-field intensity is the mean
// pattern: for a weakly scattering object that pattern is close to |F P|^2, so
// the guess has the right aperture and power (sum |P|^2 = mean counts per frame,
// by Parseval). Further modes take a small share of the power (default 5 % each)
// as the first mode times low-order Hermite-like ramps, orthogonalised.
torch::Tensor probe_from_mean_pattern(const torch::Tensor& mean_pattern, int64_t modes,
                                      double extra_mode_power = 0.05);

// Radius (pixels) of the probe's far-field aperture: sqrt(2 <|q - c|^2>) over
// its power spectrum, which is the edge radius of a uniform disc centred on c,
// the zero order relative to the zero frequency ([y, x] pixels, e.g. the
// sub-pixel rest of models/zero_order.h).
double aperture_radius_px(const torch::Tensor& probe, std::pair<double, double> centre = {0, 0});

// The probe (M, h, w) with an extra far-field phase edge_phase_rad * (|q - c| / radius_px)^2:
// a defocus of edge_phase_rad radians at the aperture edge, same on every mode.
// A defocus about any other point than the zero order c would also shift the probe.
torch::Tensor add_defocus(const torch::Tensor& probe, double edge_phase_rad, double radius_px,
                          std::pair<double, double> centre = {0, 0});

// Makes the modes (M, h, w) mutually orthogonal (eigen-decomposition of their
// overlap matrix), sorted by decreasing power; total power is unchanged.
torch::Tensor orthogonalise_modes(const torch::Tensor& probe);

}  // namespace tessera
