#pragma once
// Truth-free resolution of a whole run: the scan is split into two
// interleaved halves, each reconstructed alone with the same settings, then
// the full scan as usual; the Fourier ring correlation of the two half
// reconstructions (src/frc.h) is stored in the full result and plotted.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "src/frc.h"
#include "train/run.h"

namespace tessera {

// Two halves that each cover the whole scanned field. A raster (rows along
// the faster-moving axis, a new row wherever the other coordinate steps by
// more than half its largest step, in either direction or snaking, each row
// but the last of at least 3 positions) is split as a checkerboard:
// alternate positions along each row, ordered by position, offset by one on
// alternate rows. Any other scan (spiral, random) alternates positions in
// scan order.
struct ScanHalves {
  std::vector<int64_t> first, second;
  std::string method;  // how, in words, for the result file and the log
};
ScanHalves split_scan_in_halves(const torch::Tensor& positions_px);

struct HalfScanRun {
  RunSummary full;  // the run of the whole scan (its files include the halves and the FRC plot)
  std::optional<FrcCurve> frc;  // rank 0 only
  std::string halves;
};

// Writes <stem>_half1.h5 and <stem>_half2.h5 (no previews), then the full
// result as run_reconstruction does, with /reconstruction/frc added, and
// <stem>_frc.png. Costs about twice the full run.
HalfScanRun run_with_half_scan_frc(const ScanProblem& problem, const ReconstructionSettings& settings,
                                   const RunOptions& options, std::shared_ptr<comm::Communicator> comm = nullptr);

}  // namespace tessera
