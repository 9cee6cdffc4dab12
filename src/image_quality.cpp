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
  TESSERA_REQUIRE(Error, max_shift >= 0, "the shift search needs max_shift >= 0, got ", max_shift);
  const Rect bounds_t{0, 0, truth.size(0), truth.size(1)};
  const Rect bounds_r{0, 0, recon.size(0), recon.size(1)};
  TESSERA_REQUIRE(Error, bounds_t.contains(region), "score region ", region.str(), " outside the truth");
  auto t = unit_phase(crop(truth, region));
  // Every shift at once as one FFT cross-correlation: at paper scale the
  // search spans +-32 px (4225 shifts over 0.4 M pixels), which took 25 s
  // shift by shift. The reconstruction's window reaches max_shift past the
  // region on each side (zeros outside the image; such shifts are excluded),
  // and the FFT is that window's size, so no shift wraps around.
  const int64_t m = max_shift, ph = region.h + 2 * m, pw = region.w + 2 * m;
  const Rect window{region.y0 - m, region.x0 - m, ph, pw};
  auto u = torch::zeros({ph, pw}, torch::kComplexDouble);
  const Rect inside = window.intersect(bounds_r);
  if (!inside.empty())
    crop(u, Rect{inside.y0 - window.y0, inside.x0 - window.x0, inside.h, inside.w})
        .copy_(unit_phase(crop(recon, inside)));
  auto tp = torch::zeros({ph, pw}, torch::kComplexDouble);
  tp.slice(0, 0, region.h).slice(1, 0, region.w).copy_(t);
  auto magnitude = torch::abs(torch::fft::ifft2(torch::conj(torch::fft::fft2(tp)) * torch::fft::fft2(u)))
                       .slice(0, 0, 2 * m + 1)
                       .slice(1, 0, 2 * m + 1)
                       .contiguous();
  const auto* c = magnitude.data_ptr<double>();
  int64_t best_y = 0, best_x = 0;
  double best_c = -1;
  for (int64_t dy = -m; dy <= m; ++dy)
    for (int64_t dx = -m; dx <= m; ++dx) {
      if (!bounds_r.contains(Rect{region.y0 + dy, region.x0 + dx, region.h, region.w})) continue;
      const double v = c[(dy + m) * (2 * m + 1) + dx + m];
      if (v > best_c) best_c = v, best_y = dy, best_x = dx;
    }
  TESSERA_REQUIRE(Error, best_c >= 0, "no shift fits the score region inside the reconstruction");
  // The reported figures are evaluated directly at the chosen shift, so they
  // carry no FFT rounding.
  const Rect shifted{region.y0 + best_y, region.x0 + best_x, region.h, region.w};
  auto d = torch::conj(t) * unit_phase(crop(recon, shifted));
  auto s = d.mean();
  Alignment best{torch::abs(s).item<double>(), best_y, best_x, torch::angle(s).item<double>()};
  // Ramp: the mean phase step of conj(t) o between neighbouring pixels.
  const auto [ky, kx] = mean_phase_gradient(d, Rect{0, 0, region.h, region.w});
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
