#pragma once
// The data loss of a batch of object windows as one operator with its
// analytic gradient, on any device: registered with the dispatcher as
// tessera::window_far_field_loss, with CPU and CUDA kernels and an autograd
// kernel.
//
//   psi_bm = probe_m * window_b             (custom kernel)
//   Psi_bm = F psi_bm                       (LibTorch's FFT: cuFFT on CUDA)
//   I_b    = sum_m |Psi_bm|^2, L = weight sum_b sum_valid l(I_b, measured_b)
//   dL/dPsi_bm = weight 2 dl/dI Psi_bm      (custom kernel, per pixel)
//   dL/dwindow_b = sum_m conj(probe_m) F^H(..), dL/dprobe_m = sum_b conj(window_b) F^H(..)
//
// It is the GPU's form of models/far_field_loss.h's object_far_field_loss:
// the windows come from extract_patches (whose autograd carries the gradient
// on to the object and the positions, by the overlap-add kernel), and the
// per-pixel loss is the one struct per loss of pixel_losses.h that the CPU
// fused operator is generated from too. The element steps are shared by the
// CPU and CUDA kernels (window_loss_kernels.h); sums over modes, patterns and
// pixels run in a fixed order on both: the same bits on every run.
//
// Conventions
//   windows  (B, 1, h, w) complex64 or complex128 (extract_patches of a single-slice object)
//   probe    (M, h, w), same dtype and device
//   measured (N, h, w) real of the same precision, FFT order, on the same device;
//            pattern b is frame rows[b] (rows: (B) int64), or frame b without rows (N = B)
//   valid    bool (h, w) or (N, h, w), true = pixel used; or undefined = every pixel
//   loss     a per-pixel form by name: amplitude, intensity or poisson (losses.h of models/)
// Returns weight times the summed loss, a 0-dim real tensor, differentiable
// with respect to windows and probe.
#include <torch/torch.h>

#include <string>
#include <vector>

namespace tessera::ops {

torch::Tensor window_far_field_loss(const torch::Tensor& windows, const torch::Tensor& probe,
                                    const torch::Tensor& measured, const torch::Tensor& valid,
                                    const torch::Tensor& rows, const std::string& loss, double weight = 1);

// The op itself: (loss, grad_windows, grad_probe), the gradients of the
// weighted loss computed in the same call when `gradients` (empty tensors
// otherwise). Not differentiable through its gradient outputs.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> window_far_field_loss_with_gradients(
    const torch::Tensor& windows, const torch::Tensor& probe, const torch::Tensor& measured,
    const torch::Tensor& valid, const torch::Tensor& rows, const std::string& loss, double weight, bool gradients);

// The per-pixel forms the op knows.
std::vector<std::string> window_loss_forms();

}  // namespace tessera::ops
