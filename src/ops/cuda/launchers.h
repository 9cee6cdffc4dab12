#pragma once
// Launchers of the plain CUDA kernels of src/ops (no torch headers here or in
// the .cu files, so that nvcc builds them against any LibTorch). Every pointer
// is device memory of a contiguous real view: complex data is C = 2 interleaved
// channels, real data C = 1. Positions are (B, 2) rows [y, x] of the same real
// type; the launchers assume the windows were validated on the host
// (ops_internal.h compute_windows), i.e. every bilinear stencil is inside the
// object. Each launcher enqueues on `stream` and returns cudaGetLastError().
// Instantiated for T = float and T = double.
#include <cuda_runtime.h>

#include <cstdint>

#include "src/ops/window_loss_kernels.h"

namespace tessera::ops::gpu {

struct PatchGeometry {
  int64_t B;  // windows
  int64_t L;  // object slices
  int64_t H, W;  // object size
  int64_t h, w;  // window size
  int64_t C;  // interleaved real channels: 2 complex, 1 real
};

// out (B, L, h, w, C) = bilinear windows of object (L, H, W, C).
template <typename T>
cudaError_t launch_extract_patches(const T* object, const T* positions, T* out,
                                   const PatchGeometry& g, cudaStream_t stream);

// out (L, H, W, C) = sum_b S_b^T patches_b (zeroes out first; atomicAdd, so the
// summation order, hence the last bits, may vary between runs).
template <typename T>
cudaError_t launch_overlap_add(const T* patches, const T* positions, T* out,
                               const PatchGeometry& g, cudaStream_t stream);

// out (B, 2) = sum over (l, i, j, c) of grad * d(S_b object)/d(y_b, x_b); one
// block per window, deterministic.
template <typename T>
cudaError_t launch_patches_position_grad(const T* grad, const T* object, const T* positions,
                                         T* out, const PatchGeometry& g, cudaStream_t stream);

// One rect [y0, x0, h, w] of array (L, H, W, C) <-> its contiguous block
// (L, h, w, C) of the packed buffer (`block` points at the block's start).
struct RegionGeometry {
  int64_t L, H, W, C;
  int64_t y0, x0, h, w;
};

template <typename T>
cudaError_t launch_pack_region(const T* array, T* block, const RegionGeometry& g,
                               cudaStream_t stream);

// accumulate: array += block, else array = block, inside the rect.
template <typename T>
cudaError_t launch_unpack_region(T* array, const T* block, const RegionGeometry& g,
                                 bool accumulate, cudaStream_t stream);

// tessera::window_far_field_loss (window_loss_kernels.h): one thread per
// output element, each running the element step the CPU kernel runs.
template <typename T>
cudaError_t launch_window_exit_waves(const WindowLossArgs<T>& a, cudaStream_t stream);
template <typename T>
cudaError_t launch_window_far_field_pixels(const WindowLossArgs<T>& a, PixelForm form, cudaStream_t stream);
// Those of a.grad_windows, a.grad_probe that are set.
template <typename T>
cudaError_t launch_window_gradients(const WindowLossArgs<T>& a, cudaStream_t stream);

}  // namespace tessera::ops::gpu
