#pragma once
// The data loss of a batch of patterns as one operator, with its analytic
// gradient, instead of a chain of autograd nodes:
//
//   Psi_bm = F psi_bm                  (orthonormal 2-D FFT, one batched call)
//   I_b    = sum_m |Psi_bm|^2          (incoherent modes)
//   L      = sum_b sum_valid l(I_b, I_measured_b)
//   dL/dpsi_bm = F^H (2 dl/dI(I_b) Psi_bm)   (one batched inverse FFT)
//
// The gradient is in PyTorch's convention for a real function of complex
// inputs (dL/dRe + i dL/dIm, what autograd passes backward), so the result
// joins an autograd graph like any other op: positions -> extract_patches ->
// patches stay differentiable through it. Besides the two FFTs the work is a
// few single passes of plain loops (at::parallel_for over patterns), with no
// intermediate tensors per element-wise step. Deterministic: per-pattern sums
// are added in pattern order whatever the thread count.
//
// `loss` is the per-pixel form of a registered loss (losses.h); callers fall
// back to autograd for a loss without one (PtychoModel::data_loss does).
#include <torch/torch.h>

#include "models/losses.h"

namespace tessera {

// exit_waves (B, M, h, w) complex; measured (B, h, w) real of the same
// precision, FFT order; valid (h, w) or (B, h, w) bool, true = pixel used, or
// undefined = every pixel. Returns the summed loss (0-dim real tensor),
// differentiable with respect to exit_waves.
torch::Tensor far_field_loss(const torch::Tensor& exit_waves, const torch::Tensor& measured,
                             const torch::Tensor& valid, const PixelLoss& loss);

// The same for single-slice exit waves psi_bm = probe_m * patches_b, formed
// inside the operator (no (B, M, h, w) product node, and the gradients of the
// product are fused into the backward loops): probe (M, h, w) complex,
// patches (B, h, w) complex of the same precision. Differentiable with
// respect to probe and patches.
torch::Tensor probe_far_field_loss(const torch::Tensor& probe, const torch::Tensor& patches,
                                   const torch::Tensor& measured, const torch::Tensor& valid,
                                   const PixelLoss& loss);

}  // namespace tessera
