#include <algorithm>
#include <cstdio>
#include <optional>
#include <cxxopts.hpp>
#include <iostream>
#include <sstream>

#include "src/error.h"
#include "src/memory_model.h"
#include "src/network_model.h"
#include "src/process_memory.h"
#include "src/time_model.h"
#include "train/cli/arguments.h"
#include "train/cli/commands.h"
#include "train/cli/load_options.h"
#include "train/scan_problem.h"

namespace tessera::cli {
namespace {

// The paper's data set: 16632 positions on a 126 x 132 grid.
constexpr double kPaperReduction = 51.0;

std::vector<int> parse_ranks(const std::string& list) {
  std::vector<int> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoi(item));
  TESSERA_REQUIRE(SettingsError, !out.empty(), "--ranks needs a comma-separated list, e.g. 6,462,4158");
  return out;
}

struct TimeSettings {
  TimeModelInputs inputs;
  NetworkModel network;
};

// The time model runs when a throughput is given; it needs a network too.
std::optional<TimeSettings> time_model_settings(const cxxopts::ParseResult& r) {
  const bool custom = r.count("latency-us") || r.count("bandwidth-gbps");
  if (!r.count("throughput")) {
    TESSERA_REQUIRE(SettingsError, !custom && !r.count("network"),
                    "the network options predict time per iteration: give --throughput (measured patterns/s of one "
                    "rank on one device) as well");
    return std::nullopt;
  }
  TimeSettings t;
  if (r.count("network")) {
    TESSERA_REQUIRE(SettingsError, !custom, "give either --network or --latency-us with --bandwidth-gbps, not both");
    t.network = NetworkModel::preset(r["network"].as<std::string>());
  } else {
    TESSERA_REQUIRE(SettingsError, r.count("latency-us") && r.count("bandwidth-gbps"),
                    "--throughput needs a network: --network summit|h100-cluster|loopback-gloo, or --latency-us "
                    "and --bandwidth-gbps");
    t.network = NetworkModel::custom(r["latency-us"].as<double>(), r["bandwidth-gbps"].as<double>(),
                                     r["ranks-per-node"].as<int>());
  }
  t.inputs.throughput = r["throughput"].as<double>();
  t.inputs.fft_floor_s = r["fft-floor-s"].as<double>();
  t.inputs.step_overhead_s = r["step-overhead-s"].as<double>();
  t.inputs.devices = r["devices"].as<int64_t>();
  const auto algorithm = r["allreduce"].as<std::string>();
  TESSERA_REQUIRE(SettingsError, algorithm == "ring" || algorithm == "tree",
                  "--allreduce must be ring or tree, got '", algorithm, "'");
  t.inputs.allreduce = algorithm == "ring" ? AllreduceAlgorithm::Ring : AllreduceAlgorithm::Tree;
  return t;
}

void print_time_prediction(const ScanGeometry& geom, const Tiling& tiling, TimeSettings t,
                           const MemoryModelInputs& memory, int64_t batch) {
  t.inputs.batch_size = batch;
  t.inputs.halo_bytes_per_pixel = memory.slices * 2 * memory.real_bytes;
  // The probe gradient and the loss, in the working precision.
  t.inputs.allreduce_bytes = (memory.probe_modes * geom.frame_h * geom.frame_w * 2 + 1) * memory.real_bytes;
  const auto p = predict_iteration_time(geom, tiling, t.inputs, t.network);
  const auto net = t.network.for_job(p.ranks);
  std::printf("  time model (%s; %.3g us, %.3g GB/s per rank): %.4g s/iteration overlapped, %.4g s serial\n",
              t.network.name.c_str(), net.latency_s * 1e6, net.rank_bandwidth_Bps() / 1e9, p.overlapped_s,
              p.serial_s);
  std::printf("    compute %.4g s (busiest rank: %.3g patterns per step at %.4g patterns/s, %lld rank(s) per "
              "device)",
              p.compute_s, p.busiest_patterns_per_step, t.inputs.throughput / static_cast<double>(p.ranks_per_device),
              static_cast<long long>(p.ranks_per_device));
  if (p.fft_floor_s > 0) std::printf(", FFT floor %.4g s = %.0f%% of it", p.fft_floor_s, 100 * p.fft_floor_s / p.compute_s);
  std::printf("\n    halo reduction %.4g s + refresh %.4g s (up to %lld messages, %s per rank per step), %s "
              "allreduce %.4g s, step overhead %.4g s\n",
              p.reduction_s, p.refresh_s, static_cast<long long>(p.max_messages_per_step),
              format_bytes(p.max_bytes_per_step).c_str(),
              t.inputs.allreduce == AllreduceAlgorithm::Ring ? "ring" : "tree", p.allreduce_s, p.overhead_s);
}

}  // namespace

int plan(int argc, char** argv) {
  // Before any work: what every rank holds besides its arrays.
  const int64_t baseline = resident_bytes();
  cxxopts::Options o("tessera plan",
                     "Tiling, neighbours, predicted memory per rank and halo traffic, without reconstructing. "
                     "Give a data file, or describe a raster scan (defaults: the paper's 126 x 132 grid).");
  o.add_options()
      ("data", "CXI data file (optional)", cxxopts::value<std::string>())
      ("ranks", "comma-separated rank counts, one tile per rank", cxxopts::value<std::string>()->default_value("6,462,4158"))
      ("scan-y", "scan points along y", cxxopts::value<int64_t>()->default_value("126"))
      ("scan-x", "scan points along x", cxxopts::value<int64_t>()->default_value("132"))
      ("step", "scan step (object pixels)", cxxopts::value<double>()->default_value("4"))
      ("frame", "frame (probe window) size, pixels", cxxopts::value<int64_t>()->default_value("128"))
      ("modes", "probe modes", cxxopts::value<int64_t>()->default_value("1"))
      ("slices", "object slices", cxxopts::value<int64_t>()->default_value("1"))
      ("chunk-size", "patterns per forward/backward pass", cxxopts::value<int64_t>()->default_value("64"))
      ("batch-size", "patterns per optimiser step over all ranks (0: as reconstruct)", cxxopts::value<int64_t>()->default_value("0"))
      ("optimizer-states", "optimiser state copies per element (Adam 2, SGD 1)", cxxopts::value<int64_t>()->default_value("2"))
      ("show", "ranks to list in detail", cxxopts::value<int>()->default_value("4"))
      ("precision", "float or double (bytes of the halos and the probe allreduce)",
       cxxopts::value<std::string>()->default_value("float"))
      ("throughput", "time model: measured patterns/s of one rank alone on one device", cxxopts::value<double>())
      ("fft-floor-s", "time model: measured seconds of a batched FFT + inverse FFT of every pattern of this scan "
       "on one device", cxxopts::value<double>()->default_value("0"))
      ("step-overhead-s", "time model: fixed seconds per optimiser step on each rank",
       cxxopts::value<double>()->default_value("0"))
      ("devices", "time model: devices the ranks share (0: one per rank; on a CPU, cores with 1 thread per rank)",
       cxxopts::value<int64_t>()->default_value("0"))
      ("network", "time model: summit, h100-cluster or loopback-gloo", cxxopts::value<std::string>())
      ("latency-us", "time model: custom network latency, microseconds", cxxopts::value<double>())
      ("bandwidth-gbps", "time model: custom network bandwidth per node, gigabits/s", cxxopts::value<double>())
      ("ranks-per-node", "time model: ranks sharing a node's bandwidth (custom network; 0: all)",
       cxxopts::value<int>()->default_value("1"))
      ("allreduce", "time model: ring or tree allreduce", cxxopts::value<std::string>()->default_value("ring"))
      ("h,help", "this help");
  add_load_options(o);
  o.parse_positional({"data"});
  o.positional_help("[DATA]");
  auto r = o.parse(argc, argv);
  require_no_extra_arguments(r, "plan");
  if (r.count("help")) {
    std::cout << o.help() << std::endl;
    return 0;
  }
  ScanGeometry geom;
  std::string what;
  if (r.count("data")) {
    auto p = ScanProblem::from_file(r["data"].as<std::string>(), parse_load_options(r));
    geom = p.scan;
    what = r["data"].as<std::string>();
  } else {
    const int64_t sy = r["scan-y"].as<int64_t>(), sx = r["scan-x"].as<int64_t>();
    const double step = r["step"].as<double>();
    const int64_t f = r["frame"].as<int64_t>();
    auto iy = torch::arange(sy, torch::kFloat64).view({-1, 1}).expand({sy, sx}).reshape({-1});
    auto ix = torch::arange(sx, torch::kFloat64).view({1, -1}).expand({sy, sx}).reshape({-1});
    geom = ScanGeometry::from_pixels(torch::stack({iy * step, ix * step}, 1), f, f);
    std::ostringstream w;
    w << sy << " x " << sx << " raster, step " << step << " px";
    what = w.str();
  }
  MemoryModelInputs in;
  in.probe_modes = r["modes"].as<int64_t>();
  in.slices = r["slices"].as<int64_t>();
  in.chunk_size = r["chunk-size"].as<int64_t>();
  in.optimizer_state_copies = r["optimizer-states"].as<int64_t>();
  const auto precision = r["precision"].as<std::string>();
  TESSERA_REQUIRE(SettingsError, precision == "float" || precision == "double",
                  "--precision must be float or double, got '", precision, "'");
  in.real_bytes = precision == "double" ? 8 : 4;
  const auto timing = time_model_settings(r);
  in.baseline_bytes = std::max<int64_t>(baseline, 0) + kReconstructionRuntimeBytes;
  const int64_t N = geom.num_positions();
  int64_t batch = r["batch-size"].as<int64_t>();
  if (batch <= 0) batch = std::max<int64_t>(std::min<int64_t>(N, 32), (N + 7) / 8);
  batch = std::min(batch, N);
  in.batch_size = batch;  // a tile's chunks hold at most its share of a step
  const int64_t steps = (N + batch - 1) / batch;
  const auto whole = predict_undecomposed_memory(geom, in);
  std::cout << "scan: " << what << ", " << N << " patterns of " << geom.frame_h << "x" << geom.frame_w << ", object "
            << geom.object_h << "x" << geom.object_w << " px, " << steps << " optimiser steps per iteration\n"
            << "undecomposed process: " << format_bytes(whole.total()) << " (process baseline "
            << format_bytes(whole.baseline) << ", object+state " << format_bytes(whole.object) << ", patterns "
            << format_bytes(whole.patterns) << ", intermediates " << format_bytes(whole.intermediates) << ")\n"
            << "  process baseline, once per rank: this process's resident size at start (the same LibTorch and "
               "libraries as reconstruct), "
            << (baseline < 0 ? std::string("not measurable here (no /proc/self/status), counted as 0")
                             : format_bytes(static_cast<double>(baseline)))
            << ", + " << format_bytes(static_cast<double>(kReconstructionRuntimeBytes))
            << " that a running reconstruction adds (measured once, src/memory_model.h)\n";
  for (int K : parse_ranks(r["ranks"].as<std::string>())) {
    auto tiling = Tiling::automatic(geom, K);
    // One pass over the links for every tile (1M links at K = 4158).
    const auto memory = predict_all_tile_memory(tiling, geom.frame_h, geom.frame_w, in);
    const auto sent = predict_all_tile_bytes_sent(tiling, in);
    std::vector<std::vector<int>> neighbours(tiling.num_tiles());
    for (const auto& l : tiling.links()) {
      neighbours[l.from].push_back(l.to);
      neighbours[l.to].push_back(l.from);
    }
    for (auto& nb : neighbours) {
      std::sort(nb.begin(), nb.end());
      nb.erase(std::unique(nb.begin(), nb.end()), nb.end());
    }
    int64_t max_mem = 0, max_sent = 0, max_nb = 0;
    double sum_mem = 0, sum_sent = 0;
    for (int k = 0; k < tiling.num_tiles(); ++k) {
      const auto m = memory[k].total();
      const auto b = sent[k] * steps;
      max_mem = std::max(max_mem, m);
      max_sent = std::max(max_sent, b);
      max_nb = std::max<int64_t>(max_nb, neighbours[k].size());
      sum_mem += m;
      sum_sent += b;
    }
    std::cout << "\nK = " << K << " ranks: tile grid " << tiling.tiles_y() << " x " << tiling.tiles_x() << ", "
              << tiling.links().size() << " halo links, up to " << max_nb << " neighbours per rank\n"
              << "  peak memory per rank: max " << format_bytes(max_mem) << ", mean "
              << format_bytes(sum_mem / K) << "; reduction against undecomposed: "
              << static_cast<double>(whole.total()) / max_mem << "x (paper reports " << kPaperReduction
              << "x for its own baseline)\n"
              << "  halo bytes sent per rank per iteration: max " << format_bytes(max_sent) << ", mean "
              << format_bytes(sum_sent / K) << " (+ probe allreduce "
              << format_bytes(static_cast<double>(steps * in.probe_modes * geom.frame_h * geom.frame_w * 2 *
                                                   in.real_bytes)) << ")\n";
    if (timing) print_time_prediction(geom, tiling, *timing, in, batch);
    const int show = std::min(r["show"].as<int>(), tiling.num_tiles());
    for (int k = 0; k < show; ++k) {
      const Tile& t = tiling.tile(k);
      const auto& m = memory[k];
      std::cout << "  rank " << k << ": owns " << t.owned.str() << ", extent " << t.extent.str() << ", "
                << t.positions.size() << " patterns, neighbours {";
      const auto& nb = neighbours[k];
      for (size_t i = 0; i < nb.size(); ++i) std::cout << (i ? "," : "") << nb[i];
      std::cout << "}, memory " << format_bytes(m.total()) << ", sends "
                << format_bytes(static_cast<double>(sent[k] * steps)) << "/iteration\n";
    }
  }
  return 0;
}

}  // namespace tessera::cli
