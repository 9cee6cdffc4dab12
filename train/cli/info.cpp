#include <cxxopts.hpp>
#include <iostream>

#include "data/cxi_file.h"
#include "data/stem4d_file.h"
#include "src/error.h"
#include "train/cli/arguments.h"
#include "train/cli/commands.h"

namespace tessera::cli {

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
    if (detect_data_format(path) == DataFormat::stem4d)
      describe(Stem4dFile(path));
    else
      describe(CxiFile(path));
  } catch (const DataError& e) {
    std::cout << path << ": cannot be used\n  problem: " << e.what() << std::endl;
    return 1;
  }
  if (problems.empty()) {
    std::cout << "no problems found" << std::endl;
    return 0;
  }
  std::cout << problems.size() << " problem(s):" << std::endl;
  for (const auto& p : problems) std::cout << "  - " << p << std::endl;
  return 1;
}

}  // namespace tessera::cli
