#include <cxxopts.hpp>
#include <tuple>
#include <iostream>

#include "data/cxi_writer.h"
#include "data/simulate.h"
#include "data/stem4d_writer.h"
#include "src/error.h"
#include "src/threads.h"
#include "train/cli/arguments.h"
#include "train/cli/commands.h"
#include "train/cli/load_options.h"

namespace tessera::cli {

int simulate(int argc, char** argv) {
  SimulationSettings s;
  cxxopts::Options o("tessera simulate", "Write a CXI data set of the built-in phantom (true object and probe "
                                         "stored under /entry_1/tessera_truth for scoring), or with --electron a "
                                         "4D-STEM data set in tessera's layout (data/stem4d_file.h).");
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
      ("zero-order-offset", "detector offset DY,DX: the zero order falls this many pixels from the frame centre "
                            "(sub-pixel allowed), as on a real detector", cxxopts::value<std::string>())
      ("no-beam-centre", "do not write the zero order as the detector's beam centre (readers then estimate it)")
      ("slices", "object slices (multislice)", cxxopts::value<int64_t>()->default_value("1"))
      ("slice-thickness", "distance between slices (metres)", cxxopts::value<double>()->default_value("0"))
      ("slice-phase", "phase of each slice as a fraction of the phantom's 0.5 rad RMS (default 1/slices)",
       cxxopts::value<double>()->default_value("0"))
      ("position-error", "error of the positions written to the file: uniform in +-E pixels per axis (the "
                         "truth keeps the exact ones)", cxxopts::value<double>()->default_value("0"))
      ("threads", "CPU threads (default: OMP_NUM_THREADS or all cores)", cxxopts::value<int>()->default_value("0"))
      ("h,help", "this help");
  o.add_options("electron (4D-STEM)")
      ("electron", "simulate 4D-STEM data in physical electron units (implies --format stem4d; --photons are "
                   "electrons per pattern; the probe comes from the aberration model; regular raster, no jitter)")
      ("format", "file layout: cxi or stem4d", cxxopts::value<std::string>())
      ("energy-kev", "beam energy (keV)", cxxopts::value<double>()->default_value("300"))
      ("convergence-mrad", "probe convergence semi-angle (mrad)", cxxopts::value<double>()->default_value("20"))
      ("defocus-angstrom", "probe defocus (Å)", cxxopts::value<double>()->default_value("300"))
      ("c3-mm", "spherical aberration C3 (mm)", cxxopts::value<double>()->default_value("0"))
      ("mrad-per-pixel", "detector calibration (mrad per pixel)", cxxopts::value<double>()->default_value("0.8"))
      ("step-angstrom", "scan step (Å; overrides --step)", cxxopts::value<double>())
      ("store-mrad", "store the calibration in mrad per pixel instead of Å⁻¹ per pixel")
      ("scan-rotation", "angle from the scan's axes to the detector's (degrees; the raster is rotated by it and the "
                        "file records it as scan_rotation_deg, sign convention in data/stem4d_file.h)",
       cxxopts::value<double>()->default_value("0"))
      ("measured-positions", "store the positions (with --jitter) as positions_angstrom instead of a scan step");
  auto r = o.parse(argc, argv);
  require_no_extra_arguments(r, "simulate");
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
  s.write_beam_centre = !r.count("no-beam-centre");
  if (r.count("zero-order-offset"))
    std::tie(s.zero_order_offset_y_px, s.zero_order_offset_x_px) =
        parse_yx(r["zero-order-offset"].as<std::string>(), "zero-order-offset", "2.4,-1.6");
  s.slices = r["slices"].as<int64_t>();
  s.slice_thickness_m = r["slice-thickness"].as<double>();
  s.slice_phase_fraction = r["slice-phase"].as<double>();
  s.position_error_px = r["position-error"].as<double>();
  TESSERA_REQUIRE(SettingsError, s.position_error_px >= 0, "--position-error must be >= 0, got ", s.position_error_px);
  const auto path = r["output"].as<std::string>();
  const std::string format = r.count("format") ? r["format"].as<std::string>() : (r.count("electron") ? "stem4d" : "cxi");
  TESSERA_REQUIRE(SettingsError, format == "cxi" || format == "stem4d", "--format must be cxi or stem4d, got '", format, "'");
  TESSERA_REQUIRE(SettingsError, (format == "stem4d") == (r.count("electron") > 0),
                  format == "stem4d" ? "--format stem4d needs --electron (the 4D-STEM layout holds electron data)"
                                     : "--electron data are written in the 4D-STEM layout (--format stem4d), not CXI");
  TESSERA_REQUIRE(SettingsError, format == "stem4d" || (r["scan-rotation"].as<double>() == 0 && !r.count("measured-positions")),
                  "--scan-rotation and --measured-positions describe the 4D-STEM layout and need --electron "
                  "(a CXI file stores every position as measured)");
  if (format == "stem4d") {
    s.electron_energy_kev = r["energy-kev"].as<double>();
    s.convergence_mrad = r["convergence-mrad"].as<double>();
    s.defocus_angstrom = r["defocus-angstrom"].as<double>();
    s.c3_mm = r["c3-mm"].as<double>();
    s.mrad_per_pixel = r["mrad-per-pixel"].as<double>();
    if (r.count("step-angstrom")) s.step_angstrom = r["step-angstrom"].as<double>();
    s.store_mrad = r.count("store-mrad") > 0;
    s.scan_rotation_deg = r["scan-rotation"].as<double>();
    s.measured_positions = r.count("measured-positions") > 0;
    const auto content = simulate_stem4d(s);
    write_stem4d(path, content);
    const auto& c = content.calibration;
    std::cout << "wrote " << path << ": 4D-STEM " << s.scan_y << "x" << s.scan_x << " scan ("
              << (s.measured_positions ? std::string("measured positions") : "step " + std::to_string(c.step_y_angstrom) + " Å")
              << ", rotated " << s.scan_rotation_deg << "°) of " << s.frame << "x" << s.frame << " patterns, " << s.electron_energy_kev << " keV, "
              << s.convergence_mrad << " mrad, defocus " << s.defocus_angstrom << " Å, " << s.photons
              << " electrons per pattern" << (s.noise ? " with Poisson noise" : "") << std::endl;
    return 0;
  }
  write_cxi(path, tessera::simulate(s));
  std::cout << "wrote " << path << ": " << s.scan_y * s.scan_x << " frames of " << s.frame << "x" << s.frame
            << ", " << s.photons << " photons per frame" << (s.noise ? " with Poisson noise" : "") << std::endl;
  return 0;
}

}  // namespace tessera::cli
