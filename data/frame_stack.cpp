#include "data/frame_stack.h"

#include <algorithm>

namespace tessera::frame_stack {

int64_t frames_per_block(int64_t h, int64_t w) {
  return std::max<int64_t>(1, (int64_t{64} << 20) / std::max<int64_t>(1, h * w * 4));
}

void read_runs(const std::vector<int64_t>& indices, const torch::Tensor& out,
               const std::function<void(int64_t, int64_t, torch::Tensor)>& read_run) {
  const int64_t k = static_cast<int64_t>(indices.size());
  for (int64_t pos = 0; pos < k;) {
    int64_t len = 1;
    while (pos + len < k && indices[static_cast<size_t>(pos + len)] == indices[static_cast<size_t>(pos + len - 1)] + 1)
      ++len;
    read_run(indices[static_cast<size_t>(pos)], len, out.narrow(0, pos, len));
    pos += len;
  }
}

}  // namespace tessera::frame_stack
