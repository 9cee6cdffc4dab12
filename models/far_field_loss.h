#pragma once
// The data loss of a batch of patterns as one operator, with its analytic
// gradient, instead of a chain of autograd nodes:
//
//   Psi_bm = F psi_bm                  (orthonormal 2-D FFT, batched)
//   I_b    = sum_m |Psi_bm|^2          (incoherent modes)
//   L      = sum_b sum_valid l(I_b, I_measured_b)
//   dL/dpsi_bm = F^H (2 dl/dI(I_b) Psi_bm)   (batched inverse FFT)
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
// differentiable with respect to exit_waves. With `rows` (B int64), pattern b
// is measured frame rows[b] of an (N, h, w) stack (and mask, if per frame):
// a mini-batch reads its frames in place instead of copying them.
torch::Tensor far_field_loss(const torch::Tensor& exit_waves, const torch::Tensor& measured,
                             const torch::Tensor& valid, const PixelLoss& loss, const torch::Tensor& rows = {});

// The same for a single-slice object: exit waves psi_bm = probe_m * S_b
// object, the windows S_b (ops::extract_patches) extracted and the products
// formed inside the operator, block by block of fused_loss_block() patterns
// that stay in cache from the object windows to their gradients. Those are
// computed in the forward pass (the loss is a scalar at the end of the graph),
// and so is their overlap-add into the object gradient, in the same parallel
// region; backward only hands the gradients over. One backward per forward.
// object (1, H, W) complex, positions (B, 2) real (as extract_patches), probe
// (M, h, w) complex of the same precision.
// Differentiable with respect to object, positions and probe. Returns weight
// times the loss: a mini-batch's 1 / batch size rides along with the
// gradient products, instead of a product node in the graph and a pass over
// the object and probe gradients in backward.
torch::Tensor object_far_field_loss(const torch::Tensor& object, const torch::Tensor& positions,
                                    const torch::Tensor& probe, const torch::Tensor& measured,
                                    const torch::Tensor& valid, const PixelLoss& loss,
                                    const torch::Tensor& rows = {}, double weight = 1);

// Patterns per block of object_far_field_loss: each block is one forward and
// one inverse batched FFT (benchmarks time the same calls as the FFT floor).
int64_t fused_loss_block(int64_t modes, int64_t h, int64_t w, torch::ScalarType complex_type);

}  // namespace tessera
