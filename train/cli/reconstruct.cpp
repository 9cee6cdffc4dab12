#include <cxxopts.hpp>
#include <cmath>
#include <filesystem>
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
#include "train/cli/option_table.h"
#include "train/cli/reconstruct_options.h"
#include "train/result_file.h"
#include "train/half_scan.h"
#include "train/result_frc.h"
#include "train/run.h"

namespace tessera::cli {

namespace {

int whole(const cxxopts::ParseResult& r, const char* name) {
  return static_cast<int>(r[name].as<int64_t>());  // in int range: check_values
}

bool flag(const cxxopts::ParseResult& r, const char* name) { return r[name].as<bool>(); }

// The stored settings of the run being resumed and this run's, compared:
// each difference is named before the run continues.
void say_resume_differences(const std::string& resume, const std::string& now, const OptionTable& table) {
  std::string before;
  try {
    before = read_stored_run_file(resume);
  } catch (const std::exception&) {
    return;  // not a result: the resume itself reports it
  }
  if (before.empty()) return;
  const auto differences = setting_differences(before, now, table);
  if (differences.empty()) return;
  std::cout << "resume: settings that differ from the run that wrote " << resume << ":\n";
  for (const auto& d : differences) std::cout << "  " << d << "\n";
}

}  // namespace

int reconstruct(int argc, char** argv) {
  ReconstructionSettings s;
  RunOptions run;
  const OptionTable table = reconstruct_option_table();
  auto o = reconstruct_command_options(table);
  const auto command_line = o.parse(argc, argv);
  if (command_line["help"].as<bool>()) {
    std::cout << o.help() << std::endl;
    return 0;
  }
  // A run file's settings go first; those on the command line come after and win.
  std::vector<std::string> args{argv[0]};
  std::optional<RunFile> config;
  if (command_line.count("config")) {
    config = read_run_file(command_line["config"].as<std::string>());
    for (auto& a : arguments_from(*config, table, command_line)) args.push_back(std::move(a));
  }
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  std::vector<char*> pointers;
  for (auto& a : args) pointers.push_back(a.data());
  const auto r = o.parse(static_cast<int>(pointers.size()), pointers.data());
  if (!r.count("data"))
    throw SettingsError(config ? "no data file: give DATA or set data = \"FILE\" in " + config->source
                               : std::string("no data file: tessera reconstruct DATA [options]"));
  require_no_extra_arguments(r, "reconstruct");
  check_values(r, table);
  if (config && !r.count("resume")) {
    std::error_code ec;
    TESSERA_REQUIRE(SettingsError, !std::filesystem::equivalent(r["output"].as<std::string>(), config->source, ec),
                    "--output ", r["output"].as<std::string>(), " is the file --config reads its settings from; "
                    "the rerun would replace the result it repeats: give another -o");
  }
  s.iterations = whole(r, "iterations");
  s.optimizer = r["optimizer"].as<std::string>();
  s.loss = r["loss"].as<std::string>();
  s.object_rate = r["object-rate"].as<double>();
  s.probe_rate = r["probe-rate"].as<double>();
  s.rate_scale = r["rate-scale"].as<double>();
  if (r.count("adam-epsilon-scale")) s.adam_epsilon_scale = r["adam-epsilon-scale"].as<double>();
  s.probe_from = whole(r, "probe-from");
  s.batch_size = r["batch-size"].as<int64_t>();
  s.chunk_size = r["chunk-size"].as<int64_t>();
  s.seed = static_cast<uint64_t>(r["seed"].as<int64_t>());
  s.tiles = whole(r, "tiles");
  if (r.count("tile-grid")) std::tie(s.tiles_y, s.tiles_x) = parse_grid(r["tile-grid"].as<std::string>(), "tile-grid");
  s.probe_modes = r["modes"].as<int64_t>();
  s.use_file_probe = !flag(r, "no-file-probe");
  s.phase_ramp_gauge = flag(r, "no-probe-centring") ? "off" : r["phase-ramp-gauge"].as<std::string>();
  if (r.count("defocus-candidates")) s.defocus_candidates = r["defocus-candidates"].as<std::vector<double>>();
  s.defocus_start = flag(r, "no-defocus-search") ? "focused" : r["defocus-start"].as<std::string>();
  s.defocus_search_iterations = whole(r, "defocus-search-iterations");
  s.orthogonalise_every = whole(r, "orthogonalise-every");
  s.slices = r["slices"].as<int64_t>();
  s.slice_thickness_m = r["slice-thickness"].as<double>();
  s.positions_from = whole(r, "positions-from");
  s.position_optimizer = r["position-optimizer"].as<std::string>();
  s.position_rate = r["position-rate"].as<double>();
  s.position_limit_px = r["position-limit"].as<double>();
  s.object_constraints.clamp_amplitude = flag(r, "clamp-amplitude");
  s.object_constraints.phase_only = flag(r, "phase-only");
  s.threads = configure_threads(whole(r, "threads"));
  s.device = r.count("device") ? r["device"].as<std::string>() : comm::default_device(comm::DistributedEnv::from_environment());
  s.precision = r["precision"].as<std::string>();
  s.checkpoint_every = whole(r, "checkpoint-every");
  s.quiet = flag(r, "quiet");
  run.output = r["output"].as<std::string>();
  if (r.count("resume")) run.resume = r["resume"].as<std::string>();
  run.previews = !flag(r, "no-previews");
  run.overwrite = flag(r, "overwrite");
  run.run_file = record_settings(r, table);
  {
    // Priors (models/priors/): files are loaded and checked here, before any data is read.
    const double weight = r["prior-weight"].as<double>();
    const bool has_regulariser = r.count("prior") || r.count("regulariser");
    TESSERA_REQUIRE(SettingsError, !has_regulariser || weight > 0,
                    "--prior and --regulariser need a positive --prior-weight, got ", weight);
    // Values, not presence: a run file's record lists every setting.
    TESSERA_REQUIRE(SettingsError, has_regulariser || weight == 0,
                    "--prior-weight is given but there is no regulariser (--prior or --regulariser)");
    TESSERA_REQUIRE(SettingsError, r.count("denoiser") || (whole(r, "denoise-every") == 1 && r["denoise-blend"].as<double>() == 1),
                    "--denoise-every and --denoise-blend need --denoiser FILE.pt");
    PriorSettings reg;
    reg.weight = weight;
    if (r.count("prior"))
      for (const auto& name : r["prior"].as<std::vector<std::string>>()) run.priors.emplace_back(make_builtin_prior(name), reg);
    if (r.count("regulariser"))
      run.priors.emplace_back(std::make_shared<TorchScriptRegulariser>(r["regulariser"].as<std::string>()), reg);
    if (r.count("denoiser")) {
      PriorSettings den;
      den.every = whole(r, "denoise-every");
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
  if (!run.resume.empty() && rank == 0 && !s.quiet) say_resume_differences(run.resume, run.run_file, table);
  if (flag(r, "frc")) halves = run_with_half_scan_frc(problem, s, run, comm);
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
