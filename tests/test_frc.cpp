// Fourier ring correlation (src/frc.h): threshold, alignment, resolution on
// images whose shared and independent content is known.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "src/error.h"
#include "src/frc.h"

using namespace tessera;

namespace {

constexpr double kPi = 3.14159265358979323846;

torch::Tensor complex_noise(int64_t h, int64_t w, uint64_t seed) {
  auto g = at::detail::createCPUGenerator(seed);
  return torch::view_as_complex(torch::randn({h, w, 2}, g, torch::TensorOptions().dtype(torch::kFloat64))) /
         std::sqrt(2.0);
}

// |q| in cycles per pixel on an h x w FFT grid (FFT order).
torch::Tensor frequency(int64_t h, int64_t w) {
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto qy = torch::fft::fftfreq(h, f64).view({-1, 1});
  auto qx = torch::fft::fftfreq(w, f64).view({1, -1});
  return torch::sqrt(qy * qy + qx * qx);
}

// Noise whose power spectrum is `power` (a function of |q| in cycles/px), per pixel on average.
torch::Tensor coloured_noise(int64_t n, uint64_t seed, const std::function<torch::Tensor(torch::Tensor)>& power) {
  auto spectrum = torch::fft::fft2(complex_noise(n, n, seed), c10::nullopt, {-2, -1}, "ortho");
  return torch::fft::ifft2(spectrum * torch::sqrt(power(frequency(n, n))), c10::nullopt, {-2, -1}, "ortho");
}

// First ring (>= 1) whose FRC is below its threshold; -1 when none.
int64_t first_crossing(const std::vector<double>& frc, const std::vector<double>& threshold) {
  for (size_t k = 1; k < frc.size(); ++k)
    if (frc[k] < threshold[k]) return static_cast<int64_t>(k);
  return -1;
}

// Written out here, independently of the library, so that a wrong threshold there shows.
double half_bit_by_hand(int64_t n) {
  const double r = std::sqrt(static_cast<double>(n));
  return (0.2071 + 1.9102 / r) / (1.2071 + 0.9102 / r);
}

double one_bit_threshold(int64_t n) {
  const double r = std::sqrt(static_cast<double>(n));
  return (0.5 + 2.4142 / r) / (1.5 + 1.4142 / r);
}

}  // namespace

TEST(Frc, HalfBitThresholdFollowsVanHeelAndSchatz) {
  // Values of (0.2071 + 1.9102 / sqrt(n)) / (1.2071 + 0.9102 / sqrt(n)) computed independently.
  EXPECT_NEAR(half_bit_threshold(1), 1.0, 1e-12);
  EXPECT_NEAR(half_bit_threshold(4), 0.6991938394898326, 1e-12);
  EXPECT_NEAR(half_bit_threshold(100), 0.30668967429821586, 1e-12);
  EXPECT_NEAR(half_bit_threshold(1000), 0.21644914346158642, 1e-12);
  EXPECT_NEAR(half_bit_threshold(1000000), 0.1730202278093347, 1e-12);
  EXPECT_THROW(half_bit_threshold(0), Error);
}

TEST(Frc, IdenticalImagesAgreeToTheSamplingLimit) {
  auto a = complex_noise(96, 80, 1) + 0.5;
  FrcOptions o;
  o.pixel_y_m = o.pixel_x_m = 10e-9;
  const auto c = fourier_ring_correlation(a, a, Rect{8, 8, 80, 64}, o);
  ASSERT_GT(c.frc.size(), 30u);
  for (size_t k = 1; k < c.frc.size(); ++k) {
    EXPECT_NEAR(c.frc[k], 1.0, 1e-9) << "ring " << k;
    EXPECT_NEAR(c.threshold[k], half_bit_threshold(c.ring_pixels[k]), 1e-15);
  }
  EXPECT_TRUE(c.sampling_limited);
  EXPECT_NEAR(c.resolution_m, 20e-9, 1e-15);  // Nyquist: two pixels
  EXPECT_NEAR(c.alignment.shift_y, 0, 1e-6);
  EXPECT_NEAR(c.alignment.shift_x, 0, 1e-6);
  // Rings are 1 / (64 px * 10 nm) apart, the shorter side fixing the step.
  EXPECT_NEAR(c.frequency_per_m[1], 1.0 / 640e-9, 1e-3);
}

TEST(Frc, IndependentNoiseStaysBelowTheThreshold) {
  auto a = complex_noise(128, 128, 2), b = complex_noise(128, 128, 3);
  const auto c = fourier_ring_correlation(a, b, Rect{0, 0, 128, 128});
  int64_t above = 0;
  double mean = 0;
  for (size_t k = 1; k < c.frc.size(); ++k) {
    above += c.frc[k] >= c.threshold[k];
    mean += c.frc[k] / static_cast<double>(c.frc.size() - 1);
  }
  EXPECT_LE(above, 2) << "of " << c.frc.size() - 1 << " rings";
  EXPECT_LT(std::fabs(mean), 0.05);
  EXPECT_FALSE(c.sampling_limited);
  // Noise shares nothing: the curve falls below the threshold within the first rings.
  EXPECT_GT(c.resolution_m, 128.0 / 4);
}

TEST(Frc, SharedContentUpToACutOffGivesThatResolution) {
  // Both images share a pattern below the cut-off; above it each has its own noise.
  const int64_t n = 256;
  const double cutoff = 0.2;  // cycles per pixel
  auto below = [&](torch::Tensor q) { return (q < cutoff).to(torch::kFloat64); };
  auto above = [&](torch::Tensor q) { return (q >= cutoff).to(torch::kFloat64); };
  auto shared = coloured_noise(n, 4, below);
  auto a = shared + coloured_noise(n, 5, above), b = shared + coloured_noise(n, 6, above);
  FrcOptions o;
  o.pixel_y_m = o.pixel_x_m = 20e-9;
  const Rect region{32, 32, 192, 192};
  const auto c = fourier_ring_correlation(a, b, region, o);
  const double dq = c.frequency_per_m[1];
  const double expected = cutoff / o.pixel_x_m;  // 1/m
  EXPECT_FALSE(c.sampling_limited);
  EXPECT_NEAR(1.0 / c.resolution_m, expected, 2 * dq) << "resolution " << format_length(c.resolution_m);
}

TEST(Frc, ShiftedRampedCopyIsAligned) {
  // b(r) = a(r - s) exp(i (phi + k.r)): ptychography cannot tell these apart.
  const int64_t n = 192;
  auto a = coloured_noise(n, 7, [](torch::Tensor q) { return torch::exp(-q / 0.15); });
  const double sy = 3.3, sx = -4.6, phi = 1.2, ky = 0.05, kx = -0.08;
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto qy = torch::fft::fftfreq(n, f64).view({-1, 1}), qx = torch::fft::fftfreq(n, f64).view({1, -1});
  auto shift_phase = -2 * kPi * (qy * sy + qx * sx);
  auto b = torch::fft::ifft2(torch::fft::fft2(a) * torch::polar(torch::ones_like(shift_phase), shift_phase));
  auto yy = torch::arange(n, f64).view({-1, 1}), xx = torch::arange(n, f64).view({1, -1});
  auto ramp = phi + ky * yy + kx * xx;
  b = b * torch::polar(torch::ones_like(ramp), ramp);
  const Rect region{40, 40, 112, 112};
  const auto c = fourier_ring_correlation(a, b, region);
  EXPECT_NEAR(c.alignment.shift_y, sy, 0.01);
  EXPECT_NEAR(c.alignment.shift_x, sx, 0.01);
  EXPECT_NEAR(c.alignment.ramp_y, ky, 5e-4);
  EXPECT_NEAR(c.alignment.ramp_x, kx, 5e-4);
  // The offset is the phase difference at the region's centre (in B's pixels).
  const double cy = region.y0 + 0.5 * (region.h - 1) + sy, cx = region.x0 + 0.5 * (region.w - 1) + sx;
  const double expected = std::remainder(phi + ky * cy + kx * cx, 2 * kPi);
  EXPECT_NEAR(std::remainder(c.alignment.phase_offset - expected, 2 * kPi), 0, 0.01);
  // Aligned, the two agree at every frequency the image holds.
  for (size_t k = 1; k < c.frc.size() * 3 / 4; ++k) EXPECT_GT(c.frc[k], 0.99) << "ring " << k;
  EXPECT_TRUE(c.sampling_limited);
  // Without alignment the same pair shares nothing measurable.
  FrcOptions raw;
  raw.align = false;
  const auto u = fourier_ring_correlation(a, b, region, raw);
  EXPECT_LT(u.frc[10], 0.3);
}

// The check of the check: a graded signal-to-noise ratio, for which the FRC
// of each ring is predicted (S / (S + N)), crosses the half-bit threshold
// (written out in this file) where the prediction does, and far enough from
// where the 1-bit threshold would, that a library threshold mixed up with
// it (or set at any level as far off) would fail here. The sharp cut-off
// test above cannot tell thresholds apart: its FRC drops from 1 to 0.
TEST(Frc, CrossingFollowsTheSignalToNoiseRatioAndTellsThresholdsApart) {
  const int64_t n = 384;
  const Rect region{32, 32, 320, 320};
  // Shared signal power falls as (q0 / q)^4 relative to the noise: S/N = 1 at q0.
  const double q0 = 0.12;
  auto snr = [&](torch::Tensor q) { return torch::pow(q0 / q.clamp_min(1e-3), 4); };
  auto shared = coloured_noise(n, 8, snr);
  auto flat = [](torch::Tensor q) { return torch::ones_like(q); };
  auto a = shared + coloured_noise(n, 9, flat), b = shared + coloured_noise(n, 10, flat);
  const auto c = fourier_ring_correlation(a, b, region);
  std::vector<double> predicted, half_bit, one_bit;
  for (size_t k = 0; k < c.frc.size(); ++k) {
    const double q = c.frequency_per_m[k];  // cycles per pixel (pixel 1 m)
    const double s = k == 0 ? 1e9 : std::pow(q0 / q, 4);
    predicted.push_back(s / (1 + s));
    half_bit.push_back(half_bit_by_hand(std::max<int64_t>(1, c.ring_pixels[k])));
    one_bit.push_back(one_bit_threshold(std::max<int64_t>(1, c.ring_pixels[k])));
  }
  const int64_t half_bit_ring = first_crossing(predicted, half_bit);
  const int64_t one_bit_ring = first_crossing(predicted, one_bit);
  ASSERT_GT(half_bit_ring, 0);
  ASSERT_GT(one_bit_ring, 0);
  const double dq = c.frequency_per_m[1];
  const double measured_ring = 1.0 / c.resolution_m / dq;
  constexpr double kTolerance = 3;  // rings: the FRC of a ring of n pixels scatters by about 1 / sqrt(n)
  EXPECT_NEAR(measured_ring, static_cast<double>(half_bit_ring), kTolerance);
  // The two criteria are told apart by more than the tolerance on both sides.
  EXPECT_GT(std::fabs(measured_ring - static_cast<double>(one_bit_ring)), 2 * kTolerance)
      << "half-bit ring " << half_bit_ring << ", 1-bit ring " << one_bit_ring;
}

TEST(Frc, WellLitRegionIsTheLargestRectangleOfTheScan) {
  // Probe 8x8 of unit intensity on a 5 x 7 raster with step 4: lit 20+ px high, 28+ px wide.
  auto probe = torch::ones({1, 8, 8}, torch::kComplexFloat);
  std::vector<double> pos;
  for (int iy = 0; iy < 5; ++iy)
    for (int ix = 0; ix < 7; ++ix) pos.insert(pos.end(), {10.0 + 4 * iy, 6.0 + 4 * ix});
  auto positions = torch::tensor(pos, torch::kFloat64).view({-1, 2});
  auto map = illumination_map(probe, positions, 60, 60);
  EXPECT_DOUBLE_EQ(map.sum().item<double>(), 35.0 * 64);
  // An interior pixel is seen by 4 windows, the outer 4-px bands by 2, the corners by 1.
  // Above 60% of 4: the interior only.
  EXPECT_EQ(well_lit_region(map, 0.6), (Rect{14, 10, 16, 24})) << well_lit_region(map, 0.6).str();
  // At 50% the lit pixels form a cross: the largest rectangle is its 24 x 24 vertical bar, not the 16 x 32 bar.
  EXPECT_EQ(well_lit_region(map, 0.5), (Rect{10, 10, 24, 24})) << well_lit_region(map, 0.5).str();
  EXPECT_TRUE(well_lit_region(torch::zeros({5, 5}, torch::kFloat64)).empty());
}

TEST(Frc, BadInputIsRefusedWithAReason) {
  auto a = complex_noise(32, 32, 11);
  EXPECT_THROW(fourier_ring_correlation(a, a, Rect{0, 0, 8, 8}), DataError);
  FrcOptions o;
  o.pixel_y_m = 0;
  EXPECT_THROW(fourier_ring_correlation(a, a, Rect{0, 0, 32, 32}, o), SettingsError);
  auto nan = a.clone();
  nan[3][4] = std::nan("");
  EXPECT_THROW(fourier_ring_correlation(a, nan, Rect{0, 0, 32, 32}), DataError);
}

TEST(Frc, LengthsAreWrittenInTheMicroscopistsUnit) {
  EXPECT_EQ(format_length(57.3e-9), "57.3 nm");
  EXPECT_EQ(format_length(1.25e-10), "1.25 Å");
  EXPECT_EQ(format_length(2.5e-6), "2.5 µm");
}
