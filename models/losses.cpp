#include "models/losses.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "src/error.h"
#include "src/registry.h"
#include "src/ops/pixel_losses.h"
#include "src/simd.h"

namespace tessera {
namespace {

// Keeps sqrt and log differentiable where the model predicts exactly zero.
constexpr double kFloor = ops::kPixelLossFloor;

torch::Tensor masked_sum(const torch::Tensor& per_pixel, const torch::Tensor& valid) {
  if (!valid.defined()) return per_pixel.sum();
  return torch::where(valid, per_pixel, torch::zeros_like(per_pixel)).sum();
}

torch::Tensor amplitude_loss(const torch::Tensor& pred, const torch::Tensor& meas, const torch::Tensor& valid) {
  auto r = torch::sqrt(pred + kFloor) - torch::sqrt(meas);
  return masked_sum(r * r, valid);
}

torch::Tensor intensity_loss(const torch::Tensor& pred, const torch::Tensor& meas, const torch::Tensor& valid) {
  auto r = pred - meas;
  return masked_sum(r * r, valid);
}

torch::Tensor poisson_loss(const torch::Tensor& pred, const torch::Tensor& meas, const torch::Tensor& valid) {
  return masked_sum(pred - meas * torch::log(pred + kFloor), valid);
}

// The per-pixel forms (value and dl/dI) live in src/ops/pixel_losses.h, one
// struct per loss, shared with the device-generic op's CPU and CUDA kernels.
using ops::AmplitudePixel;
using ops::IntensityPixel;
using ops::PoissonPixel;

// Pixels per run: a run's intensities, slopes and values stay in L1 from
// the load of the far field to its update.
constexpr int64_t kRun = 256;

// value[k] = l(p[k], m[k]) and s[k] = dl/dI for len <= kRun pixels; returns
// their sum. Plain element-wise loops, so that they vectorise; the sum runs
// in kLanes independent partial sums (one running sum would make every pixel
// wait for the previous addition), added in a fixed order: the same value
// for any thread count. Inlined into each SIMD clone of its callers.
template <typename Pixel, typename T>
__attribute__((always_inline)) inline double run_loss(const T* __restrict__ p, const T* __restrict__ m,
                                                      const T* __restrict__ keep, T* __restrict__ s,
                                                      T* __restrict__ value, int64_t len) {
  constexpr int kLanes = 8;
  if (keep) {
    // Masked pixels get slope and value exactly 0, even where l is not
    // finite: a select, not a product. (Vectorised as compare-and-mask;
    // needs -fno-trapping-math, else the compiler keeps the division behind
    // a per-pixel branch.)
    for (int64_t k = 0; k < len; ++k) {
      T sk;
      const T vk = Pixel::value_and_slope(p[k], m[k], sk);
      s[k] = keep[k] != T(0) ? sk : T(0);
      value[k] = keep[k] != T(0) ? vk : T(0);
    }
  } else {
    for (int64_t k = 0; k < len; ++k) value[k] = Pixel::value_and_slope(p[k], m[k], s[k]);
  }
  T lanes[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= len; k += kLanes)
    for (int q = 0; q < kLanes; ++q) lanes[q] += value[k + q];
  for (; k < len; ++k) lanes[0] += value[k];
  double total = 0;
  for (T v : lanes) total += v;
  return total;
}

template <typename Pixel, typename T>
TESSERA_SIMD_CLONES double pixel_loss_kernel(const T* __restrict__ pred, const T* __restrict__ meas,
                                             const T* __restrict__ keep, T* __restrict__ slope, int64_t n) {
  T value[kRun];
  double total = 0;  // runs add up in double
  for (int64_t r = 0; r < n; r += kRun)
    total += run_loss<Pixel, T>(pred + r, meas + r, keep ? keep + r : nullptr, slope + r, value, std::min(kRun, n - r));
  return total;
}

template <typename Pixel, typename T>
TESSERA_SIMD_CLONES double far_field_loss_kernel(T* __restrict__ Psi, int64_t M, const T* __restrict__ meas,
                                                 const T* __restrict__ keep, int64_t n, bool residual) {
  T I[kRun], s[kRun], value[kRun];
  double total = 0;
  for (int64_t r = 0; r < n; r += kRun) {
    const int64_t len = std::min(kRun, n - r);
    const T* __restrict__ P0 = Psi + 2 * r;
    for (int64_t k = 0; k < len; ++k) I[k] = P0[2 * k] * P0[2 * k] + P0[2 * k + 1] * P0[2 * k + 1];
    for (int64_t mode = 1; mode < M; ++mode) {
      const T* __restrict__ Pm = Psi + 2 * (mode * n + r);
      for (int64_t k = 0; k < len; ++k) I[k] += Pm[2 * k] * Pm[2 * k] + Pm[2 * k + 1] * Pm[2 * k + 1];
    }
    total += run_loss<Pixel, T>(I, meas + r, keep ? keep + r : nullptr, s, value, len);
    if (!residual) continue;
    for (int64_t mode = 0; mode < M; ++mode) {
      T* __restrict__ Pm = Psi + 2 * (mode * n + r);
      for (int64_t k = 0; k < len; ++k) {
        const T f = 2 * s[k];
        Pm[2 * k] *= f;
        Pm[2 * k + 1] *= f;
      }
    }
  }
  return total;
}

template <typename Pixel>
PixelLoss pixelwise(const std::string& window_form) {
  return {pixel_loss_kernel<Pixel, float>, pixel_loss_kernel<Pixel, double>, far_field_loss_kernel<Pixel, float>,
          far_field_loss_kernel<Pixel, double>, window_form};
}

Registry<LossInfo>& registry() {
  static Registry<LossInfo> r = [] {
    Registry<LossInfo> m("loss");
    m.add({"amplitude", "Gaussian noise on amplitudes: sum (sqrt(I_pred) - sqrt(I))^2", amplitude_loss, 2.0, false,
           pixelwise<AmplitudePixel>("amplitude")});
    m.add({"intensity", "Gaussian noise on intensities: sum (I_pred - I)^2", intensity_loss, 8.0, true,
           pixelwise<IntensityPixel>("intensity")});
    m.add({"poisson", "Poisson negative log-likelihood: sum (I_pred - I log I_pred)", poisson_loss, 4.0, false,
           pixelwise<PoissonPixel>("poisson")});
    return m;
  }();
  return r;
}

}  // namespace

void register_loss(LossInfo info) { registry().add(std::move(info)); }

const LossInfo& loss_by_name(const std::string& name) { return registry().get(name); }

std::vector<std::string> loss_names() { return registry().names(); }

}  // namespace tessera
