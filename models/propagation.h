#pragma once
// Wave propagation operators. Each is linear and unitary, so its adjoint is its
// inverse; autograd supplies the adjoints. On the CPU the transforms are the
// build's FFT library's (src/fft/batched_fft.h), elsewhere torch::fft's.
//
// Centring convention: tessera keeps diffraction data internally in FFT order
// (zero spatial frequency at pixel [0, 0]). Files store frames as measured, with
// the zero order at pixel [h/2, w/2]; `to_fft_order` (ifftshift) converts once at
// load time so that no shift is paid per iteration, and `to_detector_order`
// (fftshift) converts back for output.
#include <torch/torch.h>

namespace tessera {

// Exit wave (..., h, w) to far-field wave, orthonormal 2-D FFT (Parseval holds:
// the sum of |psi|^2 equals the sum of the far-field intensity).
torch::Tensor far_field(const torch::Tensor& exit_wave);
torch::Tensor far_field_adjoint(const torch::Tensor& detector_wave);

// Angular-spectrum (Fresnel) transfer function for a distance dz, in FFT order,
// for a (h, w) grid of pixel size (py, px); all lengths in metres.
torch::Tensor fresnel_transfer_function(int64_t h, int64_t w, double pixel_y_m, double pixel_x_m,
                                        double wavelength_m, double dz_m,
                                        torch::Dtype dtype = torch::kComplexFloat);
// Propagate waves (..., h, w) by multiplying their spectrum with `transfer`.
torch::Tensor propagate(const torch::Tensor& wave, const torch::Tensor& transfer);

torch::Tensor to_fft_order(const torch::Tensor& frames);
torch::Tensor to_detector_order(const torch::Tensor& frames);

}  // namespace tessera
