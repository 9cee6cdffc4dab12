#pragma once
// Projections applied to the object after each optimiser step. Each acts on
// one pixel at a time, so a tiled run applies them tile by tile and stays equal
// to the undecomposed one.
#include <torch/torch.h>

namespace tessera {

struct ObjectConstraints {
  // |O| <= 1: a sample does not amplify the beam. Stops the amplitude from
  // absorbing probe-power errors where the illumination is weak.
  bool clamp_amplitude = false;
  // |O| = 1: a pure phase object (thin, weakly absorbing specimens, e.g. most
  // 4D-STEM and hard X-ray samples); halves the unknowns.
  bool phase_only = false;

  bool any() const { return clamp_amplitude || phase_only; }
};

// object_real: (L, H, W, 2) real view of the complex object, modified in place.
void apply_object_constraints(torch::Tensor& object_real, const ObjectConstraints& constraints);

}  // namespace tessera
