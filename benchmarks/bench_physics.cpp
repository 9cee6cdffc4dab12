// Figures of the physics options on simulated data, each against its baseline:
//
//   bench_physics multislice [iterations=100] [frame=32] [scan=12]
//       3-slice object: per-slice correlation with 3 slices, and slice 0..2 of a
//       1-slice reconstruction (which can only fit their projection).
//   bench_physics positions [iterations=100] [frame=32] [scan=12]
//       positions perturbed by up to +-2 px: RMS position error before and after
//       correction, object correlation with and without correction.
//   bench_physics modes [iterations=100] [frame=32] [scan=12]
//       3-mode data: object error and correlation with 3 modes and with 1.
//   bench_physics positions-only [iterations]
//       diagnosis: true object and probe, positions alone by gradient steps
//       (they stall in local minima about a pixel wide: why the engine also
//       searches +-1 px), with a finite-difference check of the gradient.
//   common options after those: [tiles=1] [threads=0]
//
// Every run starts from a flat object and a probe estimated from the data.
// Environment knobs for exploring: SEED (mini-batch order), POS_FROM
// (default 30), POS_RATE, SEARCH (search every N iterations), RATE_SCALE,
// PROBE_FROM, NO_CENTRE (no probe centring), TRUE_PROBE (start from the true
// probe, fixed), SLICE_M (slice distance), TRACE (position error every 5 iterations).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <ATen/CPUGeneratorImpl.h>

#include "data/simulate.h"
#include "models/losses.h"
#include "models/propagation.h"
#include "models/ptycho_model.h"
#include "src/image_quality.h"
#include "src/threads.h"
#include "train/reconstruction.h"
#include "train/run.h"

using namespace tessera;

namespace {

struct Options {
  std::string what;
  int iterations = 100;
  int64_t frame = 32, scan = 16;
  int tiles = 1;
};

struct Outcome {
  std::vector<Alignment> slices;
  double nrms = 0;         // slice 0, after the best integer shift
  double seconds = 0;
  torch::Tensor positions;  // refined (N, 2)
  int64_t moved = 0;
};

SimulationSettings base(const Options& o) {
  SimulationSettings s;
  s.frame = o.frame;
  s.scan_y = s.scan_x = o.scan;
  s.step_px = 3.0 * static_cast<double>(o.frame) / 32.0;
  s.photons = 1e6;
  return s;
}

Outcome reconstruct(ScanProblem problem, ReconstructionSettings s, const Options& o) {
  if (std::getenv("TRUE_PROBE")) {  // diagnosis: start from the true probe (not refined)
    problem.probe_guess = problem.truth->probe;
    s.probe_from = -1;
  }
  if (std::getenv("PROBE_FROM")) s.probe_from = std::atoi(std::getenv("PROBE_FROM"));
  if (std::getenv("RATE_SCALE")) s.rate_scale = std::atof(std::getenv("RATE_SCALE"));
  if (std::getenv("NO_CENTRE")) s.phase_ramp_gauge = "off";
  if (std::getenv("SEED")) s.seed = std::atoi(std::getenv("SEED"));
  if (std::getenv("SEARCH")) s.position_search_every = std::atoi(std::getenv("SEARCH"));
  s.iterations = o.iterations;
  s.tiles = o.tiles;
  s.quiet = true;
  Reconstruction rec(problem, s);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < o.iterations; ++i) {
    const auto st = rec.iterate();
    if (std::getenv("TRACE") && problem.truth && (i % 5 == 4)) {
      auto d = rec.positions() - problem.truth->positions_px;
      d = d - d.mean(0, true);
      std::printf("  iteration %d loss %.4e position error %.3f px RMS, max %.3f\n", i + 1, st.loss,
                  std::sqrt(d.pow(2).sum(1).mean().item<double>()), d.abs().max().item<double>());
    }
  }
  Outcome r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto object = rec.object();
  const int64_t L = problem.truth->object.size(0);
  for (int64_t l = 0; l < L; ++l) {
    // A 1-slice reconstruction is scored against every true slice.
    auto single = object.size(0) == 1 ? object.expand({L, object.size(1), object.size(2)}) : object;
    r.slices.push_back(score_against_truth(problem, single, l).value());
  }
  const auto& sc = problem.scan;
  Rect region = sc.scanned_region();
  region = {region.y0 + sc.frame_h / 4, region.x0 + sc.frame_w / 4, region.h - sc.frame_h / 2, region.w - sc.frame_w / 2};
  r.nrms = normalised_rms_error(problem.truth->object[0], object[0], region, r.slices[0].shift_y, r.slices[0].shift_x);
  r.positions = rec.positions();
  r.moved = rec.patterns_moved();
  return r;
}

void print(const char* label, const Outcome& r) {
  std::printf("%-28s", label);
  for (size_t l = 0; l < r.slices.size(); ++l)
    std::printf("  slice %zu: %.4f (ramp-free %.4f)", l, r.slices[l].correlation, r.slices[l].correlation_without_ramp);
  std::printf("  NRMS %.4f  %.1f s\n", r.nrms, r.seconds);
}

// RMS distance between refined and true window corners after removing the
// mean offset (a global translation is invisible to the data).
double rms_position_error(const torch::Tensor& positions, const torch::Tensor& truth) {
  auto d = positions - truth;
  d = d - d.mean(0, true);
  return std::sqrt(d.pow(2).sum(1).mean().item<double>());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_physics multislice|positions|modes [iterations] [frame] [scan] [tiles] [threads]\n");
    return 2;
  }
  Options o;
  o.what = argv[1];
  if (argc > 2) o.iterations = std::atoi(argv[2]);
  if (argc > 3) o.frame = std::atoll(argv[3]);
  if (argc > 4) o.scan = std::atoll(argv[4]);
  if (argc > 5) o.tiles = std::atoi(argv[5]);
  const int threads = configure_threads(argc > 6 ? std::atoi(argv[6]) : 0);
  std::printf("%s: %d iterations, %ldx%ld scan of %ld px frames, %d tile(s), %d threads\n", o.what.c_str(),
              o.iterations, static_cast<long>(o.scan), static_cast<long>(o.scan), static_cast<long>(o.frame), o.tiles,
              threads);
  ReconstructionSettings s;
  if (o.what == "multislice") {
    auto sim = base(o);
    sim.slices = 3;
    sim.slice_phase_fraction = 1;  // 0.5 rad RMS per slice: a flat slice scores ~0.88
    // Slices far enough apart (in units of the probe's depth of field) to be told apart.
    sim.slice_thickness_m = std::getenv("SLICE_M") ? std::atof(std::getenv("SLICE_M")) : 2e-3;
    auto problem = ScanProblem::from_content(simulate(sim));
    std::printf("slice distance %.3g m\n", sim.slice_thickness_m);
    s.slices = 3;
    s.slice_thickness_m = sim.slice_thickness_m;
    print("3 slices", reconstruct(problem, s, o));
    s.slices = 1;
    print("1 slice", reconstruct(problem, s, o));
  } else if (o.what == "positions") {
    auto content = simulate(base(o));
    const auto truth = content.truth->positions_px.clone();
    // The positions the reconstruction is told are off by up to +-2 pixels
    // (the object array keeps the truth's size: the simulation leaves a
    // 2-pixel margin).
    auto gen = at::detail::createCPUGenerator(42);
    auto error_px = (torch::rand({truth.size(0), 2}, gen, torch::kFloat64) * 2 - 1) * 2.0;
    auto problem = ScanProblem::from_content(content);
    problem.scan.positions_px = truth + error_px;
    const auto& stated = problem.scan.positions_px;
    const auto& truth_here = truth;
    std::printf("position error as given: %.3f px RMS\n", rms_position_error(stated, truth_here));
    print("no correction", reconstruct(problem, s, o));
    s.positions_from = std::getenv("POS_FROM") ? std::atoi(std::getenv("POS_FROM")) : 30;
    if (std::getenv("POS_RATE")) s.position_rate = std::atof(std::getenv("POS_RATE"));
    auto r = reconstruct(problem, s, o);
    print("position correction", r);
    std::printf("position error after correction: %.3f px RMS (%ld patterns changed tile)\n",
                rms_position_error(r.positions, truth_here), static_cast<long>(r.moved));
    {  // diagnosis: residual after the best affine map
      auto X = torch::cat({truth_here, torch::ones({truth_here.size(0), 1}, torch::kFloat64)}, 1);
      auto sol = std::get<0>(torch::linalg_lstsq(X, r.positions, c10::nullopt, c10::nullopt));
      auto fit = X.matmul(sol);
      auto d = (r.positions - truth_here);
      d = (d - d.mean(0, true)).pow(2).sum(1).sqrt();
      auto sorted = std::get<0>(d.sort());
      const int64_t n = d.numel();
      std::printf("error percentiles 25/50/75/90/max: %.3f %.3f %.3f %.3f %.3f\n", sorted[n / 4].item<double>(),
                  sorted[n / 2].item<double>(), sorted[3 * n / 4].item<double>(), sorted[9 * n / 10].item<double>(),
                  sorted[n - 1].item<double>());
      {
        double edge = 0, inner = 0;
        int ne = 0, ni = 0;
        for (int64_t j = 0; j < n; ++j) {
          const int64_t iy = j / o.scan, ix = j % o.scan;
          const bool ring = iy < 2 || ix < 2 || iy >= o.scan - 2 || ix >= o.scan - 2;
          (ring ? edge : inner) += d[j].item<double>() * d[j].item<double>();
          (ring ? ne : ni)++;
        }
        std::printf("RMS error: outer two rings %.3f px (%d), inside %.3f px (%d)\n", std::sqrt(edge / ne), ne,
                    std::sqrt(inner / ni), ni);
      }
      std::printf("after removing an affine map: %.3f px RMS; map %s\n",
                  std::sqrt((r.positions - fit).pow(2).sum(1).mean().item<double>()),
                  c10::str(sol).c_str());
    }
  } else if (o.what == "positions-only") {
    // Diagnosis: true object and probe, only positions optimised.
    auto content = simulate(base(o));
    const auto truth = content.truth->positions_px.clone();
    auto gen = at::detail::createCPUGenerator(42);
    auto error_px = (torch::rand({truth.size(0), 2}, gen, torch::kFloat64) * 2 - 1) * 2.0;
    auto frames = to_fft_order(content.frames).to(torch::kFloat32);
    PtychoModel model(content.truth->object, content.truth->probe);
    auto pos = (truth + error_px).to(torch::kFloat32).requires_grad_(true);
    torch::optim::Adam opt({pos}, torch::optim::AdamOptions(std::getenv("POS_RATE") ? std::atof(std::getenv("POS_RATE")) : 0.02));
    {
      auto f = [&](const torch::Tensor& p) {
        return loss_by_name("amplitude").function(model->forward(p), frames, torch::Tensor()).item<double>();
      };
      auto p0 = pos.detach().clone();
      auto l = loss_by_name("amplitude").function(model->forward(pos), frames, torch::Tensor());
      l.backward();
      for (int j = 0; j < 3; ++j)
        for (int a = 0; a < 2; ++a) {
          auto pp = p0.clone(), pm = p0.clone();
          pp[j][a] += 0.01;
          pm[j][a] -= 0.01;
          std::printf("pattern %d axis %d: autograd %.4e finite difference %.4e (error %.3f)\n", j, a,
                      pos.grad()[j][a].item<double>(), (f(pp) - f(pm)) / 0.02, error_px[j][a].item<double>());
        }
      pos.mutable_grad().zero_();
    }
    for (int it = 0; it < o.iterations; ++it) {
      opt.zero_grad();
      auto loss = loss_by_name("amplitude").function(model->forward(pos), frames, torch::Tensor());
      loss.backward();
      opt.step();
      if (it % 20 == 0 || it == o.iterations - 1)
        std::printf("step %d loss %.4e position error %.3f px RMS\n", it, loss.item<double>(),
                    rms_position_error(pos.detach().to(torch::kFloat64), truth));
    }
  } else if (o.what == "modes") {
    auto sim = base(o);
    sim.probe_modes = 3;
    auto problem = ScanProblem::from_content(simulate(sim));
    s.probe_modes = 3;
    print("3 modes", reconstruct(problem, s, o));
    s.probe_modes = 1;
    print("1 mode", reconstruct(problem, s, o));
  } else {
    std::fprintf(stderr, "unknown figure '%s'\n", o.what.c_str());
    return 2;
  }
  return 0;
}
