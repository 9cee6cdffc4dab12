#include "train/run.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>

#include "src/comm/communicator.h"
#include "src/comm/gather.h"
#include "src/comm/setup_agreement.h"
#include "src/error.h"
#include "src/image_quality.h"
#include "src/io/atomic_file.h"
#include "src/io/png.h"
#include "train/output_location.h"
#include "train/result_file.h"
#include "train/resume_check.h"

namespace tessera {

std::string sibling_path(const std::string& result, const std::string& suffix) {
  std::string stem = result;
  const auto slash = stem.find_last_of('/');
  const auto dot = stem.find_last_of('.');
  if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) stem = stem.substr(0, dot);
  return stem + suffix;
}

std::optional<Rect> scan_interior(const ScanGeometry& s) {
  const Rect in = s.interior();
  if (in.empty()) return std::nullopt;
  return in;
}

std::optional<Alignment> score_against_truth(const ScanProblem& problem, const torch::Tensor& object,
                                             int64_t slice) {
  if (!problem.truth || !object.defined()) return std::nullopt;
  const auto& t = problem.truth->object;
  if (t.dim() != 3 || object.dim() != 3 || slice >= t.size(0) || slice >= object.size(0)) return std::nullopt;
  torch::Tensor o = object[slice];
  if (o.sizes() != t[slice].sizes()) {
    // Positions stated with errors give a slightly different object array
    // (it is sized from them): compare on the truth's grid, the integer
    // offset being found by the shift search below.
    auto grid = torch::ones_like(t[slice]).to(o.dtype());
    const int64_t h = std::min(o.size(0), grid.size(0)), w = std::min(o.size(1), grid.size(1));
    grid.slice(0, 0, h).slice(1, 0, w).copy_(o.slice(0, 0, h).slice(1, 0, w));
    o = grid;
  }
  const auto interior = scan_interior(problem.scan);
  if (!interior) return std::nullopt;
  const Rect r = interior->intersect(Rect{0, 0, t.size(1), t.size(2)});
  if (r.empty()) return std::nullopt;
  // The probe and object can trade a translation (probe drifts one way, object
  // the other): search shifts up to a quarter window.
  const auto a = phase_correlation(t[slice], o, r, std::max<int64_t>(4, problem.scan.frame_h / 4));
  return a;
}

namespace {

// Everything a run writes besides the result file (see Writer::write).
std::vector<std::string> files_beside(const RunOptions& options) {
  std::vector<std::string> files{sibling_path(options.output, "_metrics.csv")};
  if (options.previews)
    for (const char* suffix : {"_object_phase.png", "_object_amplitude.png", "_probe_amplitude.png"})
      files.push_back(sibling_path(options.output, suffix));
  return files;
}

// Where each tile lies, one line: a resume with other tiles cannot reuse
// the tiles' optimiser states (train/resume_check.h).
std::string describe_tiles(const Tiling& tiling) {
  std::string s;
  for (int k = 0; k < tiling.num_tiles(); ++k) s += (k ? " " : "") + tiling.tile(k).extent.str();
  return s;
}

// What every rank must agree on: the settings (less the per-rank thread
// count and device) and the data set's shape as loaded.
std::string settings_digest(const ReconstructionSettings& settings, const ScanProblem& problem) {
  ReconstructionSettings common = settings;
  common.threads = 0;
  common.device = settings.device.rfind("cuda", 0) == 0 ? "cuda" : settings.device;  // cuda:N differs per rank
  const auto& s = problem.scan;
  return common.describe() + "patterns = " + std::to_string(s.num_positions()) + "\nframe = " +
         std::to_string(s.frame_h) + " x " + std::to_string(s.frame_w) + "\nobject = " + std::to_string(s.object_h) +
         " x " + std::to_string(s.object_w) + "\n";
}

struct Writer {
  const ScanProblem& problem;
  const ReconstructionSettings& settings;
  const RunOptions& options;
  std::string fingerprint;
  std::vector<double> loss, seconds;
  std::vector<std::string> files;

  void write(Reconstruction& rec, bool final_write, const torch::Tensor& raw_object, const torch::Tensor& raw_probe,
             const OptimizerStates& states) {
    if (rec.rank() != 0) return;
    const torch::Tensor& object = raw_object;
    const torch::Tensor& probe = raw_probe;
    ReconstructionResult r;
    r.object = object;
    r.probe = probe;
    r.positions_px = rec.positions();
    r.pixel_size_m = torch::tensor({problem.experiment.pixel_y_m(), problem.experiment.pixel_x_m()}, torch::kFloat64);
    r.loss = loss;
    r.seconds = seconds;
    r.iteration = rec.iteration();
    r.settings = settings.describe() + "object_rate_used = " + std::to_string(rec.object_rate()) +
                 "\nprobe_rate_used = " + std::to_string(rec.probe_rate()) +
                 "\nbatch_size_used = " + std::to_string(rec.batch_size()) +
                 "\ntiles_used = " + describe_tiles(rec.tiling()) + "\n";
    for (const auto& [prior, ps] : options.priors)
      r.settings += "prior = " + prior->name() +
                    (prior->is_regulariser() ? ", weight " + std::to_string(ps.weight) : std::string()) +
                    (prior->is_denoiser() ? ", every " + std::to_string(ps.every) + ", blend " + std::to_string(ps.blend)
                                          : std::string()) +
                    "\n";
    r.data_file = problem.source;
    r.data_fingerprint = fingerprint;
    r.run_file = options.run_file;
    r.optimizer_states = states;
    write_result(options.output, r);
    files = {options.output};
    if (!final_write) return;
    const std::string csv = sibling_path(options.output, "_metrics.csv");
    write_atomically(csv, [&](const std::string& tmp) {
      std::ofstream f(tmp);
      f << "iteration,loss,seconds\n";
      for (size_t i = 0; i < loss.size(); ++i) f << (i + 1) << "," << loss[i] << "," << seconds[i] << "\n";
      TESSERA_REQUIRE(Error, f.good(), "cannot write ", tmp);
    });
    files.push_back(csv);
    if (options.previews) {
      // Previews show the scanned region, with the global phase removed so
      // that the phase does not wrap, and their contrast set by the well-lit
      // interior: the barely lit border would otherwise stretch the scale.
      const Rect sr = problem.scan.scanned_region();
      auto o = object[0].slice(0, sr.y0, sr.y1()).slice(1, sr.x0, sr.x1());
      auto mean = o.mean();
      o = o * torch::polar(torch::ones_like(torch::abs(mean)), -torch::angle(mean));
      const auto phase = sibling_path(options.output, "_object_phase.png");
      const auto amp = sibling_path(options.output, "_object_amplitude.png");
      const auto pr = sibling_path(options.output, "_probe_amplitude.png");
      auto range = [&](const torch::Tensor& image) -> std::pair<double, double> {
        const auto in = scan_interior(problem.scan);
        if (!in) return {0, 0};  // write_png's own percentiles
        const Rect r = in->relative_to(sr);
        auto v = image.slice(0, r.y0, r.y1()).slice(1, r.x0, r.x1()).flatten().to(torch::kFloat64);
        auto q = torch::quantile(v, torch::tensor({0.005, 0.995}, torch::kFloat64));
        return {q[0].item<double>(), q[1].item<double>()};
      };
      const auto phase_image = torch::angle(o), amp_image = torch::abs(o);
      const auto [plo, phi] = range(phase_image);
      const auto [alo, ahi] = range(amp_image);
      write_png(phase, phase_image, plo, phi);
      write_png(amp, amp_image, alo, ahi);
      write_png(pr, torch::abs(probe[0]));
      files.insert(files.end(), {phase, amp, pr});
    }
  }
};

// Every tile's optimiser state, on rank 0 (each rank holds only its own
// tiles'): the result file that rank 0 writes must hold them all, or --resume
// fails for every tile not on rank 0. Called by every rank, like a collective;
// other ranks get an empty map.
OptimizerStates gather_optimizer_states(const Reconstruction& rec, comm::Communicator* comm) {
  OptimizerStates states = rec.optimizer_states();
  if (!comm || comm->size() == 1) return states;
  std::string bytes;  // per entry: key length, key, value length, value (int64 lengths)
  auto put = [&bytes](const std::string& s) {
    const int64_t n = static_cast<int64_t>(s.size());
    bytes.append(reinterpret_cast<const char*>(&n), sizeof n);
    bytes += s;
  };
  for (const auto& [key, value] : states) {
    put(key);
    put(value);
  }
  const auto parts = comm::gather_bytes(*comm, bytes);
  if (comm->rank() != 0) return {};
  for (int r = 1; r < comm->size(); ++r) {
    const char* p = parts[r].data();
    const char* end = p + parts[r].size();
    auto get = [&]() {
      int64_t n = 0;
      TESSERA_REQUIRE(CommunicationError, end - p >= static_cast<int64_t>(sizeof n), "rank ", r,
                      " sent a truncated optimizer state");
      std::memcpy(&n, p, sizeof n);
      p += sizeof n;
      TESSERA_REQUIRE(CommunicationError, n >= 0 && end - p >= n, "rank ", r, " sent a truncated optimizer state");
      std::string s(p, static_cast<size_t>(n));
      p += n;
      return s;
    };
    while (p < end) {
      std::string key = get();
      states[key] = get();
    }
  }
  return states;
}

}  // namespace

RunSummary run_reconstruction(ScanProblem problem, const ReconstructionSettings& settings, const RunOptions& options,
                              std::shared_ptr<comm::Communicator> comm) {
  // Under a launcher, "cuda" means this rank's GPU (LOCAL_RANK, as the
  // communicator chose it), not GPU 0 for every rank of the node.
  ReconstructionSettings rank_settings = settings;
  if (comm && comm->device().is_cuda() && torch::Device(settings.device).is_cuda() &&
      !torch::Device(settings.device).has_index())
    rank_settings.device = comm->device().str();
  // Ranks started differently (options, data) stop here, each naming the difference.
  comm::require_same_settings(comm.get(), settings_digest(settings, problem));
  std::string fingerprint;
  std::optional<ReconstructionResult> prev;
  comm::agree_on_setup(comm.get(), [&] {
    // Before any work: a run must neither destroy its input nor be lost at its last step.
    if (!comm || comm->rank() == 0)
      check_output_location(options.output, files_beside(options), {problem.source}, options.overwrite);
    fingerprint = data_fingerprint(problem);
    if (!options.resume.empty()) {
      // Checked before the engine is built (and the defocus search spent).
      prev = read_result(options.resume);
      check_resumable(*prev, options.resume, settings, fingerprint);
    }
  });
  Reconstruction rec(problem, rank_settings, comm);
  for (const auto& [prior, ps] : options.priors) rec.add_prior(prior, ps);
  const bool root = rec.rank() == 0;
  Writer writer{rec.problem(), rec.settings(), options, fingerprint, {}, {}, {}};
  if (prev) {
    OptimizerStates states = prev->optimizer_states;
    const std::string tiles_before = setting_value(prev->settings, "tiles_used");
    if (!tiles_before.empty() && tiles_before != describe_tiles(rec.tiling()))
      for (auto it = states.begin(); it != states.end();)
        it = it->first.rfind("tile_", 0) == 0 ? states.erase(it) : std::next(it);
    const bool states_kept = rec.restore(prev->object, prev->probe, prev->iteration, states, prev->positions_px);
    writer.loss = prev->loss;
    writer.seconds = prev->seconds;
    if (root && !states_kept)
      std::cerr << "warning: " << options.resume
                << ": the optimiser state stored there does not fit this run's tiles (another tiling, or none "
                   "stored); the optimisers start afresh, the object, probe and iteration count continue"
                << std::endl;
    if (root && !settings.quiet)
      std::cout << "resuming " << options.resume << " after iteration " << prev->iteration << std::endl;
  }
  if (root && !settings.quiet) {
    std::cout << "tessera " << TESSERA_VERSION << ": " << problem.source << ", " << problem.scan.num_positions()
              << " patterns of " << problem.scan.frame_h << "x" << problem.scan.frame_w << ", object "
              << problem.scan.object_h << "x" << problem.scan.object_w << " px, " << rec.tiling().num_tiles()
              << " tile(s), " << settings.optimizer << "/" << settings.loss << ", batch " << rec.batch_size()
              << ", rates object " << rec.object_rate() << " probe " << rec.probe_rate() << std::endl;
    const auto z = rec.zero_order();
    const auto& g = rec.problem().experiment;
    std::cout << "zero order at pixel (" << z.first << ", " << z.second << ") of the frames"
              << (g.zero_order_source == "file"     ? " (from the file)"
                  : g.zero_order_source == "option" ? " (from --zero-order)"
                  : g.zero_order_source == "data"   ? " (estimated: centroid of the mean pattern's bright region)"
                                                    : " (frame centre)");
    const auto t = rec.probe_tilt_px();
    if (t.first != 0 || t.second != 0)
      std::cout << "; probe guess tilted by (" << t.first << ", " << t.second << ") px onto it";
    if (rec.probe_guess_scale() != 1)
      std::cout << "; probe guess scaled by " << rec.probe_guess_scale() << " to the data's mean counts";
    std::cout << std::endl;
    if (const auto& e = rec.defocus_estimate()) {
      std::cout << "probe defocus from the shadow parallax (" << e->positions << " positions, " << e->detector_groups
                << " detector blocks, aperture edge at " << e->radius_px << " px): ";
      if (e->reliable)
        std::cout << e->edge_phase_rad << " rad at the aperture edge (coherence " << e->coherence << ", opposite sign "
                  << e->mirror << " as good)";
      else
        std::cout << "none (" << e->why_not << "; best " << e->edge_phase_rad << " rad, coherence " << e->coherence
                  << ", opposite sign " << e->mirror << " as good)";
      std::cout << std::endl;
    }
    if (!rec.defocus_search().empty()) {
      std::cout << "probe defocus search (radians at the aperture edge: loss after "
                << settings.defocus_search_iterations << " iterations):";
      for (const auto& [c, l] : rec.defocus_search()) std::cout << " " << c << ": " << l;
      std::cout << std::endl;
    }
  }
  // The last state known good, written if the run diverges. A single process
  // keeps it every iteration (a copy of the object); several ranks keep it at
  // checkpoints, which avoids gathering the object on rank 0 every iteration.
  const bool single = !comm || comm->size() == 1;
  torch::Tensor good_object = rec.object(), good_probe = rec.probe();
  RunSummary summary;
  const auto t0 = std::chrono::steady_clock::now();
  while (rec.iteration() < settings.iterations) {
    IterationStats st;
    try {
      st = rec.iterate();
    } catch (const Error& e) {
      if (std::string(e.what()).find("diverged") == std::string::npos) throw;
      // No optimiser state: resuming a diverged run should not be silent.
      writer.write(rec, true, good_object, good_probe, {});
      throw;
    }
    writer.loss.push_back(st.loss);
    writer.seconds.push_back(st.seconds);
    const bool last = rec.iteration() == settings.iterations;
    const bool checkpoint = settings.checkpoint_every > 0 && rec.iteration() % settings.checkpoint_every == 0;
    if (single || checkpoint || last) {
      good_object = rec.object();
      good_probe = rec.probe();
    }
    if (checkpoint && !last)
      writer.write(rec, false, good_object, good_probe, gather_optimizer_states(rec, comm.get()));
    if (root && !settings.quiet) {
      const double remaining = st.seconds * (settings.iterations - rec.iteration());
      std::printf("iter %4d/%d  loss %.6e  %.3f s/it  ETA %.0f s\n", rec.iteration(), settings.iterations, st.loss,
                  st.seconds, remaining);
      std::fflush(stdout);
    }
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  summary.iterations = rec.iteration();
  summary.final_loss = writer.loss.empty() ? 0 : writer.loss.back();
  rec.release_frames();
  writer.write(rec, true, good_object, good_probe, gather_optimizer_states(rec, comm.get()));
  summary.score = root ? score_against_truth(rec.problem(), good_object) : std::nullopt;
  if (root) {
    const auto in = scan_interior(rec.problem().scan);
    if (in && good_object.defined()) summary.phase_gradient = mean_phase_gradient(good_object[0], *in);
  }
  summary.files = writer.files;
  return summary;
}

}  // namespace tessera
