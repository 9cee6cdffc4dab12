#include <cxxopts.hpp>
#include <iostream>

#include "data/cxi_writer.h"
#include "data/simulate.h"
#include "src/threads.h"
#include "train/cli/commands.h"

namespace tessera::cli {

int simulate(int argc, char** argv) {
  SimulationSettings s;
  cxxopts::Options o("tessera simulate", "Write a CXI data set of the built-in phantom (true object and probe "
                                         "stored under /entry_1/tessera_truth for scoring).");
  o.add_options()
      ("o,output", "CXI file to write", cxxopts::value<std::string>())
      ("frame", "frame size (pixels, square)", cxxopts::value<int64_t>()->default_value("64"))
      ("scan", "raster scan points per side (overridden by --scan-y/--scan-x)", cxxopts::value<int64_t>()->default_value("20"))
      ("scan-y", "scan points along y", cxxopts::value<int64_t>())
      ("scan-x", "scan points along x", cxxopts::value<int64_t>())
      ("step", "scan step (object pixels)", cxxopts::value<double>()->default_value("5"))
      ("jitter", "random sub-pixel position offsets (pixels)", cxxopts::value<double>()->default_value("0.3"))
      ("photons", "mean photons per frame", cxxopts::value<double>()->default_value("1e6"))
      ("no-noise", "no Poisson noise")
      ("seed", "random seed", cxxopts::value<uint64_t>()->default_value("1"))
      ("modes", "incoherent probe modes", cxxopts::value<int64_t>()->default_value("1"))
      ("aperture", "probe aperture, fraction of Nyquist", cxxopts::value<double>()->default_value("0.35"))
      ("defocus", "probe defocus, radians at the aperture edge", cxxopts::value<double>()->default_value("8"))
      ("threads", "CPU threads (default: OMP_NUM_THREADS or all cores)", cxxopts::value<int>()->default_value("0"))
      ("h,help", "this help");
  auto r = o.parse(argc, argv);
  if (r.count("help")) {
    std::cout << o.help() << std::endl;
    return 0;
  }
  if (!r.count("output")) throw cxxopts::exceptions::missing_argument("output");
  configure_threads(r["threads"].as<int>());
  s.frame = r["frame"].as<int64_t>();
  s.scan_y = s.scan_x = r["scan"].as<int64_t>();
  if (r.count("scan-y")) s.scan_y = r["scan-y"].as<int64_t>();
  if (r.count("scan-x")) s.scan_x = r["scan-x"].as<int64_t>();
  s.step_px = r["step"].as<double>();
  s.jitter_px = r["jitter"].as<double>();
  s.photons = r["photons"].as<double>();
  s.noise = !r.count("no-noise");
  s.seed = r["seed"].as<uint64_t>();
  s.probe_modes = r["modes"].as<int64_t>();
  s.aperture_fraction = r["aperture"].as<double>();
  s.defocus_rad = r["defocus"].as<double>();
  const auto path = r["output"].as<std::string>();
  write_cxi(path, tessera::simulate(s));
  std::cout << "wrote " << path << ": " << s.scan_y * s.scan_x << " frames of " << s.frame << "x" << s.frame
            << ", " << s.photons << " photons per frame" << (s.noise ? " with Poisson noise" : "") << std::endl;
  return 0;
}

}  // namespace tessera::cli
