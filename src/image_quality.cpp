#include "src/image_quality.h"

#include <cmath>

#include "src/error.h"

namespace tessera {
namespace {

torch::Tensor crop(const torch::Tensor& a, const Rect& r) {
  return a.slice(-2, r.y0, r.y1()).slice(-1, r.x0, r.x1());
}

torch::Tensor unit_phase(const torch::Tensor& a) {
  auto c = a.to(torch::kComplexDouble);
  return torch::polar(torch::ones_like(torch::real(c)), torch::angle(c));
}

}  // namespace

Alignment phase_correlation(const torch::Tensor& truth, const torch::Tensor& recon, const Rect& region,
                            int64_t max_shift) {
  TESSERA_REQUIRE(Error, truth.dim() == 2 && recon.dim() == 2, "phase correlation compares 2-D images");
  const Rect bounds_t{0, 0, truth.size(0), truth.size(1)};
  const Rect bounds_r{0, 0, recon.size(0), recon.size(1)};
  TESSERA_REQUIRE(Error, bounds_t.contains(region), "score region ", region.str(), " outside the truth");
  auto t = unit_phase(crop(truth, region));
  Alignment best;
  best.correlation = -1;
  for (int64_t dy = -max_shift; dy <= max_shift; ++dy)
    for (int64_t dx = -max_shift; dx <= max_shift; ++dx) {
      const Rect shifted{region.y0 + dy, region.x0 + dx, region.h, region.w};
      if (!bounds_r.contains(shifted)) continue;
      auto s = (torch::conj(t) * unit_phase(crop(recon, shifted))).mean();
      const double c = torch::abs(s).item<double>();
      if (c > best.correlation)
        best = {c, dy, dx, torch::angle(s).item<double>()};
    }
  TESSERA_REQUIRE(Error, best.correlation >= 0, "no shift fits the score region inside the reconstruction");
  // Ramp: mean phase step of conj(t) o between neighbouring pixels.
  const Rect shifted{region.y0 + best.shift_y, region.x0 + best.shift_x, region.h, region.w};
  auto d = torch::conj(t) * unit_phase(crop(recon, shifted));
  const double ky = torch::angle((d.slice(0, 1) * torch::conj(d.slice(0, 0, -1))).sum()).item<double>();
  const double kx = torch::angle((d.slice(1, 1) * torch::conj(d.slice(1, 0, -1))).sum()).item<double>();
  auto yy = torch::arange(region.h, torch::kFloat64).view({-1, 1});
  auto xx = torch::arange(region.w, torch::kFloat64).view({1, -1});
  auto ramp = torch::polar(torch::ones({region.h, region.w}, torch::kFloat64), -(ky * yy + kx * xx));
  best.correlation_without_ramp = torch::abs((d * ramp).mean()).item<double>();
  return best;
}

std::pair<double, double> mean_phase_gradient(const torch::Tensor& object, const Rect& region) {
  TESSERA_REQUIRE(Error, object.dim() == 2, "the mean phase gradient is taken over a 2-D image, got ", object.sizes());
  TESSERA_REQUIRE(Error, Rect({0, 0, object.size(0), object.size(1)}).contains(region) && region.h >= 2 && region.w >= 2,
                  "phase-gradient region ", region.str(), " is not inside the ", object.size(0), " x ", object.size(1),
                  " image");
  auto o = crop(object, region).to(torch::kComplexDouble);
  const double gy = torch::angle((o.slice(0, 1) * torch::conj(o.slice(0, 0, -1))).sum()).item<double>();
  const double gx = torch::angle((o.slice(1, 1) * torch::conj(o.slice(1, 0, -1))).sum()).item<double>();
  return {gy, gx};
}

double normalised_rms_error(const torch::Tensor& truth, const torch::Tensor& recon, const Rect& region,
                            int64_t shift_y, int64_t shift_x) {
  auto t = crop(truth, region).to(torch::kComplexDouble);
  auto o = crop(recon, Rect{region.y0 + shift_y, region.x0 + shift_x, region.h, region.w})
               .to(torch::kComplexDouble);
  // Best complex scale a minimising |t - a o|^2 removes global phase and amplitude.
  auto a = (torch::conj(o) * t).sum() / (torch::conj(o) * o).sum();
  auto e = t - a * o;
  return std::sqrt(torch::real(torch::conj(e) * e).sum().item<double>() /
                   torch::real(torch::conj(t) * t).sum().item<double>());
}

}  // namespace tessera
