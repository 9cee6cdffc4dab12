#include <cxxopts.hpp>
#include <cmath>
#include <iostream>
#include <tuple>

#include "models/priors/native.h"
#include "models/priors/torchscript.h"
#include "src/comm/communicator.h"
#include "src/comm/default_device.h"
#include "src/comm/distributed_env.h"
#include "src/comm/setup_agreement.h"
#include "src/error.h"
#include "src/threads.h"
#include "train/cli/arguments.h"
#include "train/cli/commands.h"
#include "train/cli/load_options.h"
#include "train/half_scan.h"
#include "train/result_frc.h"
#include "train/run.h"

namespace tessera::cli {

int reconstruct(int argc, char** argv) {
  ReconstructionSettings s;
  RunOptions run;
  cxxopts::Options o("tessera reconstruct",
                     "Reconstruct object and probe from a CXI data file. Under torchrun each rank takes one or "
                     "more tiles of the object (image gradient decomposition).");
  o.add_options()
      ("data", "CXI or 4D-STEM data file", cxxopts::value<std::string>())
      ("o,output", "result file (HDF5); previews and metrics CSV are written beside it",
       cxxopts::value<std::string>()->default_value("result.h5"))
      ("i,iterations", "iterations (passes over all patterns)", cxxopts::value<int>()->default_value("100"))
      ("optimizer", "adam, sgd, rmsprop, adagrad or lbfgs", cxxopts::value<std::string>()->default_value("adam"))
      ("loss", "amplitude, intensity or poisson", cxxopts::value<std::string>()->default_value("amplitude"))
      ("object-rate", "object learning rate (default: derived from the data)", cxxopts::value<double>()->default_value("0"))
      ("probe-rate", "probe learning rate (default: derived from the data)", cxxopts::value<double>()->default_value("0"))
      ("rate-scale", "multiplies the derived learning rates", cxxopts::value<double>()->default_value("1"))
      ("probe-from", "iteration from which the probe is refined (-1: never)", cxxopts::value<int>()->default_value("0"))
      ("batch-size", "patterns per optimiser step (default: 1/8 of the scan)", cxxopts::value<int64_t>()->default_value("0"))
      ("chunk-size", "patterns per forward/backward pass (memory bound)", cxxopts::value<int64_t>()->default_value("64"))
      ("seed", "seed of the mini-batch order", cxxopts::value<uint64_t>()->default_value("1"))
      ("tiles", "number of object tiles (default: one per rank)", cxxopts::value<int>()->default_value("1"))
      ("tile-grid", "explicit tile grid, e.g. 2x3 (rows x columns)", cxxopts::value<std::string>())
      ("modes", "incoherent probe modes", cxxopts::value<int64_t>()->default_value("1"))
      ("no-file-probe", "ignore the probe guess stored in the file; estimate it from the data")
      ("no-defocus-search", "same as --defocus-start focused")
      ("defocus-start", "parallax: read the probe's defocus from the shift of the shadow image across the direct "
                        "beam, else search; search: try the candidates; focused: the zero-phase probe",
       cxxopts::value<std::string>()->default_value("parallax"))
      ("defocus-candidates", "defocus values the search tries, radians of phase at the aperture edge "
                             "(comma-separated; one value starts from that defocus)",
       cxxopts::value<std::vector<double>>())
      ("defocus-search-iterations", "iterations run from each defocus candidate",
       cxxopts::value<int>()->default_value("2"))
      ("phase-ramp-gauge", "auto, beam, object or off: after each iteration fix the phase ramp the data cannot, by "
                           "centring the probe's far field on the zero order (beam) or by leaving the object no mean "
                           "ramp over the scan's interior (object); auto = beam when the zero order is known without "
                           "the specimen (the file's beam centre or --zero-order), else object",
       cxxopts::value<std::string>()->default_value("auto"))
      ("no-probe-centring", "same as --phase-ramp-gauge off")
      ("orthogonalise-every", "re-orthogonalise the probe modes every N iterations (0: never)",
       cxxopts::value<int>()->default_value("1"))
      ("slices", "object slices (multislice)", cxxopts::value<int64_t>()->default_value("1"))
      ("slice-thickness", "distance between object slices in metres (multislice)",
       cxxopts::value<double>()->default_value("0"))
      ("positions-from", "iteration from which scan positions are refined (-1: never)",
       cxxopts::value<int>()->default_value("-1"))
      ("position-optimizer", "optimizer of the positions: adam, rmsprop or adagrad",
       cxxopts::value<std::string>()->default_value("adam"))
      ("position-rate", "position learning rate in pixels per step (default 0.02)",
       cxxopts::value<double>()->default_value("0"))
      ("position-limit", "largest correction of a position in pixels (default: a quarter window)",
       cxxopts::value<double>()->default_value("0"))
      ("clamp-amplitude", "keep the object amplitude <= 1")
      ("phase-only", "pure phase object (amplitude fixed to 1)")
      ("threads", "CPU threads per process (default: OMP_NUM_THREADS, else all cores)", cxxopts::value<int>()->default_value("0"))
      ("device", "cpu or cuda[:N] (default: GPU LOCAL_RANK when this build has CUDA and a GPU is visible, else cpu)",
       cxxopts::value<std::string>())
      ("precision", "float or double", cxxopts::value<std::string>()->default_value("float"))
      ("checkpoint-every", "write the result every N iterations (0: only at the end)", cxxopts::value<int>()->default_value("10"))
      ("resume", "continue from this result file", cxxopts::value<std::string>())
      ("overwrite", "replace an existing --output file even if it is not a tessera result")
      ("timeout", "seconds to wait for a peer rank before failing", cxxopts::value<double>()->default_value("60"))
      ("prior", "built-in regulariser, repeatable: tv (total variation of phase and amplitude), tv-phase, "
                "tv-amplitude or smooth (quadratic gradient); needs --prior-weight",
       cxxopts::value<std::vector<std::string>>())
      ("prior-weight", "weight of the regularisers (--prior, --regulariser): the loss is the mean data loss per "
                       "pattern + weight * penalty, the penalty a sum over object pixels, so the weight grows with the "
                       "photon count (tests/test_priors.cpp: 1e-2 for tv at 1e3 photons per frame, Poisson loss)",
       cxxopts::value<double>()->default_value("0"))
      ("regulariser", "TorchScript regulariser R(x) -> scalar or (L, H, W) map, x the object as (L, 2, H, W) "
                      "real/imaginary channels (see models/priors/torchscript.h); weighted by --prior-weight",
       cxxopts::value<std::string>())
      ("denoiser", "TorchScript plug-and-play denoiser D(x) -> x, x the object as (L, 2, H, W) real/imaginary "
                   "channels, applied every --denoise-every iterations (example: models/denoiser.pt, trained by "
                   "scripts/train_denoiser.py)",
       cxxopts::value<std::string>())
      ("denoise-every", "apply the denoiser every N iterations", cxxopts::value<int>()->default_value("1"))
      ("denoise-blend", "object <- (1 - B) object + B denoised, B in [0, 1]", cxxopts::value<double>()->default_value("1"))
      ("frc", "truth-free resolution: first reconstruct two interleaved halves of the scan (checkerboard of a "
              "raster, else alternate positions) with the same settings into <stem>_half1.h5 and _half2.h5, then the "
              "full scan; print the half-bit FRC resolution, store it in the result and plot <stem>_frc.png "
              "(about twice the time)")
      ("no-previews", "do not write PNG previews")
      ("q,quiet", "no progress lines")
      ("h,help", "this help");
  add_load_options(o);
  o.parse_positional({"data"});
  o.positional_help("DATA");
  auto r = o.parse(argc, argv);
  if (r.count("help")) {
    std::cout << o.help() << std::endl;
    return 0;
  }
  if (!r.count("data")) throw cxxopts::exceptions::missing_argument("data");
  require_no_extra_arguments(r, "reconstruct");
  // 0 is each one's "automatic" default; given explicitly, only positive values make sense.
  require_positive_if_given<int>(r, "tiles");
  require_positive_if_given<int64_t>(r, "batch-size");
  require_positive_if_given<int>(r, "threads");
  require_positive_if_given<double>(r, "object-rate");
  require_positive_if_given<double>(r, "probe-rate");
  require_positive_if_given<double>(r, "rate-scale");
  require_positive_if_given<double>(r, "timeout");
  require_positive_if_given<int64_t>(r, "chunk-size");
  TESSERA_REQUIRE(SettingsError, r["iterations"].as<int>() >= 0, "--iterations must be >= 0, got ",
                  r["iterations"].as<int>());
  TESSERA_REQUIRE(SettingsError, r["checkpoint-every"].as<int>() >= 0,
                  "--checkpoint-every must be >= 0 (0: only at the end), got ", r["checkpoint-every"].as<int>());
  TESSERA_REQUIRE(SettingsError, r["probe-from"].as<int>() >= -1, "--probe-from must be >= -1 (-1: never), got ",
                  r["probe-from"].as<int>());
  TESSERA_REQUIRE(SettingsError, r["positions-from"].as<int>() >= -1,
                  "--positions-from must be >= -1 (-1: never), got ", r["positions-from"].as<int>());
  for (const char* name : {"object-rate", "probe-rate", "rate-scale", "slice-thickness", "position-rate",
                           "position-limit", "prior-weight", "timeout"})
    TESSERA_REQUIRE(SettingsError, std::isfinite(r[name].as<double>()), "--", name, " must be a finite number, got ",
                    r[name].as<double>());
  s.iterations = r["iterations"].as<int>();
  s.optimizer = r["optimizer"].as<std::string>();
  s.loss = r["loss"].as<std::string>();
  s.object_rate = r["object-rate"].as<double>();
  s.probe_rate = r["probe-rate"].as<double>();
  s.rate_scale = r["rate-scale"].as<double>();
  s.probe_from = r["probe-from"].as<int>();
  s.batch_size = r["batch-size"].as<int64_t>();
  s.chunk_size = r["chunk-size"].as<int64_t>();
  s.seed = r["seed"].as<uint64_t>();
  s.tiles = r["tiles"].as<int>();
  if (r.count("tile-grid")) std::tie(s.tiles_y, s.tiles_x) = parse_grid(r["tile-grid"].as<std::string>(), "tile-grid");
  s.probe_modes = r["modes"].as<int64_t>();
  s.use_file_probe = !r.count("no-file-probe");
  s.phase_ramp_gauge = r.count("no-probe-centring") ? "off" : r["phase-ramp-gauge"].as<std::string>();
  if (r.count("defocus-candidates")) s.defocus_candidates = r["defocus-candidates"].as<std::vector<double>>();
  s.defocus_start = r.count("no-defocus-search") ? "focused" : r["defocus-start"].as<std::string>();
  s.defocus_search_iterations = r["defocus-search-iterations"].as<int>();
  s.orthogonalise_every = r["orthogonalise-every"].as<int>();
  s.slices = r["slices"].as<int64_t>();
  s.slice_thickness_m = r["slice-thickness"].as<double>();
  s.positions_from = r["positions-from"].as<int>();
  s.position_optimizer = r["position-optimizer"].as<std::string>();
  s.position_rate = r["position-rate"].as<double>();
  s.position_limit_px = r["position-limit"].as<double>();
  s.object_constraints.clamp_amplitude = r.count("clamp-amplitude") > 0;
  s.object_constraints.phase_only = r.count("phase-only") > 0;
  s.threads = configure_threads(r["threads"].as<int>());
  s.device = r.count("device") ? r["device"].as<std::string>() : comm::default_device(comm::DistributedEnv::from_environment());
  s.precision = r["precision"].as<std::string>();
  s.checkpoint_every = r["checkpoint-every"].as<int>();
  s.quiet = r.count("quiet") > 0;
  run.output = r["output"].as<std::string>();
  if (r.count("resume")) run.resume = r["resume"].as<std::string>();
  run.previews = !r.count("no-previews");
  run.overwrite = r.count("overwrite") > 0;
  {
    // Priors (models/priors/): files are loaded and checked here, before any data is read.
    const double weight = r["prior-weight"].as<double>();
    const bool has_regulariser = r.count("prior") || r.count("regulariser");
    TESSERA_REQUIRE(SettingsError, !has_regulariser || weight > 0,
                    "--prior and --regulariser need a positive --prior-weight, got ", weight);
    TESSERA_REQUIRE(SettingsError, has_regulariser || !r.count("prior-weight"),
                    "--prior-weight is given but there is no regulariser (--prior or --regulariser)");
    TESSERA_REQUIRE(SettingsError, r.count("denoiser") || (!r.count("denoise-every") && !r.count("denoise-blend")),
                    "--denoise-every and --denoise-blend need --denoiser FILE.pt");
    PriorSettings reg;
    reg.weight = weight;
    if (r.count("prior"))
      for (const auto& name : r["prior"].as<std::vector<std::string>>()) run.priors.emplace_back(make_builtin_prior(name), reg);
    if (r.count("regulariser"))
      run.priors.emplace_back(std::make_shared<TorchScriptRegulariser>(r["regulariser"].as<std::string>()), reg);
    if (r.count("denoiser")) {
      PriorSettings den;
      den.every = r["denoise-every"].as<int>();
      den.blend = r["denoise-blend"].as<double>();
      TESSERA_REQUIRE(SettingsError, den.every >= 1, "--denoise-every must be >= 1, got ", den.every);
      TESSERA_REQUIRE(SettingsError, den.blend > 0 && den.blend <= 1, "--denoise-blend must be in (0, 1], got ", den.blend);
      run.priors.emplace_back(std::make_shared<TorchScriptDenoiser>(r["denoiser"].as<std::string>()), den);
    }
  }

  const auto env = comm::DistributedEnv::from_environment();
  std::shared_ptr<comm::Communicator> comm;
  if (env.distributed()) {
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(r["timeout"].as<double>() * 1000));
    comm = comm::Communicator::create(env, torch::Device(s.device), timeout);
  }
  const int rank = comm ? comm->rank() : 0;
  // A rank that cannot read the data tells the others before they wait for it.
  ScanProblem problem;
  comm::agree_on_setup(comm.get(),
                       [&] { problem = ScanProblem::from_file(r["data"].as<std::string>(), parse_load_options(r)); });
  std::optional<HalfScanRun> halves;
  if (r.count("frc")) halves = run_with_half_scan_frc(problem, s, run, comm);
  auto summary = halves ? halves->full : run_reconstruction(std::move(problem), s, run, comm);
  if (rank == 0) {
    std::cout << "done: " << summary.iterations << " iterations in " << summary.seconds << " s, final loss "
              << summary.final_loss;
    if (summary.score)
      std::cout << ", correlation with the true object " << summary.score->correlation << " ("
                << summary.score->correlation_without_ramp << " after also removing a phase ramp)";
    if (summary.phase_gradient)
      std::cout << "\nmean phase gradient over the scan's interior: (" << summary.phase_gradient->first << ", "
                << summary.phase_gradient->second << ") rad/px";
    if (halves && halves->frc) std::cout << "\n" << describe_frc(*halves->frc);
    std::cout << "\nresults:";
    for (const auto& f : summary.files) std::cout << "\n  " << f;
    std::cout << std::endl;
  }
  return 0;
}

}  // namespace tessera::cli
