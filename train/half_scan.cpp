#include "train/half_scan.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <numeric>

#include "src/comm/communicator.h"
#include "src/error.h"
#include "src/frc_plot.h"
#include "train/result_file.h"
#include "train/result_frc.h"

namespace tessera {

ScanHalves split_scan_in_halves(const torch::Tensor& positions_px) {
  TESSERA_REQUIRE(DataError, positions_px.dim() == 2 && positions_px.size(1) == 2,
                  "scan positions must be (N, 2) [y, x], got ", positions_px.sizes());
  const int64_t n = positions_px.size(0);
  TESSERA_REQUIRE(DataError, n >= 4, "splitting the scan in two halves for FRC needs at least 4 positions, got ", n);
  auto p = positions_px.to(torch::kCPU).to(torch::kFloat64).contiguous();
  auto acc = p.accessor<double, 2>();
  // The fast axis moves more from one position to the next.
  double moved[2] = {0, 0};
  for (int64_t i = 1; i < n; ++i)
    for (int a = 0; a < 2; ++a) moved[a] += std::fabs(acc[i][a] - acc[i - 1][a]);
  const int fast = moved[1] >= moved[0] ? 1 : 0;
  // A new row starts where the slow coordinate steps: by more than half its
  // largest step between consecutive positions (within a row it only jitters).
  const int slow = 1 - fast;
  double largest_step = 0;
  for (int64_t i = 1; i < n; ++i) largest_step = std::max(largest_step, std::fabs(acc[i][slow] - acc[i - 1][slow]));
  std::vector<int64_t> row(static_cast<size_t>(n), 0);
  int64_t current = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (largest_step > 0 && std::fabs(acc[i][slow] - acc[i - 1][slow]) > 0.5 * largest_step) ++current;
    row[static_cast<size_t>(i)] = current;
  }
  std::vector<std::vector<int64_t>> rows(static_cast<size_t>(current + 1));
  for (int64_t i = 0; i < n; ++i) rows[static_cast<size_t>(row[static_cast<size_t>(i)])].push_back(i);
  bool raster = rows.size() >= 2;
  for (size_t r = 0; r + 1 < rows.size(); ++r) raster = raster && rows[r].size() >= 3;
  ScanHalves h;
  std::vector<int> parity(static_cast<size_t>(n), 0);
  if (raster) {
    for (size_t r = 0; r < rows.size(); ++r) {
      auto& members = rows[r];
      std::sort(members.begin(), members.end(), [&](int64_t x, int64_t y) { return acc[x][fast] < acc[y][fast]; });
      for (size_t k = 0; k < members.size(); ++k) parity[static_cast<size_t>(members[k])] = static_cast<int>((r + k) % 2);
    }
    h.method = "checkerboard over the raster's " + std::to_string(rows.size()) +
               " rows (alternate positions along each row, offset by one on alternate rows)";
  } else {
    for (int64_t i = 0; i < n; ++i) parity[static_cast<size_t>(i)] = static_cast<int>(i % 2);
    h.method = "alternate positions in scan order";
  }
  for (int64_t i = 0; i < n; ++i) (parity[static_cast<size_t>(i)] ? h.second : h.first).push_back(i);
  return h;
}

HalfScanRun run_with_half_scan_frc(const ScanProblem& problem, const ReconstructionSettings& settings,
                                   const RunOptions& options, std::shared_ptr<comm::Communicator> comm) {
  TESSERA_REQUIRE(SettingsError, options.resume.empty(),
                  "--frc reconstructs both halves of the scan from the start; it cannot continue a run (--resume ",
                  options.resume, ")");
  const bool root = !comm || comm->rank() == 0;
  HalfScanRun out;
  const ScanHalves halves = split_scan_in_halves(problem.scan.positions_px);
  out.halves = halves.method;
  std::vector<std::string> half_files;
  for (int k = 0; k < 2; ++k) {
    const auto& members = k == 0 ? halves.first : halves.second;
    RunOptions half = options;
    half.output = sibling_path(options.output, "_half" + std::to_string(k + 1) + ".h5");
    half.previews = false;
    if (root && !settings.quiet)
      std::cout << "FRC half " << (k + 1) << " of 2: " << members.size() << " of " << problem.scan.num_positions()
                << " positions (" << halves.method << ") -> " << half.output << std::endl;
    run_reconstruction(problem.restricted_to(members), settings, half, comm);
    half_files.push_back(half.output);
  }
  if (root && !settings.quiet) std::cout << "full scan:" << std::endl;
  out.full = run_reconstruction(problem, settings, options, comm);
  if (!root) return out;
  const auto a = read_result(half_files[0]), b = read_result(half_files[1]);
  FrcCurve curve = frc_between_results(a, b, half_files[0], half_files[1]);
  auto full = read_result(options.output);
  full.frc = curve;
  full.frc_halves = halves.method;
  write_result(options.output, full);
  const std::string png = sibling_path(options.output, "_frc.png");
  write_frc_png(png, curve);
  out.full.files.insert(out.full.files.end(), half_files.begin(), half_files.end());
  out.full.files.push_back(png);
  out.frc = curve;
  return out;
}

}  // namespace tessera
