#include "models/propagation.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

#include "src/fft/batched_fft.h"

namespace tessera {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The orthonormal 2-D DFT through the build's CPU FFT library (in place on a
// copy), with its adjoint, the inverse DFT, as the gradient. Backward goes
// through far_field / far_field_adjoint again, so double backward works.
class OrthoFft2 : public torch::autograd::Function<OrthoFft2> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& wave, bool inverse) {
    ctx->saved_data["inverse"] = inverse;
    auto out = torch::empty_like(wave, torch::MemoryFormat::Contiguous);
    out.copy_(wave);
    // fft2_in_place runs on the calling thread: spread the frames over the
    // threads in groups of a fixed size, so that every frame is transformed
    // by the same plan whatever the thread count (the same bits).
    const int64_t h = out.size(-2), w = out.size(-1), frames = out.numel() / std::max<int64_t>(h * w, 1);
    constexpr int64_t kGroup = 8;
    auto flat = out.view({frames, h, w});
    at::parallel_for(0, (frames + kGroup - 1) / kGroup, 1, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g)
        fft2_in_place(flat.narrow(0, g * kGroup, std::min(kGroup, frames - g * kGroup)), inverse);
    });
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const bool inverse = ctx->saved_data["inverse"].toBool();
    return {inverse ? far_field(grad[0]) : far_field_adjoint(grad[0]), torch::Tensor()};
  }
};

bool own_fft(const torch::Tensor& wave) {
  return wave.device().is_cpu() && wave.is_complex() && active_fft_library() != FftLibrary::libtorch;
}

}  // namespace

torch::Tensor far_field(const torch::Tensor& exit_wave) {
  if (own_fft(exit_wave)) return OrthoFft2::apply(exit_wave, false);
  return torch::fft::fft2(exit_wave, c10::nullopt, {-2, -1}, "ortho");
}

torch::Tensor far_field_adjoint(const torch::Tensor& detector_wave) {
  if (own_fft(detector_wave)) return OrthoFft2::apply(detector_wave, true);
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
  // The orthonormal pair: the same as the unnormalised forward and 1/n
  // inverse, with both transforms the build's FFT library.
  return far_field_adjoint(far_field(wave) * transfer);
}

torch::Tensor to_fft_order(const torch::Tensor& frames) {
  return torch::fft::ifftshift(frames, {-2, -1});
}

torch::Tensor to_detector_order(const torch::Tensor& frames) {
  return torch::fft::fftshift(frames, {-2, -1});
}

}  // namespace tessera
