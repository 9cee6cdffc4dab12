// CUDA registrations of the probe-window ops (compiled only with a CUDA
// LibTorch): validate, then call the plain kernels of patches_kernel.cu on the
// current stream. Window bounds are checked on the host, which copies the
// (B, 2) positions to the CPU (one small synchronising copy per call).
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "src/ops/cuda/launchers.h"
#include "src/ops/ops_internal.h"

namespace tessera::ops {
namespace {

at::Tensor extract_patches_cuda(const at::Tensor& object, const at::Tensor& positions, int64_t h,
                                int64_t w) {
  constexpr const char* op = "tessera::extract_patches";
  detail::check_patches_args(op, object, "object", 3, positions, h, w);
  TESSERA_REQUIRE(Error, object.is_cuda(), op, ": expected CUDA tensors");
  const c10::cuda::CUDAGuard device_guard(object.device());
  const auto obj = object.contiguous();
  const auto pos = positions.contiguous();
  const gpu::PatchGeometry g{pos.size(0), obj.size(0), obj.size(1), obj.size(2), h, w,
                             detail::channels(obj)};
  auto out = at::empty({g.B, g.L, h, w}, obj.options());
  const auto obj_r = detail::real_view(obj);
  auto out_r = detail::real_view(out);
  const auto pos_cpu = pos.cpu();
  AT_DISPATCH_FLOATING_TYPES(obj_r.scalar_type(), "extract_patches_cuda", [&] {
    detail::compute_windows<scalar_t>(op, pos_cpu, g.H, g.W, h, w);
    C10_CUDA_CHECK(gpu::launch_extract_patches<scalar_t>(
        obj_r.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(), out_r.data_ptr<scalar_t>(), g,
        at::cuda::getCurrentCUDAStream().stream()));
  });
  return out;
}

at::Tensor overlap_add_cuda(const at::Tensor& patches, const at::Tensor& positions, int64_t H,
                            int64_t W) {
  constexpr const char* op = "tessera::overlap_add";
  TESSERA_REQUIRE(Error, patches.defined() && patches.dim() == 4, op,
                  ": patches must have 4 dimensions (B, L, h, w)");
  detail::check_patches_args(op, patches, "patches", 4, positions, patches.size(2),
                             patches.size(3));
  TESSERA_REQUIRE(Error, patches.is_cuda(), op, ": expected CUDA tensors");
  TESSERA_REQUIRE(Error, positions.size(0) == patches.size(0), op, ": patches has ",
                  patches.size(0), " windows but positions has ", positions.size(0), " rows");
  TESSERA_REQUIRE(Error, H >= 0 && W >= 0, op, ": object size must be non-negative");
  const c10::cuda::CUDAGuard device_guard(patches.device());
  const auto pat = patches.contiguous();
  const auto pos = positions.contiguous();
  const gpu::PatchGeometry g{pat.size(0), pat.size(1), H, W, pat.size(2), pat.size(3),
                             detail::channels(pat)};
  auto out = at::empty({g.L, H, W}, pat.options());
  const auto pat_r = detail::real_view(pat);
  auto out_r = detail::real_view(out);
  const auto pos_cpu = pos.cpu();
  AT_DISPATCH_FLOATING_TYPES(pat_r.scalar_type(), "overlap_add_cuda", [&] {
    detail::compute_windows<scalar_t>(op, pos_cpu, H, W, g.h, g.w);
    C10_CUDA_CHECK(gpu::launch_overlap_add<scalar_t>(
        pat_r.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(), out_r.data_ptr<scalar_t>(), g,
        at::cuda::getCurrentCUDAStream().stream()));
  });
  return out;
}

at::Tensor patches_position_grad_cuda(const at::Tensor& grad, const at::Tensor& object,
                                      const at::Tensor& positions) {
  constexpr const char* op = "tessera::_patches_position_grad";
  TESSERA_REQUIRE(Error, grad.defined() && grad.dim() == 4, op,
                  ": grad must have 4 dimensions (B, L, h, w)");
  detail::check_patches_args(op, object, "object", 3, positions, grad.size(2), grad.size(3));
  TESSERA_REQUIRE(Error, object.is_cuda() && grad.device() == object.device(), op,
                  ": expected CUDA tensors on one device");
  TESSERA_REQUIRE(Error, grad.scalar_type() == object.scalar_type(), op, ": grad has dtype ",
                  grad.scalar_type(), " but object has dtype ", object.scalar_type());
  TESSERA_REQUIRE(Error, grad.size(0) == positions.size(0) && grad.size(1) == object.size(0), op,
                  ": grad has shape ", grad.sizes(), " but there are ", positions.size(0),
                  " windows and ", object.size(0), " object slices");
  const c10::cuda::CUDAGuard device_guard(object.device());
  const auto gr = grad.contiguous();
  const auto obj = object.contiguous();
  const auto pos = positions.contiguous();
  const gpu::PatchGeometry g{pos.size(0), obj.size(0), obj.size(1), obj.size(2), gr.size(2),
                             gr.size(3), detail::channels(obj)};
  auto out = at::empty({g.B, 2}, pos.options());
  const auto gr_r = detail::real_view(gr);
  const auto obj_r = detail::real_view(obj);
  const auto pos_cpu = pos.cpu();
  AT_DISPATCH_FLOATING_TYPES(obj_r.scalar_type(), "patches_position_grad_cuda", [&] {
    detail::compute_windows<scalar_t>(op, pos_cpu, g.H, g.W, g.h, g.w);
    C10_CUDA_CHECK(gpu::launch_patches_position_grad<scalar_t>(
        gr_r.data_ptr<scalar_t>(), obj_r.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(),
        out.data_ptr<scalar_t>(), g, at::cuda::getCurrentCUDAStream().stream()));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(tessera, CUDA, m) {
  m.impl("extract_patches", TORCH_FN(extract_patches_cuda));
  m.impl("overlap_add", TORCH_FN(overlap_add_cuda));
  m.impl("_patches_position_grad", TORCH_FN(patches_position_grad_cuda));
}

}  // namespace tessera::ops
