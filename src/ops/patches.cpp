// C++ API of the probe-window ops: thin calls through the dispatcher (which
// picks the CPU/CUDA kernel and the autograd wrapper), plus the validation
// shared by the kernels.
#include "src/ops/patches.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include "src/ops/ops_internal.h"

namespace tessera::ops {

torch::Tensor extract_patches(const torch::Tensor& object, const torch::Tensor& positions,
                              int64_t h, int64_t w) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("tessera::extract_patches", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, int64_t)>();
  return op.call(object, positions, h, w);
}

torch::Tensor overlap_add(const torch::Tensor& patches, const torch::Tensor& positions, int64_t H,
                          int64_t W) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("tessera::overlap_add", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, int64_t)>();
  return op.call(patches, positions, H, W);
}

torch::Tensor patches_position_grad(const torch::Tensor& grad, const torch::Tensor& object,
                                    const torch::Tensor& positions) {
  return detail::patches_position_grad(grad, object, positions);
}

namespace detail {

torch::Tensor patches_position_grad(const torch::Tensor& grad, const torch::Tensor& object,
                                    const torch::Tensor& positions) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("tessera::_patches_position_grad", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(grad, object, positions);
}

namespace {
bool supported_dtype(c10::ScalarType t) {
  return t == c10::kFloat || t == c10::kDouble || t == c10::kComplexFloat ||
         t == c10::kComplexDouble;
}
}  // namespace

void check_patches_args(const char* op, const torch::Tensor& data, const char* what,
                        int64_t expected_dim, const torch::Tensor& positions, int64_t h,
                        int64_t w) {
  TESSERA_REQUIRE(Error, data.defined(), op, ": ", what, " is undefined");
  TESSERA_REQUIRE(Error, positions.defined(), op, ": positions is undefined");
  TESSERA_REQUIRE(Error, supported_dtype(data.scalar_type()), op, ": ", what,
                  " must be float32, float64, complex64 or complex128, got ", data.scalar_type());
  TESSERA_REQUIRE(Error, data.dim() == expected_dim, op, ": ", what, " must have ", expected_dim,
                  " dimensions (", expected_dim == 3 ? "L, H, W" : "B, L, h, w", "), got shape ",
                  data.sizes());
  const auto real_t = c10::toRealValueType(data.scalar_type());
  TESSERA_REQUIRE(Error, positions.scalar_type() == real_t, op, ": positions must have dtype ",
                  real_t, " to match the ", data.scalar_type(), " ", what, ", got ",
                  positions.scalar_type());
  TESSERA_REQUIRE(Error, positions.dim() == 2 && positions.size(1) == 2, op,
                  ": positions must have shape (B, 2) with rows [y, x], got ", positions.sizes());
  TESSERA_REQUIRE(Error, positions.device() == data.device(), op, ": positions is on ",
                  positions.device(), " but ", what, " is on ", data.device());
  TESSERA_REQUIRE(Error, h > 0 && w > 0, op, ": window size must be positive, got ", h, " x ", w);
}

}  // namespace detail
}  // namespace tessera::ops
