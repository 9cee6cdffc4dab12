// The defocus read from the shadow parallax: sign and size on data made by
// the forward model with a known defocus, over raster and spiral scans, and
// no answer where the data hold none (flat specimen, probe in focus).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "models/defocus_estimate.h"
#include "models/probe_init.h"
#include "models/propagation.h"
#include "src/error.h"
#include "src/ops/patches.h"

using namespace tessera;

namespace {

constexpr int64_t kFrame = 64;
constexpr double kRadius = 10;  // aperture radius, frame pixels

// A disc aperture (FFT order) with the given defocus, in add_defocus's convention.
torch::Tensor defocused_aperture(double edge_phase_rad) {
  auto q = torch::fft::fftfreq(kFrame, torch::kFloat64) * static_cast<double>(kFrame);
  auto r2 = q.view({-1, 1}).pow(2) + q.view({1, -1}).pow(2);
  auto disc = (r2 <= kRadius * kRadius).to(torch::kFloat64);
  auto probe = far_field_adjoint(torch::complex(disc, torch::zeros_like(disc))).unsqueeze(0);
  // Centred in the window, as the engine's probe (zero phase puts it at [0, 0],
  // split over the window's corners).
  return to_detector_order(add_defocus(probe, edge_phase_rad, kRadius));
}

// A weak phase object with structure from a few pixels up (smoothed noise).
torch::Tensor specimen(int64_t size, double strength, uint64_t seed) {
  auto g = at::detail::createCPUGenerator(seed);
  auto noise = torch::randn({size, size}, g, torch::kFloat64);
  auto k = torch::fft::fftfreq(size, torch::kFloat64);
  auto k2 = k.view({-1, 1}).pow(2) + k.view({1, -1}).pow(2);
  auto smooth = torch::real(torch::fft::ifft2(torch::fft::fft2(noise) * torch::exp(-k2 * (2 * M_PI * M_PI * 4.0))));
  smooth = smooth / smooth.std();
  return torch::polar(torch::ones_like(smooth), smooth * strength).unsqueeze(0);
}

torch::Tensor raster(int64_t side, double step) {
  auto i = torch::arange(side, torch::kFloat64) * step + 2;
  return torch::stack({i.view({-1, 1}).expand({side, side}).reshape({-1}),
                       i.view({1, -1}).expand({side, side}).reshape({-1})}, 1);
}

torch::Tensor spiral(int64_t n, double spacing, double centre) {
  // Fermat spiral: the positions a spiral scan of the same density visits.
  auto j = torch::arange(n, torch::kFloat64);
  auto r = spacing * torch::sqrt(j / M_PI) * 1.0;
  auto t = j * (M_PI * (3 - std::sqrt(5.0)));
  return torch::stack({centre + r * torch::sin(t), centre + r * torch::cos(t)}, 1);
}

// Measured intensities (FFT order) of the probe over the object at the positions.
torch::Tensor intensities(const torch::Tensor& probe, const torch::Tensor& object, const torch::Tensor& positions) {
  auto patches = ops::extract_patches(object, positions, kFrame, kFrame).select(1, 0);
  return torch::view_as_real(far_field(probe * patches)).pow(2).sum(-1);
}

DefocusEstimate estimate(const torch::Tensor& frames, const torch::Tensor& positions) {
  auto valid = torch::ones({kFrame, kFrame}, torch::kBool);
  return estimate_defocus(frames, valid, positions, {0, 0}, kRadius);
}

}  // namespace

TEST(DefocusEstimate, ReadsSignAndSizeOnARaster) {
  auto object = specimen(160, 0.5, 1);
  auto positions = raster(20, 4.5);
  for (double c : {-12.0, -6.0, 5.0, 10.0}) {
    const auto e = estimate(intensities(defocused_aperture(c), object, positions), positions);
    EXPECT_TRUE(e.reliable) << "c = " << c << ": " << e.why_not;
    EXPECT_NEAR(e.edge_phase_rad, c, 0.1 * std::fabs(c) + 0.5) << "c = " << c << ", contrast " << e.contrast;
  }
}

TEST(DefocusEstimate, ReadsSignAndSizeOnASpiralWithNoise) {
  auto object = specimen(160, 0.5, 2);
  auto positions = spiral(300, 4.5, 47.5);
  auto g = at::detail::createCPUGenerator(7);
  for (double c : {-8.0, 8.0}) {
    auto clean = intensities(defocused_aperture(c), object, positions);
    // About 1e5 photons per pattern.
    auto scale = 1e5 / clean[0].sum().item<double>();
    auto frames = at::poisson(clean * scale, g) / scale;
    const auto e = estimate(frames, positions);
    EXPECT_TRUE(e.reliable) << "c = " << c << ": " << e.why_not;
    EXPECT_NEAR(e.edge_phase_rad, c, 0.1 * std::fabs(c) + 0.5) << "c = " << c << ", contrast " << e.contrast;
  }
}

TEST(DefocusEstimate, NoAnswerWithoutStructureOrParallax) {
  auto positions = raster(16, 4.5);
  auto flat = torch::ones({1, 160, 160}, torch::kComplexDouble);
  EXPECT_FALSE(estimate(intensities(defocused_aperture(8), flat, positions), positions).reliable);
  // In focus a weak phase object leaves the direct beam's interior without
  // contrast; what little the beam's edge adds aligns equally at +c and -c.
  const auto focused = estimate(intensities(defocused_aperture(0), specimen(160, 0.5, 3), positions), positions);
  EXPECT_FALSE(focused.reliable) << "read " << focused.edge_phase_rad << " rad in focus";
  EXPECT_THROW(estimate_defocus(torch::zeros({4, 8, 8}), torch::ones({8, 8}, torch::kBool), torch::zeros({3, 2}), {0, 0}, 3),
               Error);
}

TEST(DefocusEstimate, CentralPositionsAreACompactBlockInScanOrder) {
  auto positions = raster(10, 5);
  const auto idx = central_positions(positions, 16);
  ASSERT_EQ(idx.size(), 16u);
  EXPECT_TRUE(std::is_sorted(idx.begin(), idx.end()));
  for (int64_t i : idx) {
    const double y = positions[i][0].item<double>(), x = positions[i][1].item<double>();
    EXPECT_LE(std::hypot(y - 22, x - 22), 11.2) << "position " << i;
  }
  EXPECT_EQ(central_positions(positions, 1000).size(), 100u);
}

