// End-to-end single-process reconstruction: accuracy against the simulated
// truth for each loss and several optimisers, resume, divergence, bad settings.
#include <gtest/gtest.h>

#include <filesystem>

#include "data/simulate.h"
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

// Returns the correlation (global phase and integer shift removed),
// or with ramp = true the same after also removing a linear phase ramp, the
// one degree of freedom ptychographic data cannot fix.
double reconstruct_and_score(const std::string& optimizer, const std::string& loss, int iterations,
                             double rate_scale = 1, bool ramp = false) {
  configure_threads(0);
  ReconstructionSettings s;
  s.optimizer = optimizer;
  s.loss = loss;
  s.iterations = iterations;
  s.rate_scale = rate_scale;
  s.quiet = true;
  auto problem = ScanProblem::from_content(sample());
  Reconstruction rec(problem, s);
  for (int i = 0; i < iterations; ++i) rec.iterate();
  const auto a = score_against_truth(problem, rec.object()).value();
  std::printf("%s/%s, %d iterations: correlation %.4f (%.4f without phase ramp)\n", optimizer.c_str(), loss.c_str(),
              iterations, a.correlation, a.correlation_without_ramp);
  return ramp ? a.correlation_without_ramp : a.correlation;
}

fs::path temp_dir() {
  auto d = fs::temp_directory_path() / ("tessera_test_rec_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST(Reconstruction, AdamAmplitudeReachesTheTruthUpToAPhaseRamp) {
  EXPECT_GE(reconstruct_and_score("adam", "amplitude", 60, 1, true), 0.99);
}

TEST(Reconstruction, AdamPoissonReachesTheTruthUpToAPhaseRamp) {
  EXPECT_GE(reconstruct_and_score("adam", "poisson", 60, 1, true), 0.99);
}

TEST(Reconstruction, SgdAmplitudeReachesTheTruth) {
  EXPECT_GE(reconstruct_and_score("sgd", "amplitude", 60), 0.99);
}

TEST(Reconstruction, FlatObjectScoresLow) {
  // The metric itself must be able to fail: the starting object is far off.
  EXPECT_LT(reconstruct_and_score("adam", "amplitude", 0), 0.9);
}

TEST(Reconstruction, ResumeIsBitForBit) {
  configure_threads(0);
  const auto dir = temp_dir();
  ReconstructionSettings s;
  s.iterations = 6;
  s.quiet = true;
  s.checkpoint_every = 0;
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
  EXPECT_TRUE(torch::equal(a.object, b.object)) << "max difference "
                                                << torch::abs(a.object - b.object).max().item<double>();
  EXPECT_TRUE(torch::equal(a.probe, b.probe));
  fs::remove_all(dir);
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
}
