#pragma once
// What the CXI and 4D-STEM readers share: a stack of frames (n, h, w) on
// disk, read by runs of consecutive indices (one HDF5 hyperslab each, however
// the indices are ordered), in blocks of a bounded size for whole-file scans.
// Each reader says how to read one run and checks what was read.
#include <cstdint>
#include <functional>
#include <vector>

#include <torch/torch.h>

namespace tessera::frame_stack {

// Frames per block so that one block of float32 is about 64 MiB.
int64_t frames_per_block(int64_t h, int64_t w);

// Fills out (k, h, w), k = indices.size(), calling read_run(first, length,
// rows) once per run of consecutive indices, rows being out's rows for it.
void read_runs(const std::vector<int64_t>& indices, const torch::Tensor& out,
               const std::function<void(int64_t first, int64_t length, torch::Tensor rows)>& read_run);

}  // namespace tessera::frame_stack
