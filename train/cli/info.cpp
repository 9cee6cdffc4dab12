#include <cxxopts.hpp>
#include <iostream>

#include "data/cxi_file.h"
#include "src/error.h"
#include "train/cli/commands.h"

namespace tessera::cli {

int info(int argc, char** argv) {
  cxxopts::Options o("tessera info", "Describe a CXI data file and list everything wrong with it.");
  o.add_options()("file", "CXI file", cxxopts::value<std::string>())("h,help", "this help");
  o.parse_positional({"file"});
  o.positional_help("FILE");
  auto r = o.parse(argc, argv);
  if (r.count("help")) {
    std::cout << o.help() << std::endl;
    return 0;
  }
  if (!r.count("file")) throw cxxopts::exceptions::missing_argument("file");
  const auto path = r["file"].as<std::string>();
  std::unique_ptr<CxiFile> file;
  try {
    file = std::make_unique<CxiFile>(path);
  } catch (const DataError& e) {
    std::cout << path << ": cannot be used\n  problem: " << e.what() << std::endl;
    return 1;
  }
  std::cout << file->summary() << std::endl;
  auto problems = file->problems();
  if (problems.empty()) {
    std::cout << "no problems found" << std::endl;
    return 0;
  }
  std::cout << problems.size() << " problem(s):" << std::endl;
  for (const auto& p : problems) std::cout << "  - " << p << std::endl;
  return 1;
}

}  // namespace tessera::cli
