#include "data/phantom.h"

#include <ATen/CPUGeneratorImpl.h>
#include <cmath>

#include "models/propagation.h"

namespace tessera {

torch::Tensor phantom_object(int64_t h, int64_t w, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto u = [&](int64_t n) { return torch::rand({n}, gen, torch::kFloat64); };
  auto yy = torch::arange(h, torch::kFloat64).view({h, 1}).expand({h, w});
  auto xx = torch::arange(w, torch::kFloat64).view({1, w}).expand({h, w});
  auto phase = torch::zeros({h, w}, torch::kFloat64);
  auto absorb = torch::zeros({h, w}, torch::kFloat64);
  const double scale = std::sqrt(static_cast<double>(h * w));
  // Sharp-edged discs.
  const int64_t discs = std::max<int64_t>(8, h * w / 600);
  auto d = u(5 * discs);
  for (int64_t i = 0; i < discs; ++i) {
    const double cy = d[5 * i].item<double>() * h, cx = d[5 * i + 1].item<double>() * w;
    const double r = (0.015 + 0.05 * d[5 * i + 2].item<double>()) * scale;
    const double p = 0.5 * (d[5 * i + 3].item<double>() - 0.4);
    auto inside = ((yy - cy).pow(2) + (xx - cx).pow(2)) < r * r;
    phase += inside.to(torch::kFloat64) * p;
    absorb += inside.to(torch::kFloat64) * 0.08 * d[5 * i + 4].item<double>();
  }
  // Smooth blobs.
  auto b = u(4 * discs);
  for (int64_t i = 0; i < discs; ++i) {
    const double cy = b[4 * i].item<double>() * h, cx = b[4 * i + 1].item<double>() * w;
    const double s = (0.02 + 0.06 * b[4 * i + 2].item<double>()) * scale;
    phase += 0.4 * (b[4 * i + 3].item<double>() - 0.5) *
             torch::exp(-((yy - cy).pow(2) + (xx - cx).pow(2)) / (2 * s * s));
  }
  // Thin bars (resolution features).
  for (int64_t k = 0; k < 6; ++k) {
    const int64_t x0 = w / 4 + k * 3;
    phase.slice(0, h / 3, 2 * h / 3).slice(1, x0, x0 + 1) += 0.3;
  }
  // A strong phase object (0.5 rad RMS): weak phase contrast would let even a
  // flat guess score high on the phase correlation.
  phase = (phase - phase.mean()) / phase.std() * 0.5;
  auto amplitude = torch::clamp(1.0 - absorb, 0.75, 1.0);
  return torch::polar(amplitude, phase).to(torch::kComplexFloat);
}

torch::Tensor phantom_probe(int64_t h, int64_t w, double aperture_fraction, double defocus_rad,
                            double photons) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto ky = torch::fft::fftfreq(h, 1.0, opts).view({h, 1}) * 2.0;  // units of Nyquist
  auto kx = torch::fft::fftfreq(w, 1.0, opts).view({1, w}) * 2.0;
  auto k2 = (ky * ky + kx * kx) / (aperture_fraction * aperture_fraction);
  auto aperture = (k2 <= 1.0).to(torch::kFloat64);
  auto pupil = torch::polar(aperture, k2 * defocus_rad);
  auto probe = to_detector_order(far_field_adjoint(pupil));
  const double power = torch::view_as_real(probe).pow(2).sum().item<double>();
  return (probe * std::sqrt(photons / power)).to(torch::kComplexFloat);
}

}  // namespace tessera
