#pragma once
// The probe's defocus read from the data before any reconstruction, by the
// parallax of the shadow image inside the direct beam (what tilt-corrected
// bright-field STEM uses; in X-ray terms, the in-line hologram that a
// defocused beam forms in its own far field).
//
// A probe whose far field carries the phase c |q - q0|^2 / R^2 (q in frame
// pixels, q0 the zero order, R the aperture radius: models/probe_init.h's
// add_defocus) sends the rays of detector pixel q through the sample at
//     x(q) = -N c (q - q0) / (pi R^2)        (per axis, N the frame size)
// from the probe's centre (stationary phase of its inverse FFT). So the
// virtual image that pixel q forms over the scan is the image of the zero
// order shifted by x(q). Shifting every pixel's image back by x(q) for a trial
// c and summing gives the most energetic (sharpest) sum at the true c, sign
// included. A few iterations from each candidate cannot tell the sign: on
// independent simulations they ranked +-16 rad first whatever the truth, and
// the wrong sign ended below a focused start (issue 13).
//
// Limits: it needs a specimen with structure at the scan step's scale, a
// probe defocused enough for its rays to spread over more than about a scan
// step (else every image is the same and the answer is "near focus"), and
// positions that cover a 2-D region. Aberrations beyond defocus give the
// defocus that best aligns the images (an effective value).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace tessera {

struct DefocusEstimate {
  bool reliable = false;
  std::string why_not;       // when not reliable, for the log
  double edge_phase_rad = 0; // c above: radians of far-field phase at the aperture edge
  double radius_px = 0;      // R above, the aperture radius the phase refers to
  double contrast = 0;       // (E(c) - min E) / E(c): how much the alignment stands out (0..1)
  double coherence = 0;      // the aligned images' agreement: 1 = one image, ~1/groups = unrelated
  double mirror = 1;         // E(-c) / E(c): a defocus stands out against its mirror image
  int64_t positions = 0, detector_groups = 0;
  std::vector<std::pair<double, double>> curve;  // (trial c, E / max E)
};

struct DefocusEstimateOptions {
  double max_edge_phase_rad = 24;  // trials span +-this
  double trial_step_rad = 0.5;
  double min_contrast = 0.2;       // below: no defocus stands out
  double max_mirror = 0.85;        // E(-c) / E(c) above this: the sign is not clear
  double min_coherence = 0.25;     // below: the images hardly agree (noise, or a probe near focus)
};

// Indices (ascending) of at most `max_positions` positions nearest to the
// scan's centre: a compact block whose frames are read for the estimate.
std::vector<int64_t> central_positions(const torch::Tensor& positions_px, int64_t max_positions = 1024);

// frames: (n, h, w) measured intensities in FFT order (zero order's nearest
// pixel at [0, 0]); valid: (h, w) bool in FFT order; positions_px: (n, 2)
// the same frames' scan positions in sample pixels; rest: the zero order's
// sub-pixel rest [y, x]; radius_px: the aperture radius R.
DefocusEstimate estimate_defocus(const torch::Tensor& frames, const torch::Tensor& valid,
                                 const torch::Tensor& positions_px, std::pair<double, double> rest,
                                 double radius_px, const DefocusEstimateOptions& options = {});

}  // namespace tessera
