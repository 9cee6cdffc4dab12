#include "models/phase_ramp.h"

#include <cmath>
#include <complex>

#include "src/error.h"

namespace tessera {
namespace {

torch::Tensor as_complex(const torch::Tensor& t) { return t.is_complex() ? t : torch::view_as_complex(t); }

// Circular pairs: the sum is then exactly sum_q |F P(q)|^2 exp(2 pi i q / n),
// whose angle is the circular mean of the far-field frequencies.
double mean_step(const torch::Tensor& p, int64_t dim) {
  auto s = (torch::roll(p, {-1}, {dim}) * torch::conj(p)).sum();
  return std::arg(std::complex<double>(torch::real(s).item<double>(), torch::imag(s).item<double>()));
}

// exp(i sign k.r) on an (h, w) grid starting at (y0, x0), computed in double
// from global coordinates: a pixel gets the same factor on its owner and in
// every halo that holds it. Separable: h + w complex exponentials, not h w.
torch::Tensor phase_factor(int64_t h, int64_t w, int64_t y0, int64_t x0, std::pair<double, double> k, double sign) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto phase_y = torch::arange(y0, y0 + h, opts).view({h, 1}) * (k.first * sign);
  auto phase_x = torch::arange(x0, x0 + w, opts).view({1, w}) * (k.second * sign);
  return torch::polar(torch::ones_like(phase_y), phase_y) * torch::polar(torch::ones_like(phase_x), phase_x);
}

}  // namespace

std::pair<double, double> probe_phase_ramp(const torch::Tensor& probe) {
  torch::NoGradGuard no_grad;
  auto p = as_complex(probe.detach()).to(torch::kComplexDouble);
  TESSERA_REQUIRE(Error, p.dim() >= 2, "the probe must be a (modes, h, w) array, got ", p.sizes());
  return {mean_step(p, -2), mean_step(p, -1)};
}

PhaseRampMove move_phase_ramp_to_object(torch::Tensor probe, torch::Tensor object, const Rect& extent,
                                        std::pair<double, double> k) {
  torch::NoGradGuard no_grad;
  auto p = as_complex(probe);
  auto o = as_complex(object);
  TESSERA_REQUIRE(Error, o.dim() == 3 && o.size(1) == extent.h && o.size(2) == extent.w, "object array ", o.sizes(),
                  " does not match its extent ", extent.str());
  PhaseRampMove move;
  move.probe = phase_factor(p.size(-2), p.size(-1), 0, 0, k, -1.0).to(p.dtype()).to(p.device()).unsqueeze(0);
  move.object = torch::ones(o.sizes(), o.options());
  move.object[0].copy_(phase_factor(extent.h, extent.w, extent.y0, extent.x0, k, +1.0));
  p.mul_(move.probe);
  o.mul_(move.object);
  return move;
}

}  // namespace tessera
