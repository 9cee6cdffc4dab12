#pragma once
// Tile-boundary exchange buffers: pack strided halo regions of a tile's working
// array into one contiguous buffer (what goes on the wire), and add (or copy)
// such a buffer back into regions of another array. Registered with the
// dispatcher as tessera::pack_regions / tessera::unpack_regions (CPU and CUDA).
//
// Conventions
//   array   (L, H, W) complex or real, float or double.
//   rects   (R, 4) int64 on the same device as the array, rows [y0, x0, h, w],
//           each inside the array.
//   buffer  1-D, same dtype as the array, length L * sum(h * w); rect r occupies
//           one contiguous (L, h, w) block after the blocks of rects 0..r-1.
//
// Implementation notes: rects are applied in order (on CPU and CUDA alike), so
// with overlapping rects the last one wins in copy mode; the gradient of copy
// mode assumes non-overlapping rects. The rects are validated on the host (a
// small copy when they live on the GPU); a bad rect throws tessera::DataError
// naming it. rects may also be on the CPU for a CUDA array.
#include <torch/torch.h>

namespace tessera::ops {

torch::Tensor pack_regions(const torch::Tensor& array, const torch::Tensor& rects);

// Out of place and differentiable: returns array with each rect replaced by
// (accumulate=false) or increased by (accumulate=true) its block of buffer.
torch::Tensor unpack_regions(const torch::Tensor& array, const torch::Tensor& buffer,
                             const torch::Tensor& rects, bool accumulate);

// In place, no autograd: the form the halo exchange uses on gradients.
void unpack_regions_(torch::Tensor& array, const torch::Tensor& buffer, const torch::Tensor& rects,
                     bool accumulate);

// Number of elements of the packed buffer for rects (R, 4) and L slices.
int64_t packed_size(const torch::Tensor& rects, int64_t slices);

}  // namespace tessera::ops
