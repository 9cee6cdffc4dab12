// Autograd kernels of tessera::extract_patches and tessera::overlap_add.
//
//   extract_patches: d/d object    = overlap_add(grad)            (S^T, S is real-linear)
//                    d/d positions = _patches_position_grad(grad, object)
//   overlap_add:     d/d patches   = extract_patches(grad)
//                    d/d positions = _patches_position_grad(patches, grad)
// (<G, d(S_b^T P_b)/dp> = <d(S_b G)/dp, P_b>). Position gradients are real:
// sum over the real and imaginary channels, Re(conj(g) dz/dp).
// Double backward is not supported.
#include <torch/autograd.h>
#include <torch/library.h>

#include "src/ops/ops_internal.h"
#include "src/ops/patches.h"

namespace tessera::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class ExtractPatchesFunction : public torch::autograd::Function<ExtractPatchesFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& object,
                               const at::Tensor& positions, int64_t h, int64_t w) {
    at::Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = extract_patches(object, positions, h, w);  // validates the inputs
    }
    ctx->saved_data["H"] = object.size(1);
    ctx->saved_data["W"] = object.size(2);
    // The object is only needed for the positions gradient: do not pin it (and
    // its version) otherwise.
    ctx->save_for_backward({positions, positions.requires_grad() ? object : at::Tensor()});
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& positions = saved[0];
    const at::Tensor& grad = grad_outputs[0];
    at::Tensor grad_object, grad_positions;
    if (ctx->needs_input_grad(0))
      grad_object = overlap_add(grad, positions, ctx->saved_data["H"].toInt(),
                                ctx->saved_data["W"].toInt());
    if (ctx->needs_input_grad(1))
      grad_positions = detail::patches_position_grad(grad, saved[1], positions);
    return {grad_object, grad_positions, at::Tensor(), at::Tensor()};
  }
};

class OverlapAddFunction : public torch::autograd::Function<OverlapAddFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& patches,
                               const at::Tensor& positions, int64_t H, int64_t W) {
    at::Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = overlap_add(patches, positions, H, W);
    }
    ctx->saved_data["h"] = patches.size(2);
    ctx->saved_data["w"] = patches.size(3);
    ctx->save_for_backward({positions, positions.requires_grad() ? patches : at::Tensor()});
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& positions = saved[0];
    const at::Tensor& grad = grad_outputs[0];
    at::Tensor grad_patches, grad_positions;
    if (ctx->needs_input_grad(0))
      grad_patches = extract_patches(grad, positions, ctx->saved_data["h"].toInt(),
                                     ctx->saved_data["w"].toInt());
    if (ctx->needs_input_grad(1))
      grad_positions = detail::patches_position_grad(saved[1], grad, positions);
    return {grad_patches, grad_positions, at::Tensor(), at::Tensor()};
  }
};

// The backward op itself: differentiable inputs are possible (create_graph), but
// a second derivative is not implemented.
class PatchesPositionGradFunction
    : public torch::autograd::Function<PatchesPositionGradFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad,
                               const at::Tensor& object, const at::Tensor& positions) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return {detail::patches_position_grad(grad, object, positions)};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    TORCH_CHECK(false, "tessera::extract_patches / overlap_add: double backward (a derivative of "
                       "the positions gradient) is not supported");
    return {};
  }
};

at::Tensor extract_patches_autograd(const at::Tensor& object, const at::Tensor& positions,
                                    int64_t h, int64_t w) {
  return ExtractPatchesFunction::apply(object, positions, h, w)[0];
}

at::Tensor overlap_add_autograd(const at::Tensor& patches, const at::Tensor& positions, int64_t H,
                                int64_t W) {
  return OverlapAddFunction::apply(patches, positions, H, W)[0];
}

at::Tensor patches_position_grad_autograd(const at::Tensor& grad, const at::Tensor& object,
                                          const at::Tensor& positions) {
  return PatchesPositionGradFunction::apply(grad, object, positions)[0];
}

}  // namespace

TORCH_LIBRARY_IMPL(tessera, Autograd, m) {
  m.impl("extract_patches", TORCH_FN(extract_patches_autograd));
  m.impl("overlap_add", TORCH_FN(overlap_add_autograd));
  m.impl("_patches_position_grad", TORCH_FN(patches_position_grad_autograd));
}

}  // namespace tessera::ops
