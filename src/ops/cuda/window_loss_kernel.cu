// CUDA kernels of tessera::window_far_field_loss: a grid-stride loop around
// each element step of window_loss_kernels.h, the functions the CPU kernel
// (ops/cpu/window_loss_kernel.cpp) loops over. One thread writes each output
// element and sums over modes or patterns in index order: no atomics.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "src/ops/cuda/launchers.h"

namespace tessera::ops::gpu {
namespace {

constexpr int kThreads = 256;

template <typename Step>
__global__ void for_each_kernel(int64_t count, Step step) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)
    step(i);
}

template <typename Step>
cudaError_t for_each(int64_t count, const Step& step, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((count + kThreads - 1) / kThreads, int64_t(1) << 20);
  for_each_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(count, step);
  return cudaGetLastError();
}

}  // namespace

template <typename T>
cudaError_t launch_window_exit_waves(const WindowLossArgs<T>& a, cudaStream_t stream) {
  return for_each(a.B * a.M * a.n, ExitWaveStep<T>{a}, stream);
}

template <typename T>
cudaError_t launch_window_far_field_pixels(const WindowLossArgs<T>& a, PixelForm form, cudaStream_t stream) {
  cudaError_t status = cudaSuccess;
  with_pixel_form(form, [&](auto pixel) {
    status = for_each(a.B * a.n, FarFieldPixelStep<decltype(pixel), T>{a}, stream);
  });
  return status;
}

template <typename T>
cudaError_t launch_window_gradients(const WindowLossArgs<T>& a, cudaStream_t stream) {
  if (a.grad_windows) {
    const cudaError_t status = for_each(a.B * a.n, WindowGradientStep<T>{a}, stream);
    if (status != cudaSuccess) return status;
  }
  if (a.grad_probe) return for_each(a.M * a.n, ProbeGradientStep<T>{a}, stream);
  return cudaSuccess;
}

#define TESSERA_INSTANTIATE_WINDOW_LOSS(T)                                                          \
  template cudaError_t launch_window_exit_waves<T>(const WindowLossArgs<T>&, cudaStream_t);         \
  template cudaError_t launch_window_far_field_pixels<T>(const WindowLossArgs<T>&, PixelForm,       \
                                                         cudaStream_t);                             \
  template cudaError_t launch_window_gradients<T>(const WindowLossArgs<T>&, cudaStream_t);
TESSERA_INSTANTIATE_WINDOW_LOSS(float)
TESSERA_INSTANTIATE_WINDOW_LOSS(double)
#undef TESSERA_INSTANTIATE_WINDOW_LOSS

}  // namespace tessera::ops::gpu
