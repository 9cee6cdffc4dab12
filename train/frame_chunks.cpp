#include "train/frame_chunks.h"

#include <algorithm>

namespace tessera {

void for_each_frame_chunk(const std::vector<int64_t>& indices, int64_t frame_bytes,
                          const std::function<void(int64_t, const std::vector<int64_t>&)>& piece) {
  const int64_t n = static_cast<int64_t>(indices.size());
  const int64_t per = std::max<int64_t>(1, kFrameChunkBytes / std::max<int64_t>(1, frame_bytes));
  for (int64_t b = 0; b < n; b += per) {
    const int64_t e = std::min(n, b + per);
    piece(b, std::vector<int64_t>(indices.begin() + b, indices.begin() + e));
  }
}

}  // namespace tessera
