#pragma once
// The object/probe phase-ramp gauge.
//
// A linear phase on the probe, P(r) exp(-i k.r), with the opposite ramp on the
// object, O(r) exp(i k.r), changes every exit wave only by a constant phase
// per pattern, exp(i k.x_j): the intensities, hence every loss, are unchanged.
// The data cannot fix k, and optimisers that step element by element (Adam)
// let it drift, which shows as a phase ramp across the object.
//
// The gauge is fixed on the probe: its far-field intensity is centred on the
// zero order, which the data convention places at the detector centre (frame
// pixel [h/2, w/2]). The centre is the circular mean of the far-field
// frequencies, i.e. the angle of the probe's circular lag-one autocorrelation
//   sum_r P(r + e) conj(P(r)) = sum_q |F P(q)|^2 exp(2 pi i q.e / n),
// free of wrap-around in frequency and exactly zero for a symmetric pupil.
// (A tilt by k moves it by k only where the probe fades before the window
// edge; the rest is taken up at the next move.) The measured mean pattern is
// no reference: the object's own phase gradients deflect it, and pinning the
// probe to it puts that deflection into the object as a ramp.
//
// The probe is the same on every tile and rank, so every tile computes the
// same k and applies it in global coordinates: owners and halos stay equal,
// with no communication.
#include <utility>

#include <torch/torch.h>

#include "src/geometry.h"

namespace tessera {

// The probe's mean phase step (ky, kx), radians per pixel, over all modes:
// 2 pi / n times its circular far-field centroid in pixels. probe: (M, h, w) complex
// or its real (M, h, w, 2) view.
std::pair<double, double> probe_phase_ramp(const torch::Tensor& probe);

// The unit-modulus factors of one gauge move, shaped like the complex parameters.
struct PhaseRampMove {
  torch::Tensor probe;   // (1, h, w): exp(-i k.r), r in window pixels
  torch::Tensor object;  // (L, H, W): exp(+i k.r), r in global pixels, on the first slice (1 on the others)
};

// Moves the ramp k from the probe to the object: the first slice of a tile's
// object array (L, H, W), placed at `extent`, takes it (the exit wave is
// formed there; later slices see it only through the wave). Complex tensors
// or their real (..., 2) views, changed in place without autograd. Returns
// the factors applied (for carrying optimiser state along).
PhaseRampMove move_phase_ramp_to_object(torch::Tensor probe, torch::Tensor object, const Rect& extent,
                                        std::pair<double, double> k);

}  // namespace tessera
