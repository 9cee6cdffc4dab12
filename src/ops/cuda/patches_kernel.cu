// CUDA kernels of extract_patches, overlap_add and the positions gradient
// (see launchers.h and the CPU kernels in ops/cpu/patches_kernel.cpp, which
// compute the same stencil).
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

template <typename T>
struct DeviceWindow {
  int64_t y0, x0;
  T fy, fx;
};

template <typename T>
__device__ __forceinline__ DeviceWindow<T> load_window(const T* __restrict__ positions,
                                                       int64_t b) {
  const T y = positions[2 * b], x = positions[2 * b + 1];
  const T fy0 = floor(y), fx0 = floor(x);
  return {static_cast<int64_t>(fy0), static_cast<int64_t>(fx0), y - fy0, x - fx0};
}

template <typename T>
__global__ void extract_kernel(const T* __restrict__ obj, const T* __restrict__ positions,
                               T* __restrict__ out, PatchGeometry g) {
  const int64_t row = g.w * g.C, obj_row = g.W * g.C;
  const int64_t total = g.B * g.L * g.h * row;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t k = idx % row;
    int64_t t = idx / row;
    const int64_t i = t % g.h;
    t /= g.h;
    const int64_t l = t % g.L, b = t / g.L;
    const DeviceWindow<T> win = load_window(positions, b);
    const T* r0 = obj + ((l * g.H + win.y0 + i) * g.W + win.x0) * g.C + k;
    const T* r1 = r0 + obj_row;
    const T w00 = (1 - win.fy) * (1 - win.fx), w01 = (1 - win.fy) * win.fx;
    const T w10 = win.fy * (1 - win.fx), w11 = win.fy * win.fx;
    out[idx] = w00 * r0[0] + w01 * r0[g.C] + w10 * r1[0] + w11 * r1[g.C];
  }
}

template <typename T>
__global__ void overlap_add_kernel(const T* __restrict__ patches, const T* __restrict__ positions,
                                   T* __restrict__ out, PatchGeometry g) {
  const int64_t row = g.w * g.C, obj_row = g.W * g.C;
  const int64_t total = g.B * g.L * g.h * row;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t k = idx % row;
    int64_t t = idx / row;
    const int64_t i = t % g.h;
    t /= g.h;
    const int64_t l = t % g.L, b = t / g.L;
    const DeviceWindow<T> win = load_window(positions, b);
    const T v = patches[idx];
    T* o0 = out + ((l * g.H + win.y0 + i) * g.W + win.x0) * g.C + k;
    T* o1 = o0 + obj_row;
    const T vy0 = (1 - win.fy) * v, vy1 = win.fy * v;
    atomicAdd(o0, (1 - win.fx) * vy0);
    if (win.fx != T(0)) atomicAdd(o0 + g.C, win.fx * vy0);
    if (win.fy != T(0)) {
      atomicAdd(o1, (1 - win.fx) * vy1);
      if (win.fx != T(0)) atomicAdd(o1 + g.C, win.fx * vy1);
    }
  }
}

template <typename T>
__global__ void position_grad_kernel(const T* __restrict__ grad, const T* __restrict__ obj,
                                     const T* __restrict__ positions, T* __restrict__ out,
                                     PatchGeometry g) {
  __shared__ double sy[kThreads];
  __shared__ double sx[kThreads];
  const int64_t row = g.w * g.C, obj_row = g.W * g.C;
  const int64_t per_window = g.L * g.h * row;
  for (int64_t b = blockIdx.x; b < g.B; b += gridDim.x) {
    const DeviceWindow<T> win = load_window(positions, b);
    const T cy0 = 1 - win.fy, cy1 = win.fy, cx0 = 1 - win.fx, cx1 = win.fx;
    double gy = 0, gx = 0;
    const T* gb = grad + b * per_window;
    for (int64_t e = threadIdx.x; e < per_window; e += blockDim.x) {
      const int64_t k = e % row;
      const int64_t t = e / row;
      const int64_t i = t % g.h, l = t / g.h;
      const T* r0 = obj + ((l * g.H + win.y0 + i) * g.W + win.x0) * g.C + k;
      const T* r1 = r0 + obj_row;
      const T a = r0[0], bb = r0[g.C], c = r1[0], d = r1[g.C];
      const T ge = gb[e];
      gy += static_cast<double>(ge * (cx0 * (c - a) + cx1 * (d - bb)));
      gx += static_cast<double>(ge * (cy0 * (bb - a) + cy1 * (d - c)));
    }
    sy[threadIdx.x] = gy;
    sx[threadIdx.x] = gx;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) {
        sy[threadIdx.x] += sy[threadIdx.x + s];
        sx[threadIdx.x] += sx[threadIdx.x + s];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      out[2 * b] = static_cast<T>(sy[0]);
      out[2 * b + 1] = static_cast<T>(sx[0]);
    }
    __syncthreads();
  }
}

}  // namespace

template <typename T>
cudaError_t launch_extract_patches(const T* object, const T* positions, T* out,
                                   const PatchGeometry& g, cudaStream_t stream) {
  const int64_t total = g.B * g.L * g.h * g.w * g.C;
  if (total == 0) return cudaSuccess;
  extract_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(object, positions, out, g);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_overlap_add(const T* patches, const T* positions, T* out,
                               const PatchGeometry& g, cudaStream_t stream) {
  const int64_t out_numel = g.L * g.H * g.W * g.C;
  if (out_numel == 0) return cudaSuccess;
  cudaError_t err = cudaMemsetAsync(out, 0, sizeof(T) * out_numel, stream);
  if (err != cudaSuccess) return err;
  const int64_t total = g.B * g.L * g.h * g.w * g.C;
  if (total == 0) return cudaSuccess;
  overlap_add_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(patches, positions, out, g);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_patches_position_grad(const T* grad, const T* object, const T* positions,
                                         T* out, const PatchGeometry& g, cudaStream_t stream) {
  if (g.B == 0) return cudaSuccess;
  const int blocks = static_cast<int>(std::min<int64_t>(g.B, int64_t(1) << 20));
  position_grad_kernel<T><<<blocks, kThreads, 0, stream>>>(grad, object, positions, out, g);
  return cudaGetLastError();
}

#define TESSERA_INSTANTIATE(T)                                                               \
  template cudaError_t launch_extract_patches<T>(const T*, const T*, T*, const PatchGeometry&, \
                                                 cudaStream_t);                              \
  template cudaError_t launch_overlap_add<T>(const T*, const T*, T*, const PatchGeometry&,     \
                                             cudaStream_t);                                  \
  template cudaError_t launch_patches_position_grad<T>(const T*, const T*, const T*, T*,       \
                                                       const PatchGeometry&, cudaStream_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::ops::gpu
