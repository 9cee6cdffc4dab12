// C++ API of the halo-buffer ops (dispatcher calls) and their validation.
#include "src/ops/halo.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include "src/ops/ops_internal.h"

namespace tessera::ops {

torch::Tensor pack_regions(const torch::Tensor& array, const torch::Tensor& rects) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("tessera::pack_regions", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&)>();
  return op.call(array, rects);
}

torch::Tensor unpack_regions(const torch::Tensor& array, const torch::Tensor& buffer,
                             const torch::Tensor& rects, bool accumulate) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("tessera::unpack_regions", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, bool)>();
  return op.call(array, buffer, rects, accumulate);
}

void unpack_regions_(torch::Tensor& array, const torch::Tensor& buffer, const torch::Tensor& rects,
                     bool accumulate) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("tessera::unpack_regions_", "")
          .typed<void(const at::Tensor&, const at::Tensor&, const at::Tensor&, bool)>();
  op.call(array, buffer, rects, accumulate);
}

int64_t packed_size(const torch::Tensor& rects, int64_t slices) {
  TESSERA_REQUIRE(Error, rects.defined() && rects.scalar_type() == c10::kLong && rects.dim() == 2 &&
                             rects.size(1) == 4,
                  "tessera::packed_size: rects must be an int64 tensor of shape (R, 4), got ",
                  rects.defined() ? c10::toString(rects.scalar_type()) : "undefined", " ",
                  rects.defined() ? rects.sizes() : c10::IntArrayRef{});
  TESSERA_REQUIRE(Error, slices >= 0, "tessera::packed_size: slices must be >= 0, got ", slices);
  const auto r = rects.to(c10::kCPU).contiguous();
  const int64_t* p = r.data_ptr<int64_t>();
  int64_t total = 0;
  for (int64_t i = 0; i < r.size(0); ++i) {
    TESSERA_REQUIRE(Error, p[4 * i + 2] >= 0 && p[4 * i + 3] >= 0, "tessera::packed_size: rect ", i,
                    " has a negative size ", p[4 * i + 2], " x ", p[4 * i + 3]);
    total += p[4 * i + 2] * p[4 * i + 3];
  }
  return total * slices;
}

namespace detail {

void check_halo_array(const char* op, const torch::Tensor& array, const char* what) {
  TESSERA_REQUIRE(Error, array.defined(), op, ": ", what, " is undefined");
  const auto t = array.scalar_type();
  TESSERA_REQUIRE(Error,
                  t == c10::kFloat || t == c10::kDouble || t == c10::kComplexFloat ||
                      t == c10::kComplexDouble,
                  op, ": ", what, " must be float32, float64, complex64 or complex128, got ", t);
  TESSERA_REQUIRE(Error, array.dim() == 3, op, ": ", what,
                  " must have 3 dimensions (L, H, W), got shape ", array.sizes());
}

RectTable check_rects(const char* op, const torch::Tensor& array, const torch::Tensor& rects) {
  TESSERA_REQUIRE(Error, rects.defined(), op, ": rects is undefined");
  TESSERA_REQUIRE(Error, rects.scalar_type() == c10::kLong, op,
                  ": rects must be int64 rows [y0, x0, h, w], got dtype ", rects.scalar_type());
  TESSERA_REQUIRE(Error, rects.dim() == 2 && rects.size(1) == 4, op,
                  ": rects must have shape (R, 4) with rows [y0, x0, h, w], got ", rects.sizes());
  TESSERA_REQUIRE(Error, rects.device().is_cpu() || rects.device() == array.device(), op,
                  ": rects is on ", rects.device(), " but the array is on ", array.device());
  const int64_t H = array.size(1), W = array.size(2), L = array.size(0);
  const auto host = rects.to(c10::kCPU).contiguous();
  RectTable table;
  const int64_t R = host.size(0);
  table.rects.assign(host.data_ptr<int64_t>(), host.data_ptr<int64_t>() + 4 * R);
  table.offsets.resize(static_cast<size_t>(R + 1));
  table.offsets[0] = 0;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t y0 = table.rects[4 * r], x0 = table.rects[4 * r + 1];
    const int64_t h = table.rects[4 * r + 2], w = table.rects[4 * r + 3];
    TESSERA_REQUIRE(DataError,
                    h >= 0 && w >= 0 && y0 >= 0 && x0 >= 0 && y0 <= H - h && x0 <= W - w, op,
                    ": rect ", r, " [y0=", y0, ", x0=", x0, ", h=", h, ", w=", w,
                    "] is not inside the ", H, " x ", W, " array");
    table.offsets[r + 1] = table.offsets[r] + L * h * w;
  }
  return table;
}

void check_halo_buffer(const char* op, const torch::Tensor& array, const torch::Tensor& buffer,
                       int64_t expected_numel) {
  TESSERA_REQUIRE(Error, buffer.defined(), op, ": buffer is undefined");
  TESSERA_REQUIRE(Error, buffer.scalar_type() == array.scalar_type(), op, ": buffer has dtype ",
                  buffer.scalar_type(), " but the array has dtype ", array.scalar_type());
  TESSERA_REQUIRE(Error, buffer.dim() == 1, op, ": buffer must be 1-D, got shape ",
                  buffer.sizes());
  TESSERA_REQUIRE(Error, buffer.numel() == expected_numel, op, ": buffer has ", buffer.numel(),
                  " elements but the rects need L * sum(h * w) = ", expected_numel);
  TESSERA_REQUIRE(Error, buffer.device() == array.device(), op, ": buffer is on ",
                  buffer.device(), " but the array is on ", array.device());
}

}  // namespace detail
}  // namespace tessera::ops
