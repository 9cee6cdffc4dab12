#pragma once
// The measured side of a fused data loss, validated once for every operator
// that reads it: the CPU fused operators (models/far_field_loss.h) and
// tessera::window_far_field_loss (window_loss.h).
//
//   measured (N, h, w) real, the model's precision and device; pattern b is
//            frame rows[b] (rows: (B) int64), or frame b without rows (N = B)
//   valid    bool (h, w) or (N, h, w), true = pixel used; or undefined
#include <torch/torch.h>

namespace tessera::ops {

struct LossMeasurement {
  torch::Tensor measured;    // (N, h, w) contiguous
  torch::Tensor keep;        // (h, w) or (N, h, w) contiguous in the working precision, 1 = used; or undefined
  int64_t keep_stride = 0;   // elements between consecutive frames' masks (0: one shared mask)
  torch::Tensor rows;        // (B) int64 contiguous on the device, every row inside the frames; or undefined
};

// Throws tessera::Error naming `op` and the fault. real_type and device are
// the model's (the waves' or the probe's); a rows tensor on another device is
// moved (with one small copy to check its bounds).
LossMeasurement check_loss_measurement(const char* op, int64_t B, int64_t h, int64_t w, torch::ScalarType real_type,
                                       const torch::Device& device, const torch::Tensor& measured,
                                       const torch::Tensor& valid, const torch::Tensor& rows);

}  // namespace tessera::ops
