// Half-scan FRC: splitting a scan, reconstructing a subset of it, storing the
// curve, and the `tessera frc` / `tessera reconstruct --frc` commands.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "tests/tool_run.h"
#include "data/simulate.h"
#include "src/error.h"
#include "train/half_scan.h"
#include "train/result_file.h"
#include "train/scan_problem.h"

namespace fs = std::filesystem;
using namespace tessera;

namespace {

torch::Tensor positions(const std::vector<std::pair<double, double>>& yx) {
  std::vector<double> v;
  for (const auto& [y, x] : yx) v.insert(v.end(), {y, x});
  return torch::tensor(v, torch::kFloat64).view({-1, 2});
}

// Grid cell -> half (0 or 1) of a rows x cols raster scanned in the given order.
std::map<std::pair<int, int>, int> halves_by_cell(const std::vector<std::pair<int, int>>& cells,
                                                  const ScanHalves& h) {
  std::map<std::pair<int, int>, int> m;
  for (auto i : h.first) m[cells[static_cast<size_t>(i)]] = 0;
  for (auto i : h.second) m[cells[static_cast<size_t>(i)]] = 1;
  return m;
}

void expect_checkerboard(const std::map<std::pair<int, int>, int>& m, int rows, int cols) {
  ASSERT_EQ(m.size(), static_cast<size_t>(rows * cols));
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      if (c + 1 < cols) {
        EXPECT_NE(m.at({r, c}), m.at({r, c + 1})) << r << ", " << c;
      }
      if (r + 1 < rows) {
        EXPECT_NE(m.at({r, c}), m.at({r + 1, c})) << r << ", " << c;
      }
    }
}


}  // namespace

TEST(HalfScan, RowMajorRasterIsSplitAsACheckerboard) {
  // 6 rows of 8 (an even row length: alternating in scan order would give columns).
  std::vector<std::pair<double, double>> yx;
  std::vector<std::pair<int, int>> cells;
  for (int r = 0; r < 6; ++r)
    for (int c = 0; c < 8; ++c) {
      yx.emplace_back(5.0 * r + 0.3 * std::sin(r * 8 + c), 5.0 * c + 0.3 * std::cos(r * 8 + c));
      cells.emplace_back(r, c);
    }
  const auto h = split_scan_in_halves(positions(yx));
  EXPECT_EQ(h.first.size(), 24u);
  EXPECT_EQ(h.second.size(), 24u);
  EXPECT_NE(h.method.find("checkerboard"), std::string::npos) << h.method;
  expect_checkerboard(halves_by_cell(cells, h), 6, 8);
}

TEST(HalfScan, SnakeAndColumnRastersAreSplitAsACheckerboard) {
  // Snake of 5 rows of 6, each row starting somewhere else (as the Siemens star fly scan).
  std::vector<std::pair<double, double>> yx;
  std::vector<std::pair<int, int>> cells;
  for (int r = 0; r < 5; ++r)
    for (int k = 0; k < 6; ++k) {
      const int c = r % 2 ? 5 - k : k;
      yx.emplace_back(3.0 * r, 60.0 * c + 20.0 * (r % 3));
      cells.emplace_back(r, c);
    }
  auto h = split_scan_in_halves(positions(yx));
  expect_checkerboard(halves_by_cell(cells, h), 5, 6);
  // Column-major: y is the fast axis.
  yx.clear();
  cells.clear();
  for (int c = 0; c < 4; ++c)
    for (int r = 0; r < 6; ++r) {
      yx.emplace_back(4.0 * r, 4.0 * c);
      cells.emplace_back(r, c);
    }
  h = split_scan_in_halves(positions(yx));
  expect_checkerboard(halves_by_cell(cells, h), 6, 4);
}

TEST(HalfScan, SpiralAlternatesInScanOrder) {
  std::vector<std::pair<double, double>> yx;
  for (int i = 0; i < 101; ++i) {
    const double r = 3.0 * std::sqrt(static_cast<double>(i)), t = 2.39996323 * i;
    yx.emplace_back(r * std::sin(t), r * std::cos(t));
  }
  const auto h = split_scan_in_halves(positions(yx));
  EXPECT_EQ(h.method, "alternate positions in scan order");
  ASSERT_EQ(h.first.size(), 51u);
  ASSERT_EQ(h.second.size(), 50u);
  for (size_t k = 0; k < h.second.size(); ++k) {
    EXPECT_EQ(h.first[k], static_cast<int64_t>(2 * k));
    EXPECT_EQ(h.second[k], static_cast<int64_t>(2 * k + 1));
  }
  EXPECT_THROW(split_scan_in_halves(positions({{0, 0}, {1, 1}, {2, 2}})), DataError);
}

TEST(HalfScan, RestrictedProblemReadsItsOwnFramesOnTheSameGrid) {
  SimulationSettings ss;
  ss.frame = 16;
  ss.scan_y = ss.scan_x = 3;
  ss.step_px = 4;
  const auto full = ScanProblem::from_content(simulate(ss));
  const std::vector<int64_t> subset{7, 2, 4};
  const auto part = full.restricted_to(subset);
  EXPECT_EQ(part.scan.num_positions(), 3);
  EXPECT_EQ(part.scan.object_h, full.scan.object_h);
  EXPECT_EQ(part.scan.object_w, full.scan.object_w);
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(torch::equal(part.scan.positions_px[i], full.scan.positions_px[subset[static_cast<size_t>(i)]]));
    EXPECT_TRUE(torch::equal(part.read_frames({i}), full.read_frames({subset[static_cast<size_t>(i)]})));
  }
  EXPECT_TRUE(torch::equal(part.read_frames({2, 0}), full.read_frames({4, 7})));
  EXPECT_THROW(full.restricted_to({}), SettingsError);
  EXPECT_THROW(full.restricted_to({0, 9}), SettingsError);
  EXPECT_THROW(full.restricted_to({1, 1}), SettingsError);
}

TEST(HalfScan, ReconstructWithFrcStoresAndPlotsTheResolution) {
  const auto dir = fs::temp_directory_path() / ("tessera_test_half_scan_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const auto data = (dir / "s.cxi").string(), result = (dir / "r.h5").string();
  auto o = run("simulate -o " + data + " --scan 10 --frame 32 --step 4 --photons 1e6");
  ASSERT_EQ(o.code, 0) << o.text;
  o = run("reconstruct " + data + " -o " + result + " -i 30 --threads 1 --frc");
  ASSERT_EQ(o.code, 0) << o.text;
  EXPECT_NE(o.text.find("FRC half 2 of 2: 50 of 100 positions (checkerboard"), std::string::npos) << o.text;
  EXPECT_NE(o.text.find("FRC resolution (half-bit)"), std::string::npos) << o.text;
  for (auto suffix : {".h5", "_half1.h5", "_half2.h5", "_frc.png", "_object_phase.png"})
    EXPECT_TRUE(fs::exists(dir / (std::string("r") + suffix))) << suffix;
  const auto stored = read_result(result);
  ASSERT_TRUE(stored.frc.has_value());
  const auto& c = *stored.frc;
  EXPECT_NE(stored.frc_halves.find("checkerboard"), std::string::npos);
  EXPECT_EQ(stored.iteration, 30);  // the full run, not a half
  EXPECT_EQ(stored.positions_px.size(0), 100);
  const double pixel = stored.pixel_size_m[0].item<double>();
  EXPECT_NEAR(c.nyquist_period_m, 2 * pixel, 1e-6 * pixel);
  EXPECT_GE(c.resolution_m, c.nyquist_period_m);
  // The two halves of a well-sampled simulation agree well beyond the region's coarsest rings.
  EXPECT_LT(c.resolution_m, 8 * pixel) << "resolution " << c.resolution_m / pixel << " px";
  // `tessera frc` on the halves gives the stored figure.
  o = run("frc " + (dir / "r_half1.h5").string() + " " + (dir / "r_half2.h5").string() + " -o " +
          (dir / "again.png").string());
  ASSERT_EQ(o.code, 0) << o.text;
  EXPECT_NE(o.text.find(format_length(c.resolution_m)), std::string::npos) << o.text;
  EXPECT_TRUE(fs::exists(dir / "again.png"));
  // A result against itself: the sampling limit, said as such.
  o = run("frc " + result + " " + result + " -o " + (dir / "self.png").string());
  ASSERT_EQ(o.code, 0) << o.text;
  EXPECT_NE(o.text.find("sampling limit"), std::string::npos) << o.text;
  // Bad input names the file.
  o = run("frc " + result + " " + (dir / "missing.h5").string());
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("missing.h5"), std::string::npos) << o.text;
  o = run("frc " + result);
  EXPECT_EQ(o.code, 1) << o.text;
  o = run("frc " + data + " " + result);
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("not a tessera result file"), std::string::npos) << o.text;
  o = run("reconstruct " + data + " -o " + result + " -i 1 --frc --resume " + result);
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("--frc"), std::string::npos) << o.text;
  fs::remove_all(dir);
}
