// CPU kernels of tessera::pack_regions, tessera::unpack_regions and
// tessera::unpack_regions_. Each rect row is one contiguous run of w*C reals
// (C = 2 for complex, 1 for real); rects are processed in order, the rows of
// one rect in parallel, so that overlapping rects behave as if applied one
// after the other (the last one wins in copy mode).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

#include "src/ops/ops_internal.h"

namespace tessera::ops {
namespace {

// Rows per task: at least ~16k reals of work each.
int64_t row_grain(int64_t row) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row)); }

template <typename T>
void pack_kernel(const T* __restrict__ array, T* __restrict__ buffer,
                 const detail::RectTable& table, int64_t L, int64_t H, int64_t W, int64_t C) {
  for (int64_t r = 0; r < table.count(); ++r) {
    const int64_t y0 = table.rects[4 * r], x0 = table.rects[4 * r + 1];
    const int64_t h = table.rects[4 * r + 2], w = table.rects[4 * r + 3];
    const int64_t row = w * C;
    if (h == 0 || w == 0 || L == 0) continue;
    T* block = buffer + table.offsets[r] * C;
    at::parallel_for(0, L * h, row_grain(row), [&](int64_t begin, int64_t end) {
      for (int64_t li = begin; li < end; ++li) {
        const int64_t l = li / h, i = li % h;
        std::memcpy(block + li * row, array + ((l * H + y0 + i) * W + x0) * C, sizeof(T) * row);
      }
    });
  }
}

template <typename T>
void unpack_kernel(T* __restrict__ array, const T* __restrict__ buffer,
                   const detail::RectTable& table, int64_t L, int64_t H, int64_t W, int64_t C,
                   bool accumulate) {
  for (int64_t r = 0; r < table.count(); ++r) {
    const int64_t y0 = table.rects[4 * r], x0 = table.rects[4 * r + 1];
    const int64_t h = table.rects[4 * r + 2], w = table.rects[4 * r + 3];
    const int64_t row = w * C;
    if (h == 0 || w == 0 || L == 0) continue;
    const T* block = buffer + table.offsets[r] * C;
    at::parallel_for(0, L * h, row_grain(row), [&](int64_t begin, int64_t end) {
      for (int64_t li = begin; li < end; ++li) {
        const int64_t l = li / h, i = li % h;
        T* __restrict__ dst = array + ((l * H + y0 + i) * W + x0) * C;
        const T* __restrict__ src = block + li * row;
        if (accumulate) {
          for (int64_t k = 0; k < row; ++k) dst[k] += src[k];
        } else {
          std::memcpy(dst, src, sizeof(T) * row);
        }
      }
    });
  }
}

at::Tensor pack_regions_cpu(const at::Tensor& array, const at::Tensor& rects) {
  constexpr const char* op = "tessera::pack_regions";
  detail::check_halo_array(op, array, "array");
  TESSERA_REQUIRE(Error, array.device().is_cpu(), op, ": expected a CPU array");
  const auto table = detail::check_rects(op, array, rects);
  const auto arr = array.contiguous();
  auto buffer = at::empty({table.offsets.back()}, arr.options());
  if (buffer.numel() == 0) return buffer;
  const auto arr_r = detail::real_view(arr);
  auto buf_r = detail::real_view(buffer);
  AT_DISPATCH_FLOATING_TYPES(arr_r.scalar_type(), "pack_regions_cpu", [&] {
    pack_kernel<scalar_t>(arr_r.data_ptr<scalar_t>(), buf_r.data_ptr<scalar_t>(), table,
                          arr.size(0), arr.size(1), arr.size(2), detail::channels(arr));
  });
  return buffer;
}

void unpack_impl(const char* op, const at::Tensor& array, const at::Tensor& buffer,
                 const at::Tensor& rects, bool accumulate) {
  detail::check_halo_array(op, array, "array");
  TESSERA_REQUIRE(Error, array.device().is_cpu(), op, ": expected a CPU array");
  const auto table = detail::check_rects(op, array, rects);
  detail::check_halo_buffer(op, array, buffer, table.offsets.back());
  if (buffer.numel() == 0) return;
  // Write into a contiguous tensor; copy back if the array is strided.
  const bool direct = array.is_contiguous();
  at::Tensor arr = direct ? array : array.contiguous();
  const auto buf = buffer.contiguous();
  auto arr_r = detail::real_view(arr);
  const auto buf_r = detail::real_view(buf);
  AT_DISPATCH_FLOATING_TYPES(arr_r.scalar_type(), "unpack_regions_cpu", [&] {
    unpack_kernel<scalar_t>(arr_r.data_ptr<scalar_t>(), buf_r.data_ptr<scalar_t>(), table,
                            arr.size(0), arr.size(1), arr.size(2), detail::channels(arr),
                            accumulate);
  });
  if (!direct) array.copy_(arr);
}

void unpack_regions_inplace_cpu(const at::Tensor& array, const at::Tensor& buffer,
                                const at::Tensor& rects, bool accumulate) {
  unpack_impl("tessera::unpack_regions_", array, buffer, rects, accumulate);
}

at::Tensor unpack_regions_cpu(const at::Tensor& array, const at::Tensor& buffer,
                              const at::Tensor& rects, bool accumulate) {
  constexpr const char* op = "tessera::unpack_regions";
  detail::check_halo_array(op, array, "array");
  auto out = array.clone(at::MemoryFormat::Contiguous);
  unpack_impl(op, out, buffer, rects, accumulate);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(tessera, CPU, m) {
  m.impl("pack_regions", TORCH_FN(pack_regions_cpu));
  m.impl("unpack_regions", TORCH_FN(unpack_regions_cpu));
  m.impl("unpack_regions_", TORCH_FN(unpack_regions_inplace_cpu));
}

}  // namespace tessera::ops
