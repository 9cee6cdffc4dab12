// Seconds per iteration of the single-process reconstruction against the FFT
// floor: the batched FFTs (forward model) and inverse FFTs (its adjoint, in
// backward) that one iteration must do, timed in the same run on the same data.
//
//   bench_iteration [frames_per_side=20] [frame=64] [iterations=10] [threads=0]
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "data/simulate.h"
#include "src/threads.h"
#include "train/reconstruction.h"
#include <torch/csrc/autograd/profiler_legacy.h>

using namespace tessera;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  const int64_t side = argc > 1 ? std::atoll(argv[1]) : 20;
  const int64_t frame = argc > 2 ? std::atoll(argv[2]) : 64;
  const int iterations = argc > 3 ? std::atoi(argv[3]) : 10;
  const int threads = configure_threads(argc > 4 ? std::atoi(argv[4]) : 0);
  SimulationSettings sim;
  sim.scan_y = sim.scan_x = side;
  sim.frame = frame;
  auto content = simulate(sim);
  ReconstructionSettings s;
  s.quiet = true;
  Reconstruction rec(ScanProblem::from_content(content), s);
  rec.iterate();  // warm-up
  if (std::getenv("TESSERA_PROFILE")) {  // Chrome trace of one iteration, for finding the hot ops
    torch::autograd::profiler::RecordProfile guard(std::getenv("TESSERA_PROFILE"));
    rec.iterate();
  }
  const auto t0 = Clock::now();
  for (int i = 0; i < iterations; ++i) rec.iterate();
  const double per_iteration = std::chrono::duration<double>(Clock::now() - t0).count() / iterations;

  // The floor: every pattern's exit wave goes through one FFT forward and one
  // inverse FFT backward, in the same chunks as the engine.
  const int64_t n = side * side, chunk = s.chunk_size;
  auto waves = torch::randn({chunk, 1, frame, frame}, torch::kComplexFloat);
  auto fft_round = [&] {
    for (int64_t b = 0; b < n; b += chunk) {
      auto w = b + chunk <= n ? waves : waves.slice(0, 0, n - b);
      auto f = torch::fft::fft2(w, c10::nullopt, {-2, -1}, "ortho");
      auto g = torch::fft::ifft2(f, c10::nullopt, {-2, -1}, "ortho");
    }
  };
  fft_round();
  const auto t1 = Clock::now();
  for (int i = 0; i < iterations; ++i) fft_round();
  const double floor = std::chrono::duration<double>(Clock::now() - t1).count() / iterations;
  std::printf("patterns %ld of %ldx%ld, batch %ld, chunk %ld, threads %d\n", static_cast<long>(n),
              static_cast<long>(frame), static_cast<long>(frame), static_cast<long>(rec.batch_size()),
              static_cast<long>(chunk), threads);
  std::printf("seconds per iteration      %.4f\n", per_iteration);
  std::printf("FFT floor per iteration    %.4f  (%ld forward + %ld inverse %ldx%ld FFTs)\n", floor,
              static_cast<long>(n), static_cast<long>(n), static_cast<long>(frame), static_cast<long>(frame));
  std::printf("ratio iteration / floor    %.2f  (target <= 1.5)\n", per_iteration / floor);
  std::printf("patterns per second        %.0f\n", n / per_iteration);
  return 0;
}
