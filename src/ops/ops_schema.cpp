// The one TORCH_LIBRARY block of the `tessera` operator namespace: every op's
// schema. Kernels are registered elsewhere with TORCH_LIBRARY_IMPL:
//   ops/cpu/*_kernel.cpp      CPU
//   ops/cuda/*_cuda.cpp       CUDA (only with a CUDA LibTorch)
//   ops/autograd/*.cpp        Autograd
// Other parts of the tree that add ops to this namespace must use
// TORCH_LIBRARY_FRAGMENT(tessera, m), never a second TORCH_LIBRARY(tessera, m).
#include <torch/library.h>

TORCH_LIBRARY(tessera, m) {
  // Probe windows (src/ops/patches.h).
  m.def("extract_patches(Tensor object, Tensor positions, int h, int w) -> Tensor");
  m.def("overlap_add(Tensor patches, Tensor positions, int H, int W) -> Tensor");
  // Backward helper: positions gradient of extract_patches (and of overlap_add).
  m.def("_patches_position_grad(Tensor grad, Tensor object, Tensor positions) -> Tensor");

  // Halo buffers (src/ops/halo.h).
  m.def("pack_regions(Tensor array, Tensor rects) -> Tensor");
  m.def("unpack_regions(Tensor array, Tensor buffer, Tensor rects, bool accumulate) -> Tensor");
  m.def("unpack_regions_(Tensor(a!) array, Tensor buffer, Tensor rects, bool accumulate) -> ()");

  // The data loss of a batch of object windows with its gradients (src/ops/window_loss.h).
  m.def("window_far_field_loss(Tensor windows, Tensor probe, Tensor measured, Tensor? valid, Tensor? rows, "
        "str loss, float weight, bool gradients) -> (Tensor, Tensor, Tensor)");
}
