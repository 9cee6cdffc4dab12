#include "data/stem4d_shadow_shift.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <sstream>

#include "data/validation_text.h"
#include "src/electron_optics.h"

namespace tessera {

namespace {

std::string fmt(double v, const char* spec = "%.3g") { return validation_text::format_number(v, spec); }

// Binned patterns are at most this many pixels per side: the shadow moves by
// whole detector pixels per step, so finer sampling adds reading, not accuracy.
constexpr int64_t kMaxBinnedSide = 64;
// Half-disc images that correlate less than this at the found shift show no
// common shadow (the limit `describe` calls unreliable).
constexpr double kReliableCorrelation = 0.3;

double wrap_degrees(double a) {
  a = std::fmod(a, 360.0);
  if (a <= -180) a += 360;
  if (a > 180) a -= 360;
  return a;
}

struct Peak {
  std::array<double, 2> shift{0, 0};  // [y, x] scan steps
  double correlation = 0;
};

// The shift s maximising sum_r a(r) b(r + s), to a fraction of a step (a
// parabola through the peak and its neighbours), searched within half the
// image, and the normalised correlation there.
Peak best_shift(torch::Tensor a, torch::Tensor b) {
  const int64_t h = a.size(0), w = a.size(1);
  // A window without zeros at the ends (a Hann of n + 2 less its end points):
  // the block's edges must not correlate as a feature of their own.
  auto hann = [](int64_t n) { return torch::hann_window(n + 2, /*periodic=*/false, torch::kFloat64).slice(0, 1, n + 1); };
  const auto window = hann(h).view({h, 1}) * hann(w).view({1, w});
  a = (a - a.mean()) * window;
  b = (b - b.mean()) * window;
  const double norm = std::sqrt(a.pow(2).sum().item<double>() * b.pow(2).sum().item<double>());
  if (!(norm > 0)) return {};
  // Zero padding to twice the size: no wrap-around between opposite edges.
  const std::vector<int64_t> padded{2 * h, 2 * w};
  const auto fa = torch::fft::fft2(a, padded);
  const auto fb = torch::fft::fft2(b, padded);
  const auto c = torch::real(torch::fft::ifft2(torch::conj(fa) * fb)).contiguous();
  auto index_to_shift = [](int64_t i, int64_t n) { return i < n ? i : i - 2 * n; };
  auto within_half = [](int64_t n) {
    const auto i = torch::arange(2 * n, torch::kLong);
    return 2 * torch::where(i < n, i, i - 2 * n).abs() < n;
  };
  const auto allowed = within_half(h).view({2 * h, 1}) & within_half(w).view({1, 2 * w});
  const auto masked = c.masked_fill(allowed.logical_not(), -std::numeric_limits<double>::infinity());
  const int64_t k = masked.argmax().item<int64_t>(), iy = k / (2 * w), ix = k % (2 * w);
  auto at = [&](int64_t i, int64_t j) { return c[(i + 2 * h) % (2 * h)][(j + 2 * w) % (2 * w)].item<double>(); };
  auto vertex = [](double minus, double centre, double plus) {
    const double curvature = minus - 2 * centre + plus;
    return curvature < 0 ? std::clamp(0.5 * (minus - plus) / curvature, -0.5, 0.5) : 0.0;
  };
  const double c0 = at(iy, ix);
  Peak p;
  p.shift = {index_to_shift(iy, h) + vertex(at(iy - 1, ix), c0, at(iy + 1, ix)),
             index_to_shift(ix, w) + vertex(at(iy, ix - 1), c0, at(iy, ix + 1))};
  p.correlation = c0 / norm;
  return p;
}

}  // namespace

std::optional<ShadowShift> measure_shadow_shift(const Stem4dFile& file, std::string* why_not, int64_t max_side) {
  auto fail = [&](const std::string& reason) -> std::optional<ShadowShift> {
    if (why_not) *why_not = reason;
    return std::nullopt;
  };
  torch::NoGradGuard no_grad;
  const int64_t ry = file.scan_y(), rx = file.scan_x(), qy = file.frame_h(), qx = file.frame_w();
  const int64_t by = std::min(ry, max_side), bx = std::min(rx, max_side);
  if (by < 4 || bx < 4)
    return fail("the scan has " + std::to_string(ry) + " × " + std::to_string(rx) +
                " positions; the shadow check needs at least 4 along each axis");
  const int64_t y0 = (ry - by) / 2, x0 = (rx - bx) / 2;
  const int64_t bin = std::max<int64_t>(1, std::min(qy, qx) / kMaxBinnedSide);
  const int64_t hq = qy / bin, wq = qx / bin;

  // (by, bx, hq, wq): the block, binned, one scan row (consecutive patterns) per read.
  std::vector<torch::Tensor> rows;
  for (int64_t iy = 0; iy < by; ++iy) {
    const int64_t first = (y0 + iy) * rx + x0;
    auto frames = file.read_frames(first, first + bx).slice(1, 0, hq * bin).slice(2, 0, wq * bin);
    if (bin > 1) frames = torch::nn::functional::avg_pool2d(frames.unsqueeze(1), torch::nn::functional::AvgPool2dFuncOptions(bin)).squeeze(1);
    rows.push_back(frames.to(torch::kFloat64));
  }
  const auto block = torch::stack(rows);

  // The bright-field disc: pixels above half the brightest of the mean pattern.
  const torch::Tensor mean = block.mean(std::vector<int64_t>{0, 1});
  const auto disc = mean > 0.5 * mean.max().item<double>();
  if (disc.sum().item<int64_t>() < 8)
    return fail("no bright-field disc found in the mean pattern (fewer than 8 pixels above half its maximum)");
  const auto ky = torch::arange(hq, torch::kFloat64).view({hq, 1}).expand({hq, wq});
  const auto kx = torch::arange(wq, torch::kFloat64).view({1, wq}).expand({hq, wq});
  const auto weight = mean * disc;
  const double cy = (weight * ky).sum().item<double>() / weight.sum().item<double>();
  const double cx = (weight * kx).sum().item<double>() / weight.sum().item<double>();

  // For each pair of half discs: the difference of their (intensity-weighted)
  // centres on the detector and the shift between their virtual images.
  struct Pair {
    std::array<double, 2> dk;  // [y, x] binned detector pixels, first half minus second
    Peak peak;                 // first image(r) = second image(r + shift)
  };
  auto measure = [&](const torch::Tensor& first, const torch::Tensor& second) {
    auto centre = [&](const torch::Tensor& half) {
      const auto wgt = mean * half;
      const double total = wgt.sum().item<double>();
      return std::array<double, 2>{(wgt * ky).sum().item<double>() / total, (wgt * kx).sum().item<double>() / total};
    };
    const auto a = centre(first), b = centre(second);
    auto image = [&](const torch::Tensor& half) { return (block * half).sum(std::vector<int64_t>{2, 3}); };
    return Pair{{a[0] - b[0], a[1] - b[1]}, best_shift(image(first), image(second))};
  };
  const auto right = disc & (kx > cx), left = disc & (kx < cx), bottom = disc & (ky > cy), top = disc & (ky < cy);
  const Pair across = measure(right, left), down = measure(bottom, top);

  // Virtual images: V_k(r) = V_k'(r + A (k − k')), A in scan steps per detector
  // pixel; so S = A K with K, S the pairs' detector offsets and image shifts as
  // columns, and the shadow moves by M = −A⁻¹ = −K S⁻¹ detector pixels per step.
  const double k00 = across.dk[0], k10 = across.dk[1], k01 = down.dk[0], k11 = down.dk[1];
  const double s00 = across.peak.shift[0], s10 = across.peak.shift[1], s01 = down.peak.shift[0], s11 = down.peak.shift[1];
  const double det_s = s00 * s11 - s01 * s10;
  const double len_across = std::hypot(s00, s10), len_down = std::hypot(s01, s11);
  if (std::max(len_across, len_down) < 0.1)
    return fail("the half-disc images do not move against each other (less than 0.1 scan step): no shadow "
                "image, the probe is near focus");
  if (std::fabs(det_s) < 0.1 * len_across * len_down)
    return fail("the half-disc images move along one line only (the left/right and top/bottom shifts are parallel); "
                "the shadow motion cannot be resolved");
  // S⁻¹ = [[s11, −s01], [−s10, s00]] / det_s
  const double i00 = s11 / det_s, i01 = -s01 / det_s, i10 = -s10 / det_s, i11 = s00 / det_s;
  const double m00 = -(k00 * i00 + k01 * i10), m01 = -(k00 * i01 + k01 * i11);
  const double m10 = -(k10 * i00 + k11 * i10), m11 = -(k10 * i01 + k11 * i11);

  // Neighbouring patterns share a shadow only if it moves less than the
  // disc's width per step; a larger "motion" is the fit of images without a
  // shadow (a focused probe shows phase gradients, not a shadow).
  const double disc_width = 2 * std::sqrt(disc.sum().item<double>() / M_PI);
  if (std::max(std::hypot(m00, m10), std::hypot(m01, m11)) > disc_width)
    return fail("the fitted shadow moves more than the bright-field disc's width (" + fmt(disc_width * static_cast<double>(bin)) +
                " px) per scan step: there is no shadow image to follow (the probe is near focus) or the step is too coarse");
  ShadowShift r;
  r.block_y = by;
  r.block_x = bx;
  r.bin = bin;
  const double b = static_cast<double>(bin);
  r.per_step_y[0] = m00 * b;  // column 0: one step along scan y
  r.per_step_y[1] = m10 * b;
  r.per_step_x[0] = m01 * b;  // column 1: one step along scan x
  r.per_step_x[1] = m11 * b;
  r.mirrored = m00 * m11 - m01 * m10 < 0;
  r.correlation = std::min(across.peak.correlation, down.peak.correlation);
  // The scan's x axis sits at 0°, its y axis at 90°: each arrow, less its
  // axis's angle, is the rotation of the scan (plus 180° for Δf > 0).
  const double ax = std::atan2(r.per_step_x[0], r.per_step_x[1]);
  const double ay = std::atan2(r.per_step_y[0], r.per_step_y[1]) - M_PI / 2;
  const double wx = std::hypot(r.per_step_x[0], r.per_step_x[1]), wy = std::hypot(r.per_step_y[0], r.per_step_y[1]);
  r.shadow_angle_deg =
      wrap_degrees(std::atan2(wx * std::sin(ax) + wy * std::sin(ay), wx * std::cos(ax) + wy * std::cos(ay)) * 180 / M_PI);
  r.rotation_if_defocus_negative_deg = r.shadow_angle_deg;
  r.rotation_if_defocus_positive_deg = wrap_degrees(r.shadow_angle_deg - 180);
  const auto& cal = file.calibration();
  if (!file.has_measured_positions() && wx > 0 && wy > 0) {
    const double dk = std::sqrt(cal.dk_y * cal.dk_x), lambda = cal.wavelength_angstrom;
    r.defocus_magnitude_angstrom = 0.5 * (cal.step_x_angstrom / (lambda * dk * wx) + cal.step_y_angstrom / (lambda * dk * wy));
  }
  return r;
}

std::string describe_shadow_shift(const ShadowShift& s, const Stem4dCalibration& cal) {
  std::ostringstream o;
  const std::string pad = "                     ";
  o << "  shadow check:      the bright-field shadow moves per scan step along y by [" << fmt(s.per_step_y[0]) << ", "
    << fmt(s.per_step_y[1]) << "] px, along x by [" << fmt(s.per_step_x[0]) << ", " << fmt(s.per_step_x[1])
    << "] px ([y, x] detector pixels; " << s.block_y << " × " << s.block_x << " central scan positions"
    << (s.bin > 1 ? ", patterns binned " + std::to_string(s.bin) + " × " + std::to_string(s.bin) : std::string()) << ")\n";
  if (s.mirrored) {
    o << pad << "MIRRORED: the y-step arrow lies on the wrong side of the x-step arrow: the scan axes are flipped or\n"
      << pad << "transposed against the detector's, which no scan rotation can fix\n";
  }
  o << pad << "implied scan rotation: " << fmt(s.rotation_if_defocus_positive_deg, "%.1f") << "° if Δf > 0, "
    << fmt(s.rotation_if_defocus_negative_deg, "%.1f") << "° if Δf < 0";
  if (s.defocus_magnitude_angstrom) o << "; roughly |Δf| ≈ " << fmt(*s.defocus_magnitude_angstrom, "%.3g") << " Å";
  o << " (correlation " << fmt(s.correlation, "%.2f")
    << (s.correlation < kReliableCorrelation ? ", too low: unreliable" : "") << ")\n";
  if (cal.defocus_angstrom && *cal.defocus_angstrom != 0) {
    const double rotation = cal.scan_rotation_deg.value_or(0.0);
    const double implied = *cal.defocus_angstrom > 0 ? s.rotation_if_defocus_positive_deg : s.rotation_if_defocus_negative_deg;
    const double off = wrap_degrees(implied - rotation);
    o << pad << "the file (rotation " << fmt(rotation, "%.4g") << "°, Δf = " << fmt(*cal.defocus_angstrom, "%.4g") << " Å) "
      << (std::fabs(off) <= 15 ? "agrees" : "disagrees by " + fmt(off, "%.0f") + "°: its scan_rotation_deg or defocus sign is wrong")
      << "\n";
  }
  o << pad << "read: the shadow moves against the rotated scan for Δf > 0 (crossover before the sample), with it for Δf < 0\n";
  return o.str();
}

}  // namespace tessera
