#pragma once
// Scores a reconstruction against a known object (simulations).
#include <utility>

#include <torch/torch.h>

#include "src/geometry.h"

namespace tessera {

struct Alignment {
  double correlation = 0;  // |sum conj(t) o| / n over the region, t and o unit-modulus phases
  int64_t shift_y = 0, shift_x = 0;  // integer shift of the reconstruction that maximises it
  double phase_offset = 0;  // global phase removed (radians)
  // The same correlation after also removing a linear phase ramp, which
  // ptychography cannot determine (a ramp on the object and the opposite ramp
  // on the probe give the same intensities).
  double correlation_without_ramp = 0;
};

// Phase correlation over `region` of the truth, after removing a global phase
// and the best integer shift of the reconstruction within +-max_shift pixels.
Alignment phase_correlation(const torch::Tensor& truth, const torch::Tensor& reconstruction,
                            const Rect& region, int64_t max_shift = 4);

// The object's mean phase step [gy, gx] in radians per pixel over `region`:
// the angle of sum O(r + e) conj(O(r)) over the neighbouring pairs inside it
// (amplitude-weighted, so dark pixels count little, and free of phase wraps).
// A phase ramp across the field reads directly as this; a reconstruction
// should carry none that the data do not require.
std::pair<double, double> mean_phase_gradient(const torch::Tensor& object, const Rect& region);

// Normalised RMS error of the complex object after removing the global phase
// and scale (least squares), over `region`, with the given integer shift.
double normalised_rms_error(const torch::Tensor& truth, const torch::Tensor& reconstruction,
                            const Rect& region, int64_t shift_y = 0, int64_t shift_x = 0);

}  // namespace tessera
