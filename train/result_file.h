#pragma once
// The reconstruction result file (HDF5). Layout:
//   /reconstruction/object         (L, H, W) complex64   object, every slice
//   /reconstruction/probe          (M, h, w) complex64   probe modes
//   /reconstruction/positions_px   (N, 2) float64        window corners [y, x] in object pixels
//   /reconstruction/pixel_size_m   (2,) float64          sample-plane pixel [y, x]
//   /reconstruction/loss           (iterations,) float64 data loss per pattern
//   /reconstruction/seconds        (iterations,) float64 wall time per iteration
//   /reconstruction/iteration      scalar int            completed iterations
//   /reconstruction/settings       string                every setting, "key = value" lines
//   /reconstruction/run_file       string                optional: the tool's complete settings as a run
//                                                        file (TOML; train/cli/option_table.h)
//   /reconstruction/optimizer_state/<tile>/<object|probe>  uint8, serialised torch::optim state (for --resume)
//   /reconstruction/optimizer_state/scan/positions      the same for refined positions (position correction)
//   /reconstruction/frc/...        optional: Fourier ring correlation of two half-scan reconstructions
//                                  (frequency_per_m, frc, threshold, ring_pixels per ring; resolution_m,
//                                  sampling_limited, region [y0, x0, h, w], alignment [shift_y, shift_x,
//                                  phase_offset, ramp_y, ramp_x]; attribute "halves": how the scan was split)
//   /entry_1/image_1/data          soft link to the object (CXI readers find the image)
//   root attributes: program = "tessera", version, data_file, data_fingerprint
// Written atomically (temporary file + rename): an interrupted write never
// replaces a good result.
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "src/frc.h"
#include "train/reconstruction.h"

namespace tessera {

struct ReconstructionResult {
  torch::Tensor object, probe, positions_px, pixel_size_m;
  std::vector<double> loss, seconds;
  int iteration = 0;
  std::string settings, data_file;
  std::string data_fingerprint;  // train/resume_check.h; empty in files written before it existed
  OptimizerStates optimizer_states;
  std::optional<FrcCurve> frc;  // half-scan FRC (tessera reconstruct --frc)
  std::string frc_halves;       // how the scan was split for it
  std::string run_file;         // the command's settings as a run file (TOML); empty: none stored
};

void write_result(const std::string& path, const ReconstructionResult& result);
ReconstructionResult read_result(const std::string& path);
// True when path is an HDF5 file that tessera wrote as a result (root attribute
// program = "tessera"); false for anything else, unreadable files included.
bool is_tessera_result(const std::string& path);
// /reconstruction/run_file of a result, without reading its arrays; empty
// when the result holds none.
std::string read_stored_run_file(const std::string& path);

}  // namespace tessera
