// Autograd kernels of the halo ops.
//
//   pack_regions:   d/d array  = zeros with each rect increased by its block of grad
//   unpack_regions: d/d buffer = pack_regions(grad)
//                   d/d array  = grad (accumulate) or grad with the rects zeroed (copy)
// In copy mode the rects are assumed not to overlap (an overwritten block of the
// buffer would otherwise still receive gradient). unpack_regions_ (in place) is
// not differentiable: its autograd kernel refuses tensors that require grad
// while grad mode is on, and bumps the array's version counter.
// Double backward is not supported.
#include <torch/autograd.h>
#include <torch/library.h>

#include "src/ops/halo.h"
#include "src/ops/ops_internal.h"

namespace tessera::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class PackRegionsFunction : public torch::autograd::Function<PackRegionsFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& array,
                               const at::Tensor& rects) {
    at::Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = pack_regions(array, rects);
    }
    ctx->saved_data["sizes"] = array.sizes().vec();
    ctx->save_for_backward({rects});
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto rects = ctx->get_saved_variables()[0];
    at::Tensor grad_array;
    if (ctx->needs_input_grad(0)) {
      grad_array = at::zeros(ctx->saved_data["sizes"].toIntVector(), grad_outputs[0].options());
      unpack_regions_(grad_array, grad_outputs[0], rects, /*accumulate=*/true);
    }
    return {grad_array, at::Tensor()};
  }
};

class UnpackRegionsFunction : public torch::autograd::Function<UnpackRegionsFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& array,
                               const at::Tensor& buffer, const at::Tensor& rects,
                               bool accumulate) {
    at::Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = unpack_regions(array, buffer, rects, accumulate);
    }
    ctx->saved_data["accumulate"] = accumulate;
    ctx->saved_data["buffer_numel"] = buffer.numel();
    ctx->save_for_backward({rects});
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto rects = ctx->get_saved_variables()[0];
    const at::Tensor& grad = grad_outputs[0];
    at::Tensor grad_array, grad_buffer;
    if (ctx->needs_input_grad(0)) {
      if (ctx->saved_data["accumulate"].toBool()) {
        grad_array = grad;
      } else {
        grad_array = grad.clone(at::MemoryFormat::Contiguous);
        unpack_regions_(grad_array,
                        at::zeros({ctx->saved_data["buffer_numel"].toInt()}, grad.options()),
                        rects, /*accumulate=*/false);
      }
    }
    if (ctx->needs_input_grad(1)) grad_buffer = pack_regions(grad, rects);
    return {grad_array, grad_buffer, at::Tensor(), at::Tensor()};
  }
};

at::Tensor pack_regions_autograd(const at::Tensor& array, const at::Tensor& rects) {
  return PackRegionsFunction::apply(array, rects)[0];
}

at::Tensor unpack_regions_autograd(const at::Tensor& array, const at::Tensor& buffer,
                                   const at::Tensor& rects, bool accumulate) {
  return UnpackRegionsFunction::apply(array, buffer, rects, accumulate)[0];
}

void unpack_regions_inplace_autograd(const at::Tensor& array, const at::Tensor& buffer,
                                     const at::Tensor& rects, bool accumulate) {
  const bool grad_mode = at::GradMode::is_enabled();
  TESSERA_REQUIRE(Error,
                  !(grad_mode && ((array.defined() && array.requires_grad()) ||
                                  (buffer.defined() && buffer.requires_grad()))),
                  "tessera::unpack_regions_: the in-place form is not differentiable, but ",
                  array.defined() && array.requires_grad() ? "the array" : "the buffer",
                  " requires grad; use tessera::ops::unpack_regions (out of place) or run it "
                  "under torch::NoGradGuard");
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor target = array;
    unpack_regions_(target, buffer, rects, accumulate);
  }
  if (array.defined() && !array.is_inference()) array.unsafeGetTensorImpl()->bump_version();
}

}  // namespace

TORCH_LIBRARY_IMPL(tessera, Autograd, m) {
  m.impl("pack_regions", TORCH_FN(pack_regions_autograd));
  m.impl("unpack_regions", TORCH_FN(unpack_regions_autograd));
  m.impl("unpack_regions_", TORCH_FN(unpack_regions_inplace_autograd));
}

}  // namespace tessera::ops
