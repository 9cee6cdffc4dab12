#pragma once
// The object/probe phase-ramp gauge.
//
// A linear phase on the probe, P(r) exp(-i k.r), with the opposite ramp on the
// object, O(r) exp(i k.r), changes every exit wave only by a constant phase
// per pattern, exp(i k.x_j): the intensities, hence every loss, are unchanged.
// The data cannot fix k, and optimisers that step element by element (Adam)
// let it drift, which shows as a phase ramp across the object.
//
// The gauge is fixed on the probe: its far field is centred on the zero order,
// where the undiffracted beam meets the detector. That is a reference only
// when it is known without the specimen: the file's beam centre or the
// user's --zero-order (models/zero_order.h). Real detectors are not centred
// on the beam, so the target is that zero order, not frame pixel [h/2, w/2];
// centring on the frame pushed the detector's offset into the object as a
// ramp. When the zero order is only estimated from the data, the estimate
// includes the specimen's mean deflection and is uncertain by a tenth of a
// pixel, a ramp of 0.02 rad/px on a 32-pixel frame: no reference for a gauge.
//
// The centre is the circular mean of the far-field frequencies, i.e. the
// angle of the probe's circular lag-one autocorrelation
//   sum_r P(r + e) conj(P(r)) = sum_q |F P(q)|^2 exp(2 pi i q.e / n),
// free of wrap-around in frequency and exactly zero for a symmetric pupil.
// (A tilt by k moves it by k only where the probe fades before the window
// edge; the rest is taken up at the next move.)
//
// Without such a zero order the gauge is fixed on the object instead: after
// each iteration the object's mean phase step over the scan's well-lit
// interior, the angle of sum O(r + e) conj(O(r)) over neighbouring pixels
// there (what a microscopist reads as a ramp across the field), is moved to
// the probe. The object then carries no ramp that the data do not require.
// Each tile sums the pairs whose first pixel it owns (the second may lie in
// its halo, which holds the owner's values), and one sum over ranks gives
// every tile the same step.
//
// The probe is the same on every tile and rank, so every tile computes the
// same k and applies it in global coordinates: owners and halos stay equal,
// with no communication.
#include <complex>
#include <utility>

#include <torch/torch.h>

#include "src/geometry.h"

namespace tessera {

// The probe's mean phase step (ky, kx), radians per pixel, over all modes:
// 2 pi / n times its circular far-field centroid in pixels. probe: (M, h, w) complex
// or its real (M, h, w, 2) view.
std::pair<double, double> probe_phase_ramp(const torch::Tensor& probe);


// The sums over one tile of O(r + e) conj(O(r)), e one pixel along y and x,
// on the first slice of its object (L, H, W) complex or (L, H, W, 2) real
// view, each pair weighted by weight_y (H - 1, W) or weight_x (H, W - 1),
// which are 1 where the pair is counted by this tile and 0 elsewhere.
struct PhaseStepSums {
  std::complex<double> y{0, 0}, x{0, 0};
  std::pair<double, double> ramp() const { return {std::arg(y), std::arg(x)}; }
};
PhaseStepSums object_phase_step_sums(const torch::Tensor& object, const torch::Tensor& weight_y,
                                     const torch::Tensor& weight_x);

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
