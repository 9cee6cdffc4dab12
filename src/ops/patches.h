#pragma once
// Probe-window extraction from the object and its adjoint (overlap-add), the
// operator S_j of the paper and S_j^T. Registered with the dispatcher as
// tessera::extract_patches / tessera::overlap_add (CPU and CUDA kernels) and
// differentiable through autograd.
//
// Conventions
//   object    (L, H, W) complex or real, float or double; L = object slices.
//   positions (B, 2) real, same precision as the object, [y, x] of the window's
//             top-left corner in object pixels. Fractional parts are handled by
//             bilinear interpolation, so a window reads rows floor(y) .. floor(y)+h
//             (h+1 rows) and likewise columns: callers must keep
//             0 <= floor(y) and floor(y) + h + 1 <= H (same for x and W).
//   patches   (B, L, h, w), same dtype as the object.
//
// Implementation notes (src/ops/{cpu,cuda,autograd}): inputs of any strides are
// accepted (made contiguous); a window outside the object throws
// tessera::DataError naming the window, its position and the object size (on
// CUDA this check copies the (B, 2) positions to the host). The positions
// gradient is the derivative of the bilinear weights (one-sided at integer
// positions, where bilinear interpolation has a kink); for complex data it is
// Re(conj(grad) * d(patches)/d(position)) summed over the window. The CPU
// overlap_add is deterministic (no atomics); the CUDA one uses atomicAdd.
// Double backward is not supported.
#include <torch/torch.h>

namespace tessera::ops {

// patches[b, l, i, j] = sum over the 4 bilinear neighbours of object[l, y_b + i, x_b + j].
// Differentiable with respect to object and positions.
torch::Tensor extract_patches(const torch::Tensor& object, const torch::Tensor& positions,
                              int64_t h, int64_t w);

// Adjoint of extract_patches: object[l, :, :] = sum_b S_b^T patches[b, l].
// Differentiable with respect to patches and positions.
torch::Tensor overlap_add(const torch::Tensor& patches, const torch::Tensor& positions,
                          int64_t H, int64_t W);

// The positions gradient of extract_patches for grad = dL/d(patches) (B, L, h, w):
// (B, 2), Re(conj(grad) d(patches)/d(y, x)) summed over each window.
torch::Tensor patches_position_grad(const torch::Tensor& grad, const torch::Tensor& object,
                                    const torch::Tensor& positions);

// For fused CPU operators that hold a few windows at a time in cache instead
// of materialising all B patches: validated like extract_patches (CPU
// tensors only); extract(begin, end, out) writes windows [begin, end) of
// every slice to out, (end - begin, L, h, w) contiguous in the object's
// dtype, exactly as extract_patches would. Not differentiable; thread-safe.
class CpuPatchExtractor {
 public:
  CpuPatchExtractor(const torch::Tensor& object, const torch::Tensor& positions, int64_t h, int64_t w);
  void extract(int64_t begin, int64_t end, void* out) const;

 private:
  friend class CpuOverlapAdder;
  struct State;
  std::shared_ptr<const State> state_;
};

// The adjoint of an extractor's windows, for the same fused operators:
// overlap_add's output computed band by band of output rows (all L slices
// stacked as L * H rows), so that threads that already hold the window
// gradients can share the bands out as they come free. Bands are
// independent, and each output element sums its windows in a fixed order:
// the result is overlap_add's, bit for bit, for any thread count or band
// order. add_band(band, patches, out) sets that band of out (L, H, W) from
// patches (B, L, h, w), both contiguous in the extractor's object dtype.
// Thread-safe.
class CpuOverlapAdder {
 public:
  explicit CpuOverlapAdder(const CpuPatchExtractor& windows);
  int64_t bands() const;
  void add_band(int64_t band, const void* patches, void* out) const;

 private:
  struct State;
  std::shared_ptr<const State> state_;
};

}  // namespace tessera::ops
