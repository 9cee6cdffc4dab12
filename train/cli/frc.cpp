#include <cxxopts.hpp>
#include <iostream>

#include "src/frc_plot.h"
#include "train/cli/commands.h"
#include "train/result_file.h"
#include "train/result_frc.h"
#include "train/run.h"

namespace tessera::cli {

int frc(int argc, char** argv) {
  cxxopts::Options o("tessera frc",
                     "Fourier ring correlation of two reconstructions of the same specimen from independent data "
                     "(e.g. the two halves written by `tessera reconstruct --frc`, or two separate scans): the "
                     "resolution where their correlation falls below the half-bit threshold. The global phase, a "
                     "linear phase ramp and a shift between them are removed first; the region compared is the part "
                     "both scans lit well.");
  o.add_options()
      ("a", "first result file (HDF5, written by tessera reconstruct)", cxxopts::value<std::string>())
      ("b", "second result file", cxxopts::value<std::string>())
      ("o,output", "FRC curve plot (PNG); default: <A stem>_frc.png", cxxopts::value<std::string>())
      ("h,help", "this help");
  o.parse_positional({"a", "b"});
  o.positional_help("A.h5 B.h5");
  auto r = o.parse(argc, argv);
  if (r.count("help")) {
    std::cout << o.help() << std::endl;
    return 0;
  }
  if (!r.count("a") || !r.count("b")) throw cxxopts::exceptions::missing_argument("A.h5 B.h5 (two result files)");
  const auto path_a = r["a"].as<std::string>(), path_b = r["b"].as<std::string>();
  const auto curve = frc_between_results(read_result(path_a), read_result(path_b), path_a, path_b);
  const std::string png = r.count("output") ? r["output"].as<std::string>() : sibling_path(path_a, "_frc.png");
  write_frc_png(png, curve);
  std::cout << describe_frc(curve) << "\ncurve: " << png << std::endl;
  return 0;
}

}  // namespace tessera::cli
