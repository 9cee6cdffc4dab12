#pragma once
// A data set as the engine sees it: the whole scan geometry (small) and a way
// to read any subset of frames (large, read per tile only).
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "data/cxi_writer.h"
#include "data/scan_data.h"
#include "src/geometry.h"

namespace tessera {

struct ScanProblem {
  std::string source;  // file name, for messages
  ExperimentGeometry experiment;
  ScanGeometry scan;
  torch::Tensor valid_mask;  // (h, w) bool, detector order, true = pixel used
  std::optional<torch::Tensor> probe_guess;  // (M, h, w) complex
  std::optional<GroundTruth> truth;
  // Frames of the given global indices, (n, h, w) float32 as measured (detector order).
  std::function<torch::Tensor(const std::vector<int64_t>&)> read_frames;

  static ScanProblem from_cxi(const std::string& path);
  static ScanProblem from_content(CxiContent content, std::string source = "memory");
};

}  // namespace tessera
