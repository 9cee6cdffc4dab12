#include "models/phase_ramp.h"

#include <ATen/Dispatch.h>

#include <cmath>
#include <complex>
#include <vector>

#include "src/error.h"

namespace tessera {
namespace {

torch::Tensor as_complex(const torch::Tensor& t) { return t.is_complex() ? t : torch::view_as_complex(t); }

// exp(i sign k.r) on an (h, w) grid starting at (y0, x0), in the complex
// `dtype`, on the CPU. The row and column factors come from global
// coordinates, in double: a pixel gets the same factor on its owner and in
// every halo that holds it. Separable: h + w complex exponentials, and one
// product per pixel (plain loops: this runs every iteration).
torch::Tensor phase_factor(int64_t h, int64_t w, int64_t y0, int64_t x0, std::pair<double, double> k, double sign,
                           torch::ScalarType dtype) {
  std::vector<std::complex<double>> row(static_cast<size_t>(h)), column(static_cast<size_t>(w));
  for (int64_t i = 0; i < h; ++i) row[i] = std::polar(1.0, static_cast<double>(y0 + i) * k.first * sign);
  for (int64_t j = 0; j < w; ++j) column[j] = std::polar(1.0, static_cast<double>(x0 + j) * k.second * sign);
  auto out = torch::empty({h, w}, torch::TensorOptions().dtype(dtype));
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(dtype), "phase_factor", [&] {
    using C = std::complex<scalar_t>;
    auto* o = reinterpret_cast<C*>(out.data_ptr());
    for (int64_t i = 0; i < h; ++i) {
      const C r(row[i]);
      for (int64_t j = 0; j < w; ++j) o[i * w + j] = r * C(column[j]);
    }
  });
  return out;
}

}  // namespace

std::pair<double, double> probe_phase_ramp(const torch::Tensor& probe) {
  torch::NoGradGuard no_grad;
  auto p = as_complex(probe.detach()).to(torch::kCPU, torch::kComplexDouble).contiguous();
  TESSERA_REQUIRE(Error, p.dim() >= 2, "the probe must be a (modes, h, w) array, got ", p.sizes());
  // Circular pairs: each sum is then exactly sum_q |F P(q)|^2 exp(2 pi i q / n),
  // whose angle is the circular mean of the far-field frequencies.
  const int64_t h = p.size(-2), w = p.size(-1), planes = p.numel() / std::max<int64_t>(h * w, 1);
  const auto* z = reinterpret_cast<const std::complex<double>*>(p.data_ptr());
  std::complex<double> sy = 0, sx = 0;
  for (int64_t m = 0; m < planes; ++m)
    for (int64_t i = 0; i < h; ++i) {
      const auto* r = z + (m * h + i) * w;
      const auto* below = z + (m * h + (i + 1) % h) * w;
      for (int64_t j = 0; j < w; ++j) {
        sy += below[j] * std::conj(r[j]);
        sx += r[(j + 1) % w] * std::conj(r[j]);
      }
    }
  return {std::arg(sy), std::arg(sx)};
}

PhaseStepSums object_phase_step_sums(const torch::Tensor& object, const torch::Tensor& weight_y,
                                     const torch::Tensor& weight_x) {
  torch::NoGradGuard no_grad;
  auto o = as_complex(object.detach());
  TESSERA_REQUIRE(Error, o.dim() == 3, "the object must be an (L, H, W) array, got ", o.sizes());
  auto first = o[0];
  auto sum = [&](int dim, const torch::Tensor& w) {
    const int64_t n = first.size(dim);
    TESSERA_REQUIRE(Error, w.dim() == 2 && w.size(dim) == n - 1 && w.size(1 - dim) == first.size(1 - dim),
                    "phase-step weight ", w.sizes(), " does not match the object ", first.sizes());
    auto pairs = first.slice(dim, 1) * torch::conj(first.slice(dim, 0, n - 1));
    auto s = (torch::view_as_real(pairs) * w.unsqueeze(-1).to(pairs.device())).to(torch::kFloat64).sum(std::vector<int64_t>{0, 1}).cpu();
    return std::complex<double>(s[0].item<double>(), s[1].item<double>());
  };
  PhaseStepSums r;
  r.y = sum(0, weight_y);
  r.x = sum(1, weight_x);
  return r;
}

PhaseRampMove move_phase_ramp_to_object(torch::Tensor probe, torch::Tensor object, const Rect& extent,
                                        std::pair<double, double> k) {
  torch::NoGradGuard no_grad;
  auto p = as_complex(probe);
  auto o = as_complex(object);
  TESSERA_REQUIRE(Error, o.dim() == 3 && o.size(1) == extent.h && o.size(2) == extent.w, "object array ", o.sizes(),
                  " does not match its extent ", extent.str());
  PhaseRampMove move;
  move.probe = phase_factor(p.size(-2), p.size(-1), 0, 0, k, -1.0, p.scalar_type()).to(p.device()).unsqueeze(0);
  move.object = phase_factor(extent.h, extent.w, extent.y0, extent.x0, k, +1.0, o.scalar_type()).to(o.device());
  move.object = o.size(0) == 1 ? move.object.unsqueeze(0)
                               : torch::cat({move.object.unsqueeze(0), torch::ones({o.size(0) - 1, extent.h, extent.w},
                                                                                 o.options())});
  p.mul_(move.probe);
  o.mul_(move.object);
  return move;
}

}  // namespace tessera
