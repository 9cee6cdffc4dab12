#include "train/result_frc.h"

#include <cmath>
#include <sstream>

#include "src/error.h"

namespace tessera {

FrcCurve frc_between_results(const ReconstructionResult& a, const ReconstructionResult& b, const std::string& name_a,
                             const std::string& name_b) {
  auto pixel = [](const ReconstructionResult& r, const std::string& name) {
    TESSERA_REQUIRE(DataError, r.pixel_size_m.numel() == 2, name, ": /reconstruction/pixel_size_m must hold [y, x]");
    auto p = r.pixel_size_m.to(torch::kFloat64).contiguous();
    const double y = p[0].item<double>(), x = p[1].item<double>();
    TESSERA_REQUIRE(DataError, std::isfinite(y) && std::isfinite(x) && y > 0 && x > 0, name,
                    ": /reconstruction/pixel_size_m must be positive, got ", y, ", ", x, " m");
    return std::make_pair(y, x);
  };
  const auto [ay, ax] = pixel(a, name_a);
  const auto [by, bx] = pixel(b, name_b);
  TESSERA_REQUIRE(DataError, std::fabs(ay - by) <= 1e-6 * ay && std::fabs(ax - bx) <= 1e-6 * ax,
                  "FRC compares reconstructions on the same pixel grid: ", name_a, " has pixels of ", ay, " x ", ax,
                  " m, ", name_b, " of ", by, " x ", bx, " m");
  auto object = [](const ReconstructionResult& r, const std::string& name) {
    TESSERA_REQUIRE(DataError, r.object.dim() == 3 && r.object.size(0) >= 1, name,
                    ": /reconstruction/object must be (slices, height, width), got ", r.object.sizes());
    return r.object[0];
  };
  const auto oa = object(a, name_a), ob = object(b, name_b);
  auto lit = [](const ReconstructionResult& r, const torch::Tensor& o) {
    return illumination_map(r.probe, r.positions_px, o.size(0), o.size(1));
  };
  const auto la = lit(a, oa), lb = lit(b, ob);
  // Each map is normalised by its own interior level: the halves' probes
  // need not carry the same power.
  auto normalised = [](const torch::Tensor& m) {
    auto sorted = std::get<0>(m.flatten().sort());
    const double ref = sorted[std::min<int64_t>(m.numel() - 1, m.numel() * 99 / 100)].item<double>();
    return ref > 0 ? m / ref : m;
  };
  const int64_t h = std::min(oa.size(0), ob.size(0)), w = std::min(oa.size(1), ob.size(1));
  const auto both = torch::minimum(normalised(la).slice(0, 0, h).slice(1, 0, w),
                                   normalised(lb).slice(0, 0, h).slice(1, 0, w));
  const Rect region = well_lit_region(both, 0.5);
  TESSERA_REQUIRE(DataError, !region.empty(), name_a, " and ", name_b,
                  ": no part of the object is lit well by both scans (probe or positions empty?)");
  FrcOptions options;
  options.pixel_y_m = ay;
  options.pixel_x_m = ax;
  return fourier_ring_correlation(oa, ob, region, options);
}

std::string describe_frc(const FrcCurve& c) {
  std::ostringstream s;
  if (c.sampling_limited)
    s << "FRC resolution (half-bit): the halves agree up to the sampling limit, " << format_length(c.resolution_m)
      << " (2 pixels); the data may hold finer detail than these pixels show\n";
  else
    s << "FRC resolution (half-bit): " << format_length(c.resolution_m) << " (period; Nyquist "
      << format_length(c.nyquist_period_m) << ")\n";
  const auto& a = c.alignment;
  s << "  compared " << c.region.h << "x" << c.region.w << " px at (" << c.region.y0 << ", " << c.region.x0
    << "), well lit in both; second image aligned by shift (" << a.shift_y << ", " << a.shift_x << ") px, phase "
    << a.phase_offset << " rad, ramp (" << a.ramp_y << ", " << a.ramp_x << ") rad/px";
  return s.str();
}

}  // namespace tessera
