#include "src/frc.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stack>

#include "src/error.h"

namespace tessera {
namespace {

constexpr double kPi = 3.14159265358979323846;

torch::Tensor crop(const torch::Tensor& x, int64_t y0, int64_t x0, int64_t h, int64_t w) {
  return x.slice(0, y0, y0 + h).slice(1, x0, x0 + w);
}

// 1-D Tukey window: flat in the middle, cosine tapers over taper/2 of n at each end.
torch::Tensor tukey(int64_t n, double taper) {
  auto w = torch::ones({n}, torch::kFloat64);
  const double edge = 0.5 * taper * static_cast<double>(n - 1);
  if (edge <= 0 || n < 3) return w;
  auto a = w.accessor<double, 1>();
  for (int64_t i = 0; i < n; ++i) {
    const double d = std::min<double>(static_cast<double>(i), static_cast<double>(n - 1 - i));
    if (d < edge) a[i] = 0.5 * (1 - std::cos(kPi * d / edge));
  }
  return w;
}

torch::Tensor window2d(int64_t h, int64_t w, double taper) {
  return tukey(h, taper).view({-1, 1}) * tukey(w, taper).view({1, -1});
}

// The window-weighted mean removed, then the window applied: the mean (the
// flat part of a phase object) would otherwise leak through the window's
// spectrum into the first rings and correlate them trivially.
torch::Tensor apodise(const torch::Tensor& x, const torch::Tensor& window) {
  auto mean = (x * window).sum() / window.sum();
  return (x - mean) * window;
}

// Phase of sum x[k + 1] conj(x[k]) along dim: the mean phase step per sample.
double phase_step(const torch::Tensor& x, int64_t dim) {
  const int64_t n = x.size(dim);
  if (n < 2) return 0;
  auto s = (x.narrow(dim, 1, n - 1) * torch::conj(x.narrow(dim, 0, n - 1))).sum();
  return torch::angle(s).item<double>();
}

// Image sampled at (r + f) for a fractional f, by the Fourier shift theorem.
torch::Tensor fourier_shift(const torch::Tensor& x, double fy, double fx) {
  if (fy == 0 && fx == 0) return x;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto qy = torch::fft::fftfreq(x.size(0), opts).view({-1, 1});
  auto qx = torch::fft::fftfreq(x.size(1), opts).view({1, -1});
  auto phase = 2 * kPi * (qy * fy + qx * fx);
  return torch::fft::ifft2(torch::fft::fft2(x) * torch::polar(torch::ones_like(phase), phase));
}

// b sampled at A's pixels r + s over region (size h x w), s possibly fractional.
// The crop takes a margin where b has one, so that the Fourier shift's
// periodic wrap stays outside the region.
torch::Tensor sample_shifted(const torch::Tensor& b, const Rect& region, double sy, double sx) {
  const int64_t iy = std::llround(sy), ix = std::llround(sx);
  const int64_t y0 = region.y0 + iy, x0 = region.x0 + ix;
  constexpr int64_t kMargin = 32;
  const int64_t top = std::min(kMargin, y0), left = std::min(kMargin, x0);
  const int64_t bottom = std::min(kMargin, b.size(0) - (y0 + region.h));
  const int64_t right = std::min(kMargin, b.size(1) - (x0 + region.w));
  auto c = crop(b, y0 - top, x0 - left, region.h + top + bottom, region.w + left + right);
  c = fourier_shift(c, sy - static_cast<double>(iy), sx - static_cast<double>(ix));
  return crop(c, top, left, region.h, region.w);
}

// Integer shift s (|s| <= max_shift) that best brings b(r + s) onto a(r) over
// region: peak of the FFT cross-correlation of the neighbour products.
std::pair<int64_t, int64_t> integer_shift(const torch::Tensor& a, const torch::Tensor& b, const Rect& region,
                                          int64_t max_shift, double taper) {
  auto A = crop(a, region.y0, region.x0, region.h, region.w);
  auto B = crop(b, region.y0, region.x0, region.h, region.w);
  const int64_t h = region.h - 1, w = region.w - 1;
  const auto window = window2d(h, w, taper);
  auto products = [&](const torch::Tensor& x) {
    auto y = x.slice(0, 1).slice(1, 1) * torch::conj(x.slice(0, 0, -1).slice(1, 1));
    auto z = x.slice(0, 1).slice(1, 1) * torch::conj(x.slice(0, 1).slice(1, 0, -1));
    return std::make_pair(apodise(y, window), apodise(z, window));
  };
  auto [ay, ax] = products(A);
  auto [by, bx] = products(B);
  // Zero-padded to twice the size: the correlation is not circular.
  const std::vector<int64_t> size{2 * h, 2 * w};
  auto xcorr = [&](const torch::Tensor& p, const torch::Tensor& q) {
    return torch::abs(torch::fft::ifft2(torch::fft::fft2(p, size) * torch::conj(torch::fft::fft2(q, size))));
  };
  auto score = (xcorr(ay, by) + xcorr(ax, bx)).contiguous();
  // score[d] = sum_r pa(r + d) conj(pb(r)); with b(r + s) = a(r), pb(r) = pa(r - s): the peak is at d = -s.
  auto acc = score.accessor<double, 2>();
  double best = -1;
  std::pair<int64_t, int64_t> s{0, 0};
  for (int64_t dy = -max_shift; dy <= max_shift; ++dy)
    for (int64_t dx = -max_shift; dx <= max_shift; ++dx) {
      const double v = acc[(dy + 2 * h) % (2 * h)][(dx + 2 * w) % (2 * w)];
      if (v > best) {
        best = v;
        s = {-dy, -dx};
      }
    }
  return s;
}

}  // namespace

double half_bit_threshold(int64_t n) {
  TESSERA_REQUIRE(Error, n > 0, "the half-bit threshold needs a ring with pixels, got ", n);
  const double r = std::sqrt(static_cast<double>(n));
  return (0.2071 + 1.9102 / r) / (1.2071 + 0.9102 / r);
}

FrcCurve fourier_ring_correlation(const torch::Tensor& a_in, const torch::Tensor& b_in, const Rect& region_in,
                                  const FrcOptions& opt) {
  TESSERA_REQUIRE(Error, a_in.dim() == 2 && b_in.dim() == 2, "Fourier ring correlation compares 2-D images, got ",
                  a_in.sizes(), " and ", b_in.sizes());
  TESSERA_REQUIRE(SettingsError, opt.pixel_y_m > 0 && opt.pixel_x_m > 0 && std::isfinite(opt.pixel_y_m) &&
                                     std::isfinite(opt.pixel_x_m),
                  "Fourier ring correlation needs a positive pixel size, got ", opt.pixel_y_m, " x ", opt.pixel_x_m,
                  " m");
  TESSERA_REQUIRE(SettingsError, opt.taper >= 0 && opt.taper <= 1, "the FRC window taper must be in [0, 1], got ",
                  opt.taper);
  const auto a = a_in.detach().to(torch::kCPU).to(torch::kComplexDouble);
  const auto b = b_in.detach().to(torch::kCPU).to(torch::kComplexDouble);
  TESSERA_REQUIRE(DataError, torch::isfinite(torch::view_as_real(a)).all().item<bool>() &&
                                 torch::isfinite(torch::view_as_real(b)).all().item<bool>(),
                  "Fourier ring correlation: an image holds NaN or infinite values");
  const Rect bounds_a{0, 0, a.size(0), a.size(1)}, bounds_b{0, 0, b.size(0), b.size(1)};
  Rect region = region_in.intersect(bounds_a).intersect(bounds_b);
  constexpr int64_t kMinSide = 16;
  TESSERA_REQUIRE(DataError, region.h >= kMinSide && region.w >= kMinSide, "the region compared by FRC, ",
                  region_in.str(), ", leaves ", region.str(), " inside both images (", a.size(0), "x", a.size(1),
                  " and ", b.size(0), "x", b.size(1), "): at least ", kMinSide, "x", kMinSide, " pixels are needed");

  FrcCurve out;
  FrcAlignment& al = out.alignment;
  if (opt.align) {
    const int64_t max_shift = opt.max_shift > 0 ? opt.max_shift : std::min(region.h, region.w) / 4;
    auto [sy, sx] = integer_shift(a, b, region, max_shift, opt.taper);
    al.shift_y = static_cast<double>(sy);
    al.shift_x = static_cast<double>(sx);
    // B's matching region must lie inside B: shrink the compared region if not.
    region = region.intersect(Rect{-sy, -sx, b.size(0), b.size(1)});
    TESSERA_REQUIRE(DataError, region.h >= kMinSide && region.w >= kMinSide,
                    "after aligning the images (shift ", sy, ", ", sx, " px), they overlap in only ", region.str());
  }
  const auto window = window2d(region.h, region.w, opt.taper);
  const auto A = crop(a, region.y0, region.x0, region.h, region.w);
  // Coordinates from the region's centre: the offset is the phase difference there.
  auto yy = (torch::arange(region.h, torch::kFloat64) - 0.5 * static_cast<double>(region.h - 1)).view({-1, 1});
  auto xx = (torch::arange(region.w, torch::kFloat64) - 0.5 * static_cast<double>(region.w - 1)).view({1, -1});
  torch::Tensor B;
  auto fa = torch::fft::fftshift(torch::fft::fft2(apodise(A, window)));
  torch::Tensor fb;
  // Two rounds: the ramp is read best from well-aligned images, and the
  // sub-pixel shift from images without a ramp (a ramp shifts the spectrum).
  const int rounds = opt.align ? 3 : 1;
  for (int round = 0; round < rounds; ++round) {
    B = sample_shifted(b, region, al.shift_y, al.shift_x);
    if (opt.align) {
      const auto r = torch::conj(A) * B * window;
      al.ramp_y = phase_step(r, 0);
      al.ramp_x = phase_step(r, 1);
      auto phase = -(al.ramp_y * yy + al.ramp_x * xx);
      B = B * torch::polar(torch::ones_like(phase), phase);
      al.phase_offset = torch::angle((torch::conj(A) * B * window).sum()).item<double>();
      B = B * c10::complex<double>(std::cos(al.phase_offset), -std::sin(al.phase_offset));
    }
    fb = torch::fft::fftshift(torch::fft::fft2(apodise(B, window)));
    if (!opt.align || !opt.subpixel || round == rounds - 1) break;
    // B(r) = A(r + t) gives cross spectrum |F_A|^2 exp(-2 pi i q t): its phase
    // step per frequency sample is -2 pi t / n, and sampling b at s - t aligns.
    const auto c = fa * torch::conj(fb);
    const double ty = -phase_step(c, 0) * static_cast<double>(region.h) / (2 * kPi);
    const double tx = -phase_step(c, 1) * static_cast<double>(region.w) / (2 * kPi);
    const double ny = al.shift_y - ty, nx = al.shift_x - tx;
    // Never leave B's bounds (a wild estimate from pure noise would).
    const Rect moved{region.y0 + std::llround(ny), region.x0 + std::llround(nx), region.h, region.w};
    if (!bounds_b.contains(moved)) break;
    al.shift_y = ny;
    al.shift_x = nx;
  }

  // Rings in physical frequency (pixels may be anisotropic).
  const double py = opt.pixel_y_m, px = opt.pixel_x_m;
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto qy = torch::fft::fftshift(torch::fft::fftfreq(region.h, f64)).view({-1, 1}) / py;
  auto qx = torch::fft::fftshift(torch::fft::fftfreq(region.w, f64)).view({1, -1}) / px;
  auto q = torch::sqrt(qy * qy + qx * qx);
  const double dq = 1.0 / std::min(static_cast<double>(region.h) * py, static_cast<double>(region.w) * px);
  const double q_nyquist = std::min(0.5 / py, 0.5 / px);
  const int64_t rings = static_cast<int64_t>(std::floor(q_nyquist / dq + 1e-9)) + 1;
  auto ring = torch::round(q / dq).to(torch::kInt64).flatten();
  auto inside = ring < rings;
  ring = ring.masked_select(inside);
  auto sum = [&](const torch::Tensor& v) {
    return torch::zeros({rings}, torch::kFloat64).index_add_(0, ring, v.flatten().masked_select(inside));
  };
  auto cross = sum(torch::real(fa * torch::conj(fb)));
  auto pa = sum(torch::real(fa * torch::conj(fa)));
  auto pb = sum(torch::real(fb * torch::conj(fb)));
  auto count = torch::zeros({rings}, torch::kInt64).index_add_(0, ring, torch::ones_like(ring));
  auto ca = cross.accessor<double, 1>(), aa = pa.accessor<double, 1>(), ba = pb.accessor<double, 1>();
  auto na = count.accessor<int64_t, 1>();
  for (int64_t k = 0; k < rings; ++k) {
    const double d = std::sqrt(aa[k] * ba[k]);
    out.frequency_per_m.push_back(static_cast<double>(k) * dq);
    out.frc.push_back(d > 0 ? ca[k] / d : 0.0);
    out.ring_pixels.push_back(na[k]);
    out.threshold.push_back(na[k] > 0 ? half_bit_threshold(na[k]) : 1.0);
  }
  out.region = region;
  out.nyquist_period_m = 1.0 / q_nyquist;
  out.resolution_m = out.nyquist_period_m;
  out.sampling_limited = true;
  for (int64_t k = 1; k < rings; ++k) {
    const double d1 = out.frc[k] - out.threshold[k];
    if (d1 >= 0) continue;
    double qc = out.frequency_per_m[k];
    if (k >= 2) {
      const double d0 = out.frc[k - 1] - out.threshold[k - 1];
      qc = out.frequency_per_m[k - 1] + dq * d0 / (d0 - d1);
    }
    out.resolution_m = 1.0 / qc;
    out.sampling_limited = false;
    break;
  }
  return out;
}

torch::Tensor illumination_map(const torch::Tensor& probe, const torch::Tensor& positions_px, int64_t object_h,
                               int64_t object_w) {
  TESSERA_REQUIRE(DataError, probe.dim() == 3 || probe.dim() == 2, "the probe must be (modes, h, w), got ",
                  probe.sizes());
  TESSERA_REQUIRE(DataError, positions_px.dim() == 2 && positions_px.size(1) == 2,
                  "positions must be (N, 2) [y, x], got ", positions_px.sizes());
  auto p = probe.detach().to(torch::kCPU).to(torch::kComplexDouble);
  if (p.dim() == 2) p = p.unsqueeze(0);
  const auto intensity = torch::real(p * torch::conj(p)).sum(0);
  const int64_t h = intensity.size(0), w = intensity.size(1);
  auto map = torch::zeros({object_h, object_w}, torch::kFloat64);
  auto pos = positions_px.detach().to(torch::kCPU).to(torch::kFloat64).contiguous();
  auto acc = pos.accessor<double, 2>();
  const Rect bounds{0, 0, object_h, object_w};
  for (int64_t j = 0; j < pos.size(0); ++j) {
    if (!std::isfinite(acc[j][0]) || !std::isfinite(acc[j][1])) continue;
    const Rect window{std::llround(acc[j][0]), std::llround(acc[j][1]), h, w};
    const Rect r = window.intersect(bounds);
    if (r.empty()) continue;
    map.slice(0, r.y0, r.y1()).slice(1, r.x0, r.x1()) +=
        intensity.slice(0, r.y0 - window.y0, r.y1() - window.y0).slice(1, r.x0 - window.x0, r.x1() - window.x0);
  }
  return map;
}

Rect well_lit_region(const torch::Tensor& illumination, double fraction) {
  TESSERA_REQUIRE(Error, illumination.dim() == 2, "the illumination map must be 2-D, got ", illumination.sizes());
  auto m = illumination.detach().to(torch::kCPU).to(torch::kFloat64).contiguous();
  if (m.numel() == 0) return {};
  auto sorted = std::get<0>(m.flatten().sort());
  const double reference = sorted[std::min<int64_t>(m.numel() - 1, m.numel() * 99 / 100)].item<double>();
  if (!(reference > 0)) return {};
  auto lit = (m >= fraction * reference).to(torch::kUInt8).contiguous();
  auto acc = lit.accessor<uint8_t, 2>();
  const int64_t H = m.size(0), W = m.size(1);
  // Largest rectangle under a histogram, row by row: heights[x] is the run of
  // lit pixels ending at this row in column x.
  std::vector<int64_t> heights(W, 0);
  Rect best;
  for (int64_t y = 0; y < H; ++y) {
    for (int64_t x = 0; x < W; ++x) heights[x] = acc[y][x] ? heights[x] + 1 : 0;
    std::stack<int64_t> open;  // columns with increasing heights
    for (int64_t x = 0; x <= W; ++x) {
      const int64_t hx = x < W ? heights[x] : 0;
      while (!open.empty() && heights[open.top()] >= hx) {
        const int64_t height = heights[open.top()];
        open.pop();
        const int64_t left = open.empty() ? 0 : open.top() + 1;
        const Rect r{y - height + 1, left, height, x - left};
        if (r.area() > best.area()) best = r;
      }
      open.push(x);
    }
  }
  return best;
}

std::string format_length(double m) {
  char buf[64];
  if (!std::isfinite(m)) return "unknown";
  if (m < 1e-9)
    std::snprintf(buf, sizeof buf, "%.3g Å", m * 1e10);
  else if (m < 1e-6)
    std::snprintf(buf, sizeof buf, "%.3g nm", m * 1e9);
  else
    std::snprintf(buf, sizeof buf, "%.3g µm", m * 1e6);
  return buf;
}

}  // namespace tessera
