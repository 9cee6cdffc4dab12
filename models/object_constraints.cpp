#include "models/object_constraints.h"

namespace tessera {

void apply_object_constraints(torch::Tensor& object_real, const ObjectConstraints& c) {
  if (!c.any()) return;
  torch::NoGradGuard no_grad;
  auto amplitude = object_real.pow(2).sum(-1, /*keepdim=*/true).sqrt_();
  // A pixel at exactly 0 has no phase to keep: it becomes 1 (phase 0) under
  // phase_only and stays 0 under the clamp.
  if (c.phase_only) {
    auto scale = torch::where(amplitude > 0, amplitude.reciprocal(), torch::zeros_like(amplitude));
    object_real.mul_(scale);
    object_real.select(-1, 0).add_((amplitude.squeeze(-1) == 0).to(object_real.dtype()));
  } else {
    object_real.mul_(amplitude.clamp_min(1).reciprocal());
  }
}

}  // namespace tessera
