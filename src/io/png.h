#pragma once
// 8-bit greyscale PNG previews of 2-D images, written atomically.
#include <string>

#include <torch/torch.h>

namespace tessera {

// image: (H, W) real. Values are mapped linearly from [lo, hi] to 0..255;
// with lo == hi the 0.5 and 99.5 percentiles are used (robust to hot pixels).
void write_png(const std::string& path, const torch::Tensor& image, double lo = 0, double hi = 0);

}  // namespace tessera
