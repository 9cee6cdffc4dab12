// CUDA kernels of pack_regions / unpack_regions: one launch per rect, in rect
// order on the stream, so that overlapping rects behave as on the CPU (applied
// one after the other) without atomics.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "src/ops/cuda/launchers.h"

namespace tessera::ops::gpu {
namespace {

constexpr int kThreads = 256;

inline int grid_for(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t(1) << 20)));
}

// Offset in the array of element idx of the rect's (L, h, w*C) block.
__device__ __forceinline__ int64_t array_offset(int64_t idx, const RegionGeometry& g) {
  const int64_t row = g.w * g.C;
  const int64_t k = idx % row;
  const int64_t t = idx / row;
  const int64_t i = t % g.h, l = t / g.h;
  return ((l * g.H + g.y0 + i) * g.W + g.x0) * g.C + k;
}

template <typename T>
__global__ void pack_kernel(const T* __restrict__ array, T* __restrict__ block, RegionGeometry g) {
  const int64_t total = g.L * g.h * g.w * g.C;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x)
    block[idx] = array[array_offset(idx, g)];
}

template <typename T>
__global__ void unpack_kernel(T* __restrict__ array, const T* __restrict__ block, RegionGeometry g,
                              bool accumulate) {
  const int64_t total = g.L * g.h * g.w * g.C;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    T* dst = array + array_offset(idx, g);
    if (accumulate)
      *dst += block[idx];
    else
      *dst = block[idx];
  }
}

}  // namespace

template <typename T>
cudaError_t launch_pack_region(const T* array, T* block, const RegionGeometry& g,
                               cudaStream_t stream) {
  const int64_t total = g.L * g.h * g.w * g.C;
  if (total == 0) return cudaSuccess;
  pack_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(array, block, g);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_unpack_region(T* array, const T* block, const RegionGeometry& g,
                                 bool accumulate, cudaStream_t stream) {
  const int64_t total = g.L * g.h * g.w * g.C;
  if (total == 0) return cudaSuccess;
  unpack_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(array, block, g, accumulate);
  return cudaGetLastError();
}

template cudaError_t launch_pack_region<float>(const float*, float*, const RegionGeometry&,
                                               cudaStream_t);
template cudaError_t launch_pack_region<double>(const double*, double*, const RegionGeometry&,
                                                cudaStream_t);
template cudaError_t launch_unpack_region<float>(float*, const float*, const RegionGeometry&, bool,
                                                 cudaStream_t);
template cudaError_t launch_unpack_region<double>(double*, const double*, const RegionGeometry&,
                                                  bool, cudaStream_t);

}  // namespace tessera::ops::gpu
