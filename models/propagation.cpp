#include "models/propagation.h"

#include <cmath>

namespace tessera {

torch::Tensor far_field(const torch::Tensor& exit_wave) {
  return torch::fft::fft2(exit_wave, c10::nullopt, {-2, -1}, "ortho");
}

torch::Tensor far_field_adjoint(const torch::Tensor& detector_wave) {
  return torch::fft::ifft2(detector_wave, c10::nullopt, {-2, -1}, "ortho");
}

torch::Tensor fresnel_transfer_function(int64_t h, int64_t w, double py, double px, double wavelength,
                                        double dz, torch::Dtype dtype) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto ky = torch::fft::fftfreq(h, py, opts).view({h, 1});
  auto kx = torch::fft::fftfreq(w, px, opts).view({1, w});
  // Paraxial angular spectrum: exp(-i pi lambda dz (kx^2 + ky^2)).
  auto phase = (ky * ky + kx * kx) * (-M_PI * wavelength * dz);
  return torch::polar(torch::ones_like(phase), phase).to(dtype);
}

torch::Tensor propagate(const torch::Tensor& wave, const torch::Tensor& transfer) {
  return torch::fft::ifft2(torch::fft::fft2(wave) * transfer);
}

torch::Tensor to_fft_order(const torch::Tensor& frames) {
  return torch::fft::ifftshift(frames, {-2, -1});
}

torch::Tensor to_detector_order(const torch::Tensor& frames) {
  return torch::fft::fftshift(frames, {-2, -1});
}

}  // namespace tessera
