#include "models/probe_init.h"

#include "models/propagation.h"
#include "src/error.h"

namespace tessera {

torch::Tensor probe_from_mean_pattern(const torch::Tensor& mean_pattern, int64_t modes, double extra_power) {
  TESSERA_REQUIRE(Error, mean_pattern.dim() == 2, "mean pattern must be 2-D");
  TESSERA_REQUIRE(Error, modes >= 1, "need at least one probe mode, got ", modes);
  auto amp = torch::sqrt(torch::clamp_min(mean_pattern.to(torch::kFloat32), 0));
  TESSERA_REQUIRE(DataError, amp.sum().item<double>() > 0,
                  "the measured patterns hold no counts: cannot estimate the probe");
  auto first = far_field_adjoint(torch::complex(amp, torch::zeros_like(amp)));
  // Zero phase everywhere centres the wave at pixel [0, 0]; the window centre is wanted.
  first = to_detector_order(first);
  const int64_t h = first.size(0), w = first.size(1);
  std::vector<torch::Tensor> list{first};
  auto y = (torch::arange(h, torch::kFloat32) - h / 2.0).view({h, 1}) / (0.25 * h);
  auto x = (torch::arange(w, torch::kFloat32) - w / 2.0).view({1, w}) / (0.25 * w);
  for (int64_t m = 1; m < modes; ++m) {
    // Low-order patterns: x, y, xy, x^2 - y^2, ...
    torch::Tensor pattern;
    switch (m % 4) {
      case 1: pattern = x.expand({h, w}); break;
      case 2: pattern = y.expand({h, w}); break;
      case 3: pattern = (x * y); break;
      default: pattern = (x * x - y * y) * static_cast<float>(1 + m / 4); break;
    }
    list.push_back(first * pattern);
  }
  auto probe = orthogonalise_modes(torch::stack(list));
  // Power: first mode keeps (1 - (M-1) e), the others e each, of the measured total.
  const double total = mean_pattern.sum().item<double>();
  auto power = torch::view_as_real(probe).pow(2).sum({-1, -2, -3});
  std::vector<double> share(modes, extra_power);
  share[0] = std::max(0.5, 1.0 - extra_power * (modes - 1));
  double norm = 0;
  for (double s : share) norm += s;
  for (int64_t m = 0; m < modes; ++m)
    probe[m] *= std::sqrt(total * share[m] / norm / power[m].item<double>());
  return probe;
}

namespace {

// |q - c|^2 in pixels of the frequency grid, FFT order (zero frequency at [0, 0]).
torch::Tensor frequency_radius_squared(int64_t h, int64_t w, std::pair<double, double> c) {
  auto fy = torch::fft::fftfreq(h, torch::kFloat64) * static_cast<double>(h) - c.first;
  auto fx = torch::fft::fftfreq(w, torch::kFloat64) * static_cast<double>(w) - c.second;
  return fy.view({h, 1}).pow(2) + fx.view({1, w}).pow(2);
}

}  // namespace

double aperture_radius_px(const torch::Tensor& probe, std::pair<double, double> centre) {
  torch::NoGradGuard no_grad;
  auto p = probe.detach().to(torch::kComplexDouble).cpu();
  auto power = torch::view_as_real(far_field(p)).pow(2).sum(-1);
  if (power.dim() == 3) power = power.sum(0);
  const double total = power.sum().item<double>();
  TESSERA_REQUIRE(Error, total > 0, "the probe is zero: no aperture to measure");
  auto q2 = frequency_radius_squared(power.size(0), power.size(1), centre);
  return std::sqrt(2 * (power * q2).sum().item<double>() / total);
}

torch::Tensor add_defocus(const torch::Tensor& probe, double edge_phase_rad, double radius_px,
                          std::pair<double, double> centre) {
  TESSERA_REQUIRE(Error, radius_px > 0, "aperture radius must be positive, got ", radius_px);
  torch::NoGradGuard no_grad;
  auto q2 = frequency_radius_squared(probe.size(-2), probe.size(-1), centre).to(probe.device());
  auto phase = q2 * (edge_phase_rad / (radius_px * radius_px));
  auto factor = torch::polar(torch::ones_like(phase), phase).to(probe.dtype());
  return far_field_adjoint(far_field(probe) * factor);
}

torch::Tensor orthogonalise_modes(const torch::Tensor& probe) {
  const int64_t M = probe.size(0);
  if (M == 1) return probe;
  auto flat = probe.reshape({M, -1}).to(torch::kComplexDouble);
  auto overlap = torch::matmul(flat.conj(), flat.transpose(0, 1));  // (M, M) Hermitian
  auto [evals, evecs] = torch::linalg_eigh(overlap, "L");
  // eigh sorts ascending: reverse for decreasing power.
  evecs = evecs.flip({1});
  auto ortho = torch::matmul(evecs.transpose(0, 1), flat);
  return ortho.reshape(probe.sizes()).to(probe.dtype());
}

}  // namespace tessera
