#pragma once
// Data-fidelity losses by name. Each returns the SUM over patterns and valid
// pixels (never a mean over a batch), so that losses of disjoint sets of
// patterns add up: the decomposition relies on it.
//
//   amplitude  sum (sqrt(I_pred) - sqrt(I))^2        Gaussian noise on amplitudes
//   intensity  sum (I_pred - I)^2                    Gaussian noise on intensities
//   poisson    sum (I_pred - I log I_pred)           Poisson negative log-likelihood
//                                                    (constant terms dropped)
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace tessera {

// predicted, measured: (B, h, w); valid: (h, w) or (B, h, w) bool, true = pixel used.
using LossFunction =
    std::function<torch::Tensor(const torch::Tensor& predicted, const torch::Tensor& measured,
                                const torch::Tensor& valid)>;

// Per-pixel form of a loss, for the fused far-field path (far_field_loss.h),
// which needs l and dl/dI without building an autograd graph. For n pixels of
// one pattern: writes slope[k] = dl/dI at (predicted[k], measured[k]), 0 where
// keep[k] is 0 (keep[k] is 1 for a used pixel; keep == nullptr: every pixel),
// and returns the sum of l over the used pixels. The mask is in the working
// precision, not bool, so that masking is a vector compare-and-select.
template <typename T>
using PixelLossKernel = double (*)(const T* predicted, const T* measured, const T* keep, T* slope, int64_t n);
// The same from the far field of one pattern: Psi holds M modes of n complex
// values (interleaved re, im); the predicted intensity is sum_m |Psi_m|^2.
// Returns the loss; with `residual`, overwrites Psi by 2 dl/dI Psi, the
// gradient the inverse FFT takes back to the exit waves.
template <typename T>
using FarFieldLossKernel = double (*)(T* Psi, int64_t M, const T* measured, const T* keep, int64_t n, bool residual);
struct PixelLoss {
  PixelLossKernel<float> f32 = nullptr;
  PixelLossKernel<double> f64 = nullptr;
  FarFieldLossKernel<float> far_f32 = nullptr;
  FarFieldLossKernel<double> far_f64 = nullptr;
  // The same form by name for the device-generic op tessera::window_far_field_loss
  // (src/ops/window_loss.h: CPU and CUDA kernels), which the engine uses on GPUs;
  // empty: none (a GPU run then differentiates the loss by autograd).
  std::string window_form;
  bool available() const { return f32 && f64 && far_f32 && far_f64; }
};

struct LossInfo {
  std::string name;
  std::string description;
  LossFunction function;
  // Second derivative of the per-pixel loss with respect to the detector
  // amplitude |Psi| at the solution: 2 (amplitude), 4 (Poisson), 8 I (intensity).
  // Gradient-descent steps are scaled from it and from the data.
  double curvature;
  bool curvature_scales_with_intensity;  // true for the intensity loss
  // The same loss pixel by pixel with its analytic derivative; a loss without
  // one leaves it empty and is differentiated by autograd instead.
  PixelLoss pixelwise = {};
};

// Registers a loss under its name (one place: losses.cpp registers the built-ins).
void register_loss(LossInfo info);
const LossInfo& loss_by_name(const std::string& name);  // SettingsError listing the known names
std::vector<std::string> loss_names();

}  // namespace tessera
