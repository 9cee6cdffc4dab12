#pragma once
// Built-in regularisers on the complex object, for low-dose data and for
// comparison with learned priors (models/priors/torchscript.h).
//
// Both are sums of local terms, one per pixel p, built from forward
// differences with the next pixel down (p + y) and to the right (p + x); a
// difference that would leave the array is zero (Neumann border). penalty()
// sums the terms of the pixels in `owned` only, so with tiles every term of
// the undecomposed penalty is counted exactly once (by the tile that owns its
// pixel) and its gradient on halo pixels reaches their owner through the
// overlap reduction: the tiled penalty and gradient equal the undecomposed
// ones up to the order of floating-point sums. Slices (L > 1) are summed.
//
// Scale: the reconstruction minimises  mean per-pattern data loss + weight * penalty,
// with the penalty a SUM over object pixels; a useful weight therefore grows
// with the photon count and shrinks with the number of patterns.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/prior.h"

namespace tessera {

// Smoothed isotropic total variation of phase and amplitude:
//   TV(O) = sum_p  w_phase * (sqrt(|grad u|^2 + eps^2) - eps)
//               + w_amp   * (sqrt(|grad a|^2 + eps^2) - eps)
// with a = sqrt(|O|^2 + delta^2) the (smoothed) amplitude and u = O / a the
// unit phasor, |grad u|^2 = |u(p+y) - u(p)|^2 + |u(p+x) - u(p)|^2. For small
// steps |u(q) - u(p)| = 2 |sin((phi_q - phi_p) / 2)| ~ |phi_q - phi_p|, so the
// first term is the TV of the phase, without a branch cut (phase wrapping does
// not matter) and differentiable everywhere (eps > 0, delta > 0). Both terms
// are invariant to a global phase, as the data loss is.
class TotalVariationPrior : public Prior {
 public:
  explicit TotalVariationPrior(double phase_weight = 1, double amplitude_weight = 1, double epsilon = 1e-2);
  std::string name() const override;
  bool is_regulariser() const override { return true; }
  torch::Tensor penalty(const torch::Tensor& object, const Rect& owned) override;

 private:
  double phase_weight_, amplitude_weight_, epsilon_;
};

// Quadratic smoothness (Tikhonov on the gradient of the complex field):
//   S(O) = sum_p |O(p+y) - O(p)|^2 + |O(p+x) - O(p)|^2
// A Gaussian prior that damps high frequencies; no kinks, invariant to a
// global phase.
class SmoothnessPrior : public Prior {
 public:
  std::string name() const override { return "smooth"; }
  bool is_regulariser() const override { return true; }
  torch::Tensor penalty(const torch::Tensor& object, const Rect& owned) override;
};

// Priors by name (src/registry.h): the built-ins "tv" (phase and
// amplitude), "tv-phase", "tv-amplitude" and "smooth", and any a program
// registers; `tessera reconstruct --prior NAME` takes them.
struct PriorInfo {
  std::string name;
  std::string description;
  std::function<std::shared_ptr<Prior>()> make;
};
void register_prior(PriorInfo info);
// SettingsError listing the registered names for an unknown one.
std::shared_ptr<Prior> make_builtin_prior(const std::string& name);
std::vector<std::string> prior_names();
// The registered names as "a, b, c", for help texts.
std::string builtin_prior_names();

}  // namespace tessera
