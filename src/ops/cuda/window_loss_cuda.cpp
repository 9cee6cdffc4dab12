// CUDA registration of tessera::window_far_field_loss (compiled only with a
// CUDA LibTorch): the common part (ops_internal.h) with the kernels of
// window_loss_kernel.cu on the current stream; the FFTs are LibTorch's
// (cuFFT) on the same stream.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "src/ops/cuda/launchers.h"
#include "src/ops/ops_internal.h"

namespace tessera::ops {
namespace {

cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream().stream(); }

template <typename T>
const detail::WindowLossLaunchers<T>& cuda_launchers() {
  static const detail::WindowLossLaunchers<T> l{
      [](const WindowLossArgs<T>& a) { C10_CUDA_CHECK(gpu::launch_window_exit_waves<T>(a, current_stream())); },
      [](const WindowLossArgs<T>& a, PixelForm form) {
        C10_CUDA_CHECK(gpu::launch_window_far_field_pixels<T>(a, form, current_stream()));
      },
      [](const WindowLossArgs<T>& a) { C10_CUDA_CHECK(gpu::launch_window_gradients<T>(a, current_stream())); }};
  return l;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> window_far_field_loss_cuda(
    const at::Tensor& windows, const at::Tensor& probe, const at::Tensor& measured,
    const c10::optional<at::Tensor>& valid, const c10::optional<at::Tensor>& rows, c10::string_view loss,
    double weight, bool gradients) {
  TESSERA_REQUIRE(Error, probe.is_cuda(), "tessera::window_far_field_loss: expected CUDA tensors");
  const c10::cuda::CUDAGuard device_guard(probe.device());
  return detail::window_far_field_loss_impl(windows, probe, measured, valid, rows, std::string(loss), weight,
                                            gradients, cuda_launchers<float>(), cuda_launchers<double>());
}

}  // namespace

TORCH_LIBRARY_IMPL(tessera, CUDA, m) { m.impl("window_far_field_loss", TORCH_FN(window_far_field_loss_cuda)); }

}  // namespace tessera::ops
