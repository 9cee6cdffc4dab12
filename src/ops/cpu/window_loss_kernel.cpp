// CPU kernel of tessera::window_far_field_loss: the element steps of
// window_loss_kernels.h in at::parallel_for loops. Each element is written
// by one call, so the result does not depend on the thread count. (The CPU
// production path is the cache-blocked fused operator of
// models/far_field_loss.h; this kernel is the reference the CUDA kernel is
// compared with, and runs the same arithmetic.)
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "src/ops/ops_internal.h"
#include "src/ops/window_loss.h"

namespace tessera::ops {
namespace {

template <typename Step>
void for_each(int64_t count, const Step& step) {
  at::parallel_for(0, count, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) step(i);
  });
}

template <typename T>
const detail::WindowLossLaunchers<T>& cpu_launchers() {
  static const detail::WindowLossLaunchers<T> l{
      [](const WindowLossArgs<T>& a) { for_each(a.B * a.M * a.n, ExitWaveStep<T>{a}); },
      [](const WindowLossArgs<T>& a, PixelForm form) {
        with_pixel_form(form, [&](auto pixel) {
          for_each(a.B * a.n, FarFieldPixelStep<decltype(pixel), T>{a});
        });
      },
      [](const WindowLossArgs<T>& a) {
        if (a.grad_windows) for_each(a.B * a.n, WindowGradientStep<T>{a});
        if (a.grad_probe) for_each(a.M * a.n, ProbeGradientStep<T>{a});
      }};
  return l;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> window_far_field_loss_cpu(
    const at::Tensor& windows, const at::Tensor& probe, const at::Tensor& measured,
    const c10::optional<at::Tensor>& valid, const c10::optional<at::Tensor>& rows, c10::string_view loss,
    double weight, bool gradients) {
  TESSERA_REQUIRE(Error, probe.device().is_cpu(), "tessera::window_far_field_loss: expected CPU tensors");
  return detail::window_far_field_loss_impl(windows, probe, measured, valid, rows, std::string(loss), weight,
                                            gradients, cpu_launchers<float>(), cpu_launchers<double>());
}

}  // namespace

TORCH_LIBRARY_IMPL(tessera, CPU, m) { m.impl("window_far_field_loss", TORCH_FN(window_far_field_loss_cpu)); }

}  // namespace tessera::ops
