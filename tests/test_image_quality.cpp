// Scoring against a known object: the FFT shift search must find what the
// one-shift-at-a-time search finds, including near the image border where
// some shifts do not fit.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "src/error.h"
#include "src/image_quality.h"

namespace tessera {
namespace {

torch::Tensor random_object(int64_t h, int64_t w, uint64_t seed) {
  auto g = at::detail::createCPUGenerator(seed);
  auto phase = torch::rand({h, w}, g, torch::kFloat64) * 4.0 - 2.0;
  auto amplitude = torch::rand({h, w}, g, torch::kFloat64) * 0.5 + 0.5;
  return torch::polar(amplitude, phase);
}

torch::Tensor unit(const torch::Tensor& a) { return torch::polar(torch::ones_like(torch::abs(a)), torch::angle(a)); }

// The definition: every shift in turn.
std::pair<int64_t, int64_t> brute_force_shift(const torch::Tensor& truth, const torch::Tensor& recon,
                                              const Rect& r, int64_t m) {
  const Rect bounds{0, 0, recon.size(0), recon.size(1)};
  auto t = unit(truth.slice(0, r.y0, r.y1()).slice(1, r.x0, r.x1()));
  double best = -1;
  std::pair<int64_t, int64_t> at{0, 0};
  for (int64_t dy = -m; dy <= m; ++dy)
    for (int64_t dx = -m; dx <= m; ++dx) {
      const Rect s{r.y0 + dy, r.x0 + dx, r.h, r.w};
      if (!bounds.contains(s)) continue;
      const double c =
          torch::abs((torch::conj(t) * unit(recon.slice(0, s.y0, s.y1()).slice(1, s.x0, s.x1()))).mean())
              .item<double>();
      if (c > best) best = c, at = {dy, dx};
    }
  return at;
}

TEST(PhaseCorrelation, FindsTheShiftPhaseAndRampOfACopy) {
  auto truth = random_object(80, 90, 1);
  // The reconstruction sees truth(r) at r + (3, -2), times a global phase and a ramp.
  const double phase = 0.7, ky = 0.01, kx = -0.02;
  auto yy = torch::arange(80, torch::kFloat64).view({-1, 1});
  auto xx = torch::arange(90, torch::kFloat64).view({1, -1});
  auto recon = torch::roll(truth, {3, -2}, {0, 1}) * torch::polar(torch::ones({80, 90}, torch::kFloat64),
                                                                   phase + ky * yy + kx * xx);
  const Rect region{20, 20, 40, 50};
  const auto a = phase_correlation(truth, recon, region, 6);
  EXPECT_EQ(a.shift_y, 3);
  EXPECT_EQ(a.shift_x, -2);
  EXPECT_GT(a.correlation_without_ramp, 1 - 1e-12);
  EXPECT_LT(a.correlation, 0.99);  // the ramp costs correlation until it is removed
  EXPECT_GT(a.correlation, 0.5);
}

TEST(PhaseCorrelation, AgreesWithTheShiftByShiftSearchNearTheBorder) {
  // A noisy copy shifted by up to the search range, with regions that touch
  // the border so that part of the shifts are excluded.
  const int64_t m = 5;
  int cases = 0;
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    auto truth = random_object(60, 70, seed);
    const int64_t sy = static_cast<int64_t>(seed % 11) - m, sx = m - static_cast<int64_t>((3 * seed) % 11);
    auto noise = random_object(60, 70, seed + 100);
    auto recon = torch::roll(truth, {sy, sx}, {0, 1}) + 0.8 * noise;
    for (const Rect& region : {Rect{0, 0, 40, 50}, Rect{3, 17, 57, 53}, Rect{10, 10, 30, 30}}) {
      const auto expected = brute_force_shift(truth, recon, region, m);
      const auto a = phase_correlation(truth, recon, region, m);
      EXPECT_EQ(a.shift_y, expected.first) << "seed " << seed << " region " << region.str();
      EXPECT_EQ(a.shift_x, expected.second) << "seed " << seed << " region " << region.str();
      ++cases;
    }
  }
  EXPECT_EQ(cases, 18);
}

TEST(PhaseCorrelation, RefusesARegionNoShiftFits) {
  auto truth = random_object(40, 40, 3);
  auto small = random_object(20, 20, 4);
  EXPECT_THROW(phase_correlation(truth, small, Rect{0, 0, 30, 30}, 2), Error);
}

}  // namespace
}  // namespace tessera
