#include "models/object_constraints.h"

#include <limits>

namespace tessera {

void apply_object_constraints(torch::Tensor& object_real, const ObjectConstraints& c) {
  if (!c.any()) return;
  torch::NoGradGuard no_grad;
  auto amplitude = object_real.pow(2).sum(-1, /*keepdim=*/true).sqrt_();
  if (c.phase_only) {
    // a -> a + kPhaseOnlyPull (1 - a); a pixel at exactly 0 has no phase to keep and stays 0.
    auto scale = torch::where(amplitude > 0, (1 - kPhaseOnlyPull) + kPhaseOnlyPull * amplitude.reciprocal(),
                              torch::ones_like(amplitude));
    object_real.mul_(scale);
  } else {
    object_real.mul_(amplitude.clamp_min(1).reciprocal());
  }
}

torch::Tensor unit_modulus(const torch::Tensor& object) {
  auto amplitude = torch::abs(object);
  return torch::where(amplitude > 0, object / amplitude.clamp_min(std::numeric_limits<float>::min()),
                      torch::ones_like(object));
}

}  // namespace tessera
