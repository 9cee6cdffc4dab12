#include "src/frc.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stack>
#include <tuple>

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

// Image sampled at (r + f) for a fractional f, by the Fourier shift theorem.
torch::Tensor fourier_shift(const torch::Tensor& x, double fy, double fx) {
  if (fy == 0 && fx == 0) return x;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto qy = torch::fft::fftfreq(x.size(0), opts).view({-1, 1});
  auto qx = torch::fft::fftfreq(x.size(1), opts).view({1, -1});
  auto phase = 2 * kPi * (qy * fy + qx * fx);
  return torch::fft::ifft2(torch::fft::fft2(x) * torch::polar(torch::ones_like(phase), phase));
}

// b sampled at A's pixels r + s over region (size h x w), s possibly
// fractional, with the phase ramp k (radians per pixel, from the region's
// centre) removed. The crop takes a margin where b has one, so that the
// Fourier shift's periodic wrap stays outside the region, and the ramp goes
// before the shift: a ramp makes the crop's edges jump in phase, and the
// ringing of the jump would bias every estimate made from the result.
torch::Tensor sample_shifted(const torch::Tensor& b, const Rect& region, double sy, double sx, double ky,
                             double kx) {
  const int64_t iy = std::llround(sy), ix = std::llround(sx);
  const double fy = sy - static_cast<double>(iy), fx = sx - static_cast<double>(ix);
  const int64_t y0 = region.y0 + iy, x0 = region.x0 + ix;
  constexpr int64_t kMargin = 32;
  const int64_t top = std::min(kMargin, y0), left = std::min(kMargin, x0);
  const int64_t bottom = std::min(kMargin, b.size(0) - (y0 + region.h));
  const int64_t right = std::min(kMargin, b.size(1) - (x0 + region.w));
  auto c = crop(b, y0 - top, x0 - left, region.h + top + bottom, region.w + left + right);
  if (ky != 0 || kx != 0) {
    auto uy = (torch::arange(c.size(0), torch::kFloat64) - static_cast<double>(top) -
               0.5 * static_cast<double>(region.h - 1) - fy).view({-1, 1});
    auto ux = (torch::arange(c.size(1), torch::kFloat64) - static_cast<double>(left) -
               0.5 * static_cast<double>(region.w - 1) - fx).view({1, -1});
    auto phase = -(ky * uy + kx * ux);
    c = c * torch::polar(torch::ones_like(phase), phase);
  }
  c = fourier_shift(c, fy, fx);
  return crop(c, top, left, region.h, region.w);
}

// Where |sum_{y,x} x[y, x] exp(i sign 2 pi (fy[y] dy + fx[x] dx))| peaks for
// |d| <= 1, to 0.003: a Fourier sum evaluated on a fine grid by matrix
// products (Guizar-Sicairos et al., Opt. Lett. 33 (2008) 156), in two
// passes. With x a cross spectrum and f the FFT frequencies it is the
// sub-pixel peak of a cross-correlation; with x an image and f its pixel
// coordinates / n, the sub-sample peak of its spectrum.
std::pair<double, double> fine_peak(const torch::Tensor& x, const torch::Tensor& fy, const torch::Tensor& fx,
                                    double sign) {
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  double cy = 0, cx = 0;
  for (const auto& [span, step] : {std::make_pair(1.0, 0.05), std::make_pair(0.06, 0.003)}) {
    const int64_t n = std::llround(2 * span / step) + 1;
    auto dy = cy - span + step * torch::arange(n, f64), dx = cx - span + step * torch::arange(n, f64);
    auto py = sign * 2 * kPi * dy.view({-1, 1}) * fy.view({1, -1});
    auto px = sign * 2 * kPi * fx.view({-1, 1}) * dx.view({1, -1});
    auto v = torch::abs(torch::matmul(torch::matmul(torch::polar(torch::ones_like(py), py), x),
                                      torch::polar(torch::ones_like(px), px)));
    const int64_t best = v.argmax().item<int64_t>();
    cy = dy[best / n].item<double>();
    cx = dx[best % n].item<double>();
  }
  return {cy, cx};
}

// Index d (|d_y| <= my, |d_x| <= mx) of the largest value of a (2h, 2w)
// circular correlation map.
std::pair<int64_t, int64_t> peak_index(const torch::Tensor& map, int64_t my, int64_t mx) {
  auto m = map.contiguous();
  auto acc = m.accessor<double, 2>();
  const int64_t H = m.size(0), W = m.size(1);
  double best = -std::numeric_limits<double>::infinity();
  std::pair<int64_t, int64_t> at{0, 0};
  for (int64_t dy = -my; dy <= my; ++dy)
    for (int64_t dx = -mx; dx <= mx; ++dx) {
      const double v = acc[(dy + H) % H][(dx + W) % W];
      if (v > best) {
        best = v;
        at = {dy, dx};
      }
    }
  return at;
}

// Zero-padded (not circular) cross-correlation sum_r p(r + d) conj(q(r)).
torch::Tensor correlation(const torch::Tensor& p, const torch::Tensor& q) {
  const std::vector<int64_t> size{2 * p.size(0), 2 * p.size(1)};
  return torch::fft::ifft2(torch::fft::fft2(p, size) * torch::conj(torch::fft::fft2(q, size)));
}

// Coarse ramp of b against a over region, in whole frequency samples: a ramp
// shifts the spectrum, and the spectrum's magnitude does not see a
// translation, so the peak of the correlation of the magnitudes finds it
// whatever the shift. Returns radians per pixel.
std::pair<double, double> coarse_ramp(const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& window) {
  auto ma = torch::abs(torch::fft::fft2(apodise(A, window))), mb = torch::abs(torch::fft::fft2(apodise(B, window)));
  ma = ma - ma.mean();
  mb = mb - mb.mean();
  // |F_B|(q) = |F_A|(q - k): the correlation peaks at -k.
  const auto [dy, dx] = peak_index(torch::real(correlation(ma, mb)), A.size(0) / 8, A.size(1) / 8);
  return {-2 * kPi * static_cast<double>(dy) / static_cast<double>(A.size(0)),
          -2 * kPi * static_cast<double>(dx) / static_cast<double>(A.size(1))};
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
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  // Coordinates from the region's centre: the offset is the phase difference there.
  auto centred = [&](int64_t n) { return torch::arange(n, f64) - 0.5 * static_cast<double>(n - 1); };
  if (opt.align) {
    // Coarse ramp, then the integer shift from the correlation of the images
    // without that ramp (a ramp left in would blur its peak).
    const auto window = window2d(region.h, region.w, opt.taper);
    const auto A = crop(a, region.y0, region.x0, region.h, region.w);
    auto B = crop(b, region.y0, region.x0, region.h, region.w);
    std::tie(al.ramp_y, al.ramp_x) = coarse_ramp(A, B, window);
    auto phase = -(al.ramp_y * centred(region.h).view({-1, 1}) + al.ramp_x * centred(region.w).view({1, -1}));
    B = B * torch::polar(torch::ones_like(phase), phase);
    const int64_t max_shift = opt.max_shift > 0 ? opt.max_shift : std::min(region.h, region.w) / 4;
    // sum_r A(r + d) conj(B(r)) with b(r + s) = a(r) peaks at d = -s.
    const auto [dy, dx] =
        peak_index(torch::abs(correlation(apodise(A, window), apodise(B, window))), max_shift, max_shift);
    al.shift_y = static_cast<double>(-dy);
    al.shift_x = static_cast<double>(-dx);
    // B's matching region must lie inside B: shrink the compared region if not.
    region = region.intersect(Rect{dy, dx, b.size(0), b.size(1)});
    TESSERA_REQUIRE(DataError, region.h >= kMinSide && region.w >= kMinSide, "after aligning the images (shift ",
                    -dy, ", ", -dx, " px), they overlap in only ", region.str());
  }
  const auto window = window2d(region.h, region.w, opt.taper);
  const auto A = crop(a, region.y0, region.x0, region.h, region.w);
  const auto fa_raw = torch::fft::fft2(apodise(A, window));
  const auto yy = centred(region.h), xx = centred(region.w);
  // Refines the ramp in B from the peak of the spectrum of conj(A) B (the
  // shared content adds up there, independent noise spreads everywhere), adds
  // it to the alignment and removes it.
  auto remove_ramp = [&](torch::Tensor B) {
    const auto [uy, ux] = fine_peak(torch::conj(A) * B * window, yy / static_cast<double>(region.h),
                                    xx / static_cast<double>(region.w), -1);
    const double ky = 2 * kPi * uy / static_cast<double>(region.h), kx = 2 * kPi * ux / static_cast<double>(region.w);
    al.ramp_y += ky;
    al.ramp_x += kx;
    auto phase = -(ky * yy.view({-1, 1}) + kx * xx.view({1, -1}));
    return B * torch::polar(torch::ones_like(phase), phase);
  };
  torch::Tensor B;
  if (opt.align) {
    // Ramp and sub-pixel shift are refined in turn, each given the other:
    // three rounds bring both to their joint optimum on test images
    // (tests/test_frc.cpp).
    const int rounds = opt.subpixel ? 3 : 0;
    const auto qy = torch::fft::fftfreq(region.h, f64), qx = torch::fft::fftfreq(region.w, f64);
    for (int round = 0; round < rounds; ++round) {
      B = remove_ramp(sample_shifted(b, region, al.shift_y, al.shift_x, al.ramp_y, al.ramp_x));
      // B(r) = A(r + t): sum_r A(r + d) conj(B(r)) peaks at d = t, and sampling b at s - t aligns.
      const auto [ty, tx] = fine_peak(fa_raw * torch::conj(torch::fft::fft2(apodise(B, window))), qy, qx, 1);
      const double ny = al.shift_y - ty, nx = al.shift_x - tx;
      // Never leave B's bounds (a wild estimate from pure noise could).
      const Rect moved{region.y0 + std::llround(ny), region.x0 + std::llround(nx), region.h, region.w};
      if (!bounds_b.contains(moved)) break;
      al.shift_y = ny;
      al.shift_x = nx;
    }
    B = remove_ramp(sample_shifted(b, region, al.shift_y, al.shift_x, al.ramp_y, al.ramp_x));
    al.phase_offset = torch::angle((torch::conj(A) * B * window).sum()).item<double>();
    B = B * c10::complex<double>(std::cos(al.phase_offset), -std::sin(al.phase_offset));
  } else {
    B = crop(b, region.y0, region.x0, region.h, region.w);
  }
  const auto fa = torch::fft::fftshift(fa_raw);
  const auto fb = torch::fft::fftshift(torch::fft::fft2(apodise(B, window)));

  // Rings in physical frequency (pixels may be anisotropic).
  const double py = opt.pixel_y_m, px = opt.pixel_x_m;
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
    map.slice(0, r.y0, r.y1()).slice(1, r.x0, r.x1()).add_(
        intensity.slice(0, r.y0 - window.y0, r.y1() - window.y0).slice(1, r.x0 - window.x0, r.x1() - window.x0));
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
