// Real X-ray measurements that tessera's simulator did not write (issue 13):
// the Siemens star of ../shared/data/siemens-star (516 frames of 128 x 128,
// counts, zero order off the frame centre, an instrument probe guess),
// reconstructed with default settings and judged as a microscopist would
// without a truth: no phase ramp or wraps across the scanned field, and the
// Fourier ring correlation of two half-scan reconstructions above the
// half-bit threshold down to a stated resolution.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "src/threads.h"
#include "train/half_scan.h"
#include "train/scan_problem.h"

using namespace tessera;
namespace fs = std::filesystem;

TEST(RealData, SiemensStarWithDefaultSettings) {
  const fs::path data = fs::path(TESSERA_SOURCE_DIR) / ".." / "shared" / "data" / "siemens-star" / "siemens-star.cxi";
  if (!fs::exists(data)) GTEST_SKIP() << "no real data at " << data << " (the shared/ folder beside the checkout)";
  configure_threads(0);
  const auto dir = fs::temp_directory_path() / ("tessera_test_real_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  ReconstructionSettings s;  // defaults: 100 iterations, adam, amplitude loss
  s.quiet = true;
  s.checkpoint_every = 0;
  RunOptions run;
  run.output = (dir / "star.h5").string();
  run.previews = false;
  const auto problem = ScanProblem::from_file(data.string());
  // The zero order is estimated from the data, about 3 pixels off centre in x (the data's README: 64.0, 66.75).
  ASSERT_EQ(problem.experiment.zero_order_source, "data");
  EXPECT_NEAR(problem.experiment.zero_order_px->first, 64.0, 0.5);
  EXPECT_NEAR(problem.experiment.zero_order_px->second, 66.75, 0.5);
  const auto result = run_with_half_scan_frc(problem, s, run);
  ASSERT_TRUE(result.full.phase_gradient && result.frc);
  const double ramp = std::hypot(result.full.phase_gradient->first, result.full.phase_gradient->second);
  std::printf("Siemens star, defaults: mean phase gradient %.2e rad/px over the scan's interior; half-bit FRC "
              "resolution %.0f nm (pixel %.1f nm)%s\n", ramp, result.frc->resolution_m * 1e9,
              problem.experiment.pixel_y_m() * 1e9, result.frc->sampling_limited ? ", sampling limited" : "");
  EXPECT_LE(ramp, 1e-3);
  // Half-scans of this data set agree above the half-bit threshold down to
  // about 190 nm (6.4 pixels); a failed reconstruction (noise, wraps) agrees nowhere.
  EXPECT_LE(result.frc->resolution_m, 250e-9);
  fs::remove_all(dir);
}
