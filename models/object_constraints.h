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
  // 4D-STEM and hard X-ray samples). Each step pulls the amplitude a fraction
  // kPhaseOnlyPull of the way to 1; the object reported (the result, its
  // scores) is projected onto |O| = 1 exactly (unit_modulus).
  bool phase_only = false;

  bool any() const { return clamp_amplitude || phase_only; }
};

// Why a pull and not the projection each step: measured on a noise-free
// phase object (tests/test_physics.cpp, 256 patterns, 100 Adam iterations
// from the focused probe), projecting every step stalled in a wrong state for
// 4 of 8 mini-batch orders (correlation without phase ramp 0.91 to 0.93,
// where the unconstrained run reaches 0.997 to 1.000), and which orders
// stalled changed with the last bits of the arithmetic (another FFT library,
// LibTorch 2.x). Projecting from iteration 30 or 60 after pulling until then
// still stalled 1 to 3 of them. With the pull of 0.1 all 8 reached 0.996 or
// better; 0.2 left one at 0.95. Removing the gradient's radial part before
// Adam (projecting every step) left 2 of 8 at 0.93. A likely cause, not
// proven: a phase vortex (a point the phase winds around) can only unwind
// through zero amplitude, which the projection never allows.
constexpr double kPhaseOnlyPull = 0.1;

// object_real: (L, H, W, 2) real view of the complex object, modified in place.
void apply_object_constraints(torch::Tensor& object_real, const ObjectConstraints& constraints);

// object / |object| (complex), 1 where the object is 0 (no phase to keep).
torch::Tensor unit_modulus(const torch::Tensor& object);

}  // namespace tessera
