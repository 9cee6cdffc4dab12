#pragma once
// The ptychographic forward model of one tile (or of the whole object when
// there is one tile): predicted far-field intensity of each probe position.
//
//   psi_jm   = P_m * S_j O_1                         (first slice)
//   psi_jm  <- Prop(psi_jm) * S_j O_l, l = 2..L      (multislice, optional)
//   I_j      = sum_m |F psi_jm|^2                    (incoherent probe modes)
//
// S_j is the custom op tessera::extract_patches (bilinear sub-pixel windows),
// F the orthonormal FFT. Gradients come from autograd; data_loss fuses the
// far field and the loss into one operator with an analytic gradient.
#include <torch/torch.h>

#include "models/losses.h"

namespace tessera {

class PtychoModelImpl : public torch::nn::Module {
 public:
  // object (L, H, W) complex: this tile's working array (owned region + halo).
  // probe  (M, h, w) complex: M incoherent modes.
  // slice_transfer: Fresnel transfer function between slices (h, w), needed when L > 1.
  PtychoModelImpl(torch::Tensor object, torch::Tensor probe, torch::Tensor slice_transfer = {});

  // positions (B, 2) real, window corners in this tile's array coordinates.
  // Returns predicted intensities (B, h, w) in FFT order.
  torch::Tensor forward(const torch::Tensor& positions);
  // Exit waves (B, M, h, w) leaving the last slice.
  torch::Tensor exit_waves(const torch::Tensor& positions);
  // Data loss of the patterns at `positions` against their measured
  // intensities (B, h, w), FFT order, and valid mask ((h, w), (B, h, w) or
  // undefined): loss.function(forward(positions), measured, valid), with the
  // same value and gradients, but computed by the fused far-field operator
  // (far_field_loss.h) when the loss has a per-pixel form and the model is on
  // the CPU. Positions stay differentiable. With `rows` (B int64), measured
  // is the (N, h, w) stack of every frame and pattern b is frame rows[b].
  // Returns weight times the loss (the fused operator applies the weight to
  // its gradients directly).
  torch::Tensor data_loss(const torch::Tensor& positions, const torch::Tensor& measured, const torch::Tensor& valid,
                          const LossInfo& loss, const torch::Tensor& rows = {}, double weight = 1);

  int64_t frame_h() const { return probe_real.size(1); }
  int64_t frame_w() const { return probe_real.size(2); }

  // Complex views of the parameters (share storage and autograd history).
  torch::Tensor object() const { return torch::view_as_complex(object_real); }
  torch::Tensor probe() const { return torch::view_as_complex(probe_real); }

  // Parameters are stored as real (..., 2) arrays: every torch::optim
  // optimiser then treats real and imaginary parts as independent reals,
  // which is what their element-wise statistics (Adam, RMSprop) assume.
  torch::Tensor object_real;     // (L, H, W, 2)
  torch::Tensor probe_real;      // (M, h, w, 2)
  torch::Tensor slice_transfer;  // buffer (undefined for one slice)
};
TORCH_MODULE(PtychoModel);

}  // namespace tessera
