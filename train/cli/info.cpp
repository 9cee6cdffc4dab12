#include <cxxopts.hpp>
#include <cstdio>
#include <iostream>

#include "data/cxi_file.h"
#include "data/stem4d_file.h"
#include "data/stem4d_shadow_shift.h"
#include "src/error.h"
#include "train/cli/arguments.h"
#include "train/cli/commands.h"
#include "train/scan_problem.h"

namespace tessera::cli {

namespace {

// The model-free geometry check (data/stem4d_shadow_shift.h); unreadable
// patterns are reported by problems(), not here.
std::string shadow_check(const Stem4dFile& file) {
  try {
    std::string why_not;
    if (const auto shift = measure_shadow_shift(file, &why_not)) return describe_shadow_shift(*shift, file.calibration());
    return "  shadow check:      not possible: " + why_not + "\n";
  } catch (const DataError&) {
    return "  shadow check:      not possible: patterns cannot be read (see problems)\n";
  }
}

}  // namespace

int info(int argc, char** argv) {
  cxxopts::Options o("tessera info", "Describe a data file (CXI or 4D-STEM) and list everything wrong with it.");
  o.add_options()("file", "CXI or 4D-STEM file", cxxopts::value<std::string>())("h,help", "this help");
  o.parse_positional({"file"});
  o.positional_help("FILE");
  auto r = o.parse(argc, argv);
  require_no_extra_arguments(r, "info");
  if (r.count("help")) {
    std::cout << o.help() << std::endl;
    return 0;
  }
  if (!r.count("file")) throw cxxopts::exceptions::missing_argument("file");
  const auto path = r["file"].as<std::string>();
  std::vector<std::string> problems;
  // The summary (header only) is printed before the frames are scanned.
  auto describe = [&](const auto& file) {
    std::cout << file.summary() << std::endl;
    problems = file.problems();
  };
  try {
    if (detect_data_format(path) == DataFormat::stem4d) {
      Stem4dFile file(path);
      describe(file);
      std::cout << shadow_check(file);
    } else {
      describe(CxiFile(path));
    }
  } catch (const DataError& e) {
    std::cout << path << ": cannot be used\n  problem: " << e.what() << std::endl;
    return 1;
  }
  if (problems.empty()) {
    // Where the direct beam meets the detector, as reconstruct will use it.
    const auto p = ScanProblem::from_file(path);
    const auto& g = p.experiment;
    const auto [y, x] = *g.zero_order_px;
    std::printf("zero order:        pixel (%.2f, %.2f), %s; %+.2f, %+.2f px from the frame centre\n", y, x,
                g.zero_order_source == "file" ? "from the file" : "estimated: centroid of the mean pattern's bright region",
                y - static_cast<double>(g.frame_h / 2), x - static_cast<double>(g.frame_w / 2));
    std::cout << "no problems found" << std::endl;
    return 0;
  }
  std::cout << problems.size() << " problem(s):" << std::endl;
  for (const auto& p : problems) std::cout << "  - " << p << std::endl;
  return 1;
}

}  // namespace tessera::cli
