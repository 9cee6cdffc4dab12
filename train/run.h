#pragma once
// A complete reconstruction run as the command line does it: progress lines,
// checkpoints, result file, PNG previews, CSV metrics, resume, divergence.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "src/image_quality.h"
#include "train/reconstruction.h"

namespace tessera {

struct RunOptions {
  std::string output = "result.h5";  // result file; previews and CSV are written beside it
  std::string resume;                // a result file to continue from
  bool previews = true;
  // Replace an existing --output that is not a tessera result (train/output_location.h).
  bool overwrite = false;
  // Regularisers and denoisers added to the reconstruction (models/priors/),
  // in this order; recorded in the result file's settings text.
  std::vector<std::pair<std::shared_ptr<Prior>, PriorSettings>> priors;
  // The command's complete settings as a run file (TOML), stored in the
  // result so that `tessera reconstruct --config RESULT` reruns it; empty: none.
  std::string run_file;
};

struct RunSummary {
  int iterations = 0;
  double final_loss = 0;
  double seconds = 0;                      // wall time of all iterations
  std::optional<Alignment> score;          // against the ground truth, when the file has one
  // The object's mean phase step [y, x] (rad/px) over the scan's interior
  // (src/image_quality.h): a phase ramp the data do not require shows here.
  std::optional<std::pair<double, double>> phase_gradient;
  std::vector<std::string> files;          // everything written
};

// Output paths derived from the result path: "<stem>_object_phase.png", ...
std::string sibling_path(const std::string& result, const std::string& suffix);

RunSummary run_reconstruction(ScanProblem problem, const ReconstructionSettings& settings, const RunOptions& options,
                              std::shared_ptr<comm::Communicator> comm = nullptr);

// The well-lit interior of a scan: the scanned region less a quarter window
// on each side, where every pixel is seen by several probe positions.
std::optional<Rect> scan_interior(const ScanGeometry& scan);

// Correlation of one slice of the reconstructed object with the same slice of
// the truth, over the well-illuminated interior of the scan (src/image_quality.h).
std::optional<Alignment> score_against_truth(const ScanProblem& problem, const torch::Tensor& object,
                                             int64_t slice = 0);

}  // namespace tessera
