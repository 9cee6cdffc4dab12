#pragma once
// Frames are read, checked, shifted to FFT order and binned in pieces of
// about kFrameChunkBytes, each piece stored at once into one array allocated
// for all of them. Whole-set temporaries would multiply the load's peak: at
// paper scale (16632 patterns of 128², 1.04 GiB) the validity check, the
// two-axis roll and the binning of a full-resolution read each held one to
// three more full-size arrays.
#include <cstdint>
#include <functional>
#include <vector>

namespace tessera {

// Small beside any data set worth chunking (binning a piece holds about four
// times its size in temporaries), large enough for HDF5 to read at full speed
// (64 frames of 128²).
inline constexpr int64_t kFrameChunkBytes = int64_t{4} << 20;

// Calls piece(first_row, indices) for consecutive pieces of `indices`, each of
// at most kFrameChunkBytes of frames of `frame_bytes` (at least one frame).
void for_each_frame_chunk(const std::vector<int64_t>& indices, int64_t frame_bytes,
                          const std::function<void(int64_t, const std::vector<int64_t>&)>& piece);

}  // namespace tessera
