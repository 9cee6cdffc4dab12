// CUDA registrations of the halo ops (compiled only with a CUDA LibTorch). The
// rects are validated on the host (copied there if they live on the GPU): the
// buffer size depends on them anyway. One kernel launch per rect, in order.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "src/ops/cuda/launchers.h"
#include "src/ops/ops_internal.h"

namespace tessera::ops {
namespace {

gpu::RegionGeometry region(const detail::RectTable& table, int64_t r, const at::Tensor& array) {
  return gpu::RegionGeometry{array.size(0),         array.size(1),         array.size(2),
                             detail::channels(array), table.rects[4 * r],  table.rects[4 * r + 1],
                             table.rects[4 * r + 2], table.rects[4 * r + 3]};
}

at::Tensor pack_regions_cuda(const at::Tensor& array, const at::Tensor& rects) {
  constexpr const char* op = "tessera::pack_regions";
  detail::check_halo_array(op, array, "array");
  TESSERA_REQUIRE(Error, array.is_cuda(), op, ": expected a CUDA array");
  const auto table = detail::check_rects(op, array, rects);
  const c10::cuda::CUDAGuard device_guard(array.device());
  const auto arr = array.contiguous();
  auto buffer = at::empty({table.offsets.back()}, arr.options());
  if (buffer.numel() == 0) return buffer;
  const auto arr_r = detail::real_view(arr);
  auto buf_r = detail::real_view(buffer);
  const int64_t C = detail::channels(arr);
  const auto stream = at::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(arr_r.scalar_type(), "pack_regions_cuda", [&] {
    for (int64_t r = 0; r < table.count(); ++r)
      C10_CUDA_CHECK(gpu::launch_pack_region<scalar_t>(
          arr_r.data_ptr<scalar_t>(), buf_r.data_ptr<scalar_t>() + table.offsets[r] * C,
          region(table, r, arr), stream));
  });
  return buffer;
}

void unpack_impl(const char* op, const at::Tensor& array, const at::Tensor& buffer,
                 const at::Tensor& rects, bool accumulate) {
  detail::check_halo_array(op, array, "array");
  TESSERA_REQUIRE(Error, array.is_cuda(), op, ": expected a CUDA array");
  const auto table = detail::check_rects(op, array, rects);
  detail::check_halo_buffer(op, array, buffer, table.offsets.back());
  if (buffer.numel() == 0) return;
  const c10::cuda::CUDAGuard device_guard(array.device());
  const bool direct = array.is_contiguous();
  at::Tensor arr = direct ? array : array.contiguous();
  const auto buf = buffer.contiguous();
  auto arr_r = detail::real_view(arr);
  const auto buf_r = detail::real_view(buf);
  const int64_t C = detail::channels(arr);
  const auto stream = at::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(arr_r.scalar_type(), "unpack_regions_cuda", [&] {
    for (int64_t r = 0; r < table.count(); ++r)
      C10_CUDA_CHECK(gpu::launch_unpack_region<scalar_t>(
          arr_r.data_ptr<scalar_t>(), buf_r.data_ptr<scalar_t>() + table.offsets[r] * C,
          region(table, r, arr), accumulate, stream));
  });
  if (!direct) array.copy_(arr);
}

void unpack_regions_inplace_cuda(const at::Tensor& array, const at::Tensor& buffer,
                                 const at::Tensor& rects, bool accumulate) {
  unpack_impl("tessera::unpack_regions_", array, buffer, rects, accumulate);
}

at::Tensor unpack_regions_cuda(const at::Tensor& array, const at::Tensor& buffer,
                               const at::Tensor& rects, bool accumulate) {
  constexpr const char* op = "tessera::unpack_regions";
  detail::check_halo_array(op, array, "array");
  auto out = array.clone(at::MemoryFormat::Contiguous);
  unpack_impl(op, out, buffer, rects, accumulate);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(tessera, CUDA, m) {
  m.impl("pack_regions", TORCH_FN(pack_regions_cuda));
  m.impl("unpack_regions", TORCH_FN(unpack_regions_cuda));
  m.impl("unpack_regions_", TORCH_FN(unpack_regions_inplace_cuda));
}

}  // namespace tessera::ops
