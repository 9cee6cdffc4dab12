// Autograd kernel of tessera::window_far_field_loss. The loss is a scalar at
// the end of the graph, so its gradients with respect to the windows and the
// probe are computed in the forward call (by the device kernel, in the same
// pass over the far field) and handed over, scaled, in backward (kept, so a
// retained graph may run backward again). Double backward is not supported.
#include <torch/autograd.h>
#include <torch/library.h>

#include "src/ops/ops_internal.h"
#include "src/ops/window_loss.h"

namespace tessera::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The measurement is not differentiated: it travels as plain data, not as
// autograd inputs (an undefined mask or rows could not be one).
struct Measurement {
  at::Tensor measured;
  c10::optional<at::Tensor> valid, rows;
};

class WindowFarFieldLossFunction : public torch::autograd::Function<WindowFarFieldLossFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& windows, const at::Tensor& probe,
                               const Measurement& meas, const std::string& loss, double weight, bool gradients) {
    const bool differentiate = windows.requires_grad() || probe.requires_grad();
    at::Tensor value, grad_windows, grad_probe;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(value, grad_windows, grad_probe) = window_far_field_loss_with_gradients(
          windows, probe, meas.measured, meas.valid.value_or(at::Tensor()), meas.rows.value_or(at::Tensor()), loss,
          weight, gradients || differentiate);
    }
    if (differentiate) {
      ctx->saved_data["grad_windows"] = grad_windows;
      ctx->saved_data["grad_probe"] = grad_probe;
    }
    ctx->mark_non_differentiable({grad_windows, grad_probe});
    return {value, grad_windows, grad_probe};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    // Kept (not released): a retained graph may run backward again, with
    // another incoming gradient.
    auto take = [&](const char* key) { return ctx->saved_data[key].toTensor(); };
    // The incoming gradient stays a tensor (no copy to the host on CUDA).
    const auto& scale = grad_outputs[0];
    at::Tensor grad_windows, grad_probe;
    if (ctx->needs_input_grad(0)) grad_windows = take("grad_windows") * scale;
    if (ctx->needs_input_grad(1)) grad_probe = take("grad_probe") * scale;
    return {grad_windows, grad_probe, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> window_far_field_loss_autograd(
    const at::Tensor& windows, const at::Tensor& probe, const at::Tensor& measured,
    const c10::optional<at::Tensor>& valid, const c10::optional<at::Tensor>& rows, c10::string_view loss,
    double weight, bool gradients) {
  auto out = WindowFarFieldLossFunction::apply(windows, probe, Measurement{measured, valid, rows}, std::string(loss),
                                               weight, gradients);
  return {out[0], out[1], out[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(tessera, Autograd, m) {
  m.impl("window_far_field_loss", TORCH_FN(window_far_field_loss_autograd));
}

}  // namespace tessera::ops
