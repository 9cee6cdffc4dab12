// Seconds per iteration of the single-process reconstruction against the FFT
// floor: the batched FFTs (forward model) and inverse FFTs (its adjoint, in
// backward) that one iteration must do, timed in the same run on the same data.
// On a machine shared with other work, compare thread counts and run with
// OMP_WAIT_POLICY=PASSIVE: OpenMP workers spin at every join, and one that is
// descheduled turns each parallel region into a wait for a time slice.
//
//   bench_iteration [frames_per_side=20 | YxX] [frame=64] [iterations=10] [threads=0] [chunk=engine default]
//   (OPTIMIZER and LOSS in the environment override the engine's defaults; FFT_LIBRARIES=fftw,mkl
//   times only those; STEP the
//   scan step in pixels, default the simulator's; DEVICE=cuda runs on the GPU)
//
// On the CPU every FFT library the build has (src/fft/batched_fft.h) is timed
// in turn, in the same run: its floor and the iteration with the fused
// operators calling it; the build's default is marked.
// On CUDA the floor is cuFFT on each chunk as one batch (the fused loss's
// call), synchronised; the peak GPU memory of the timed iterations (the
// caching allocator's high-water mark of allocated bytes) is printed next to
// the memory model's prediction for the same run (what `tessera plan` prints
// for one rank).
//
// The paper's problem on one GPU (16632 patterns of 128 x 128, step 4):
//   DEVICE=cuda STEP=4 bench_iteration 126x132 128 5
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <vector>

#include <ATen/Parallel.h>

#include "data/simulate.h"
#include "models/far_field_loss.h"
#include "src/fft/batched_fft.h"
#include "src/memory_model.h"
#include "src/threads.h"
#include "train/reconstruction.h"
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/cuda.h>
#ifdef TESSERA_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

using namespace tessera;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()); }

// Peak bytes allocated on the GPU since the last reset (-1: not measurable in this build).
int64_t gpu_peak_bytes(const torch::Device& d) {
#ifdef TESSERA_WITH_CUDA
  if (d.is_cuda()) return c10::cuda::CUDACachingAllocator::getDeviceStats(d.index()).allocated_bytes[0].peak;
#endif
  return -1;
}

void reset_gpu_peak(const torch::Device& d) {
#ifdef TESSERA_WITH_CUDA
  if (d.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(d.index());
#endif
}

// A scan of "N" (N x N) or "YxX" points.
std::pair<int64_t, int64_t> scan_shape(const char* text) {
  const std::string t(text);
  const auto x = t.find('x');
  if (x == std::string::npos) return {std::atoll(text), std::atoll(text)};
  return {std::atoll(t.substr(0, x).c_str()), std::atoll(t.substr(x + 1).c_str())};
}

}  // namespace

int main(int argc, char** argv) {
  const auto [scan_y, scan_x] = argc > 1 ? scan_shape(argv[1]) : std::pair<int64_t, int64_t>{20, 20};
  if (scan_y < 1 || scan_x < 1) {
    std::fprintf(stderr, "bench_iteration: the scan must be N or YxX with N, Y, X >= 1, got '%s'\n", argv[1]);
    return 1;
  }
  const int64_t frame = argc > 2 ? std::atoll(argv[2]) : 64;
  const int iterations = std::max(1, argc > 3 ? std::atoi(argv[3]) : 10);
  const int threads = configure_threads(argc > 4 ? std::atoi(argv[4]) : 0);
  SimulationSettings sim;
  sim.scan_y = scan_y;
  sim.scan_x = scan_x;
  sim.frame = frame;
  if (const char* st = std::getenv("STEP")) sim.step_px = std::atof(st);
  auto content = simulate(sim);
  ReconstructionSettings s;
  s.quiet = true;
  if (argc > 5) s.chunk_size = std::max<int64_t>(1, std::atoll(argv[5]));
  if (const char* o = std::getenv("OPTIMIZER")) s.optimizer = o;  // the default is the engine's (adam)
  if (const char* l = std::getenv("LOSS")) s.loss = l;
  if (const char* d = std::getenv("DEVICE")) s.device = d;
  torch::Device device(s.device);
  const bool cuda = device.is_cuda();
  if (cuda && !device.has_index()) device = torch::Device(torch::kCUDA, 0);
  auto sync = [&] {
    if (cuda) torch::cuda::synchronize();
  };
  auto problem = ScanProblem::from_content(content);
  const auto geometry = problem.scan;
  Reconstruction rec(std::move(problem), s);
  rec.iterate();  // warm-up
  sync();
  if (std::getenv("TESSERA_PROFILE")) {  // Chrome trace of one iteration, for finding the hot ops
    torch::autograd::profiler::RecordProfile guard(std::getenv("TESSERA_PROFILE"));
    rec.iterate();
  }
  // The floor: every pattern's exit wave goes through one FFT forward and one
  // inverse FFT, in the engine's calls: mini-batches cut into chunks (one
  // pass of the model each), chunks into the fused loss's blocks.
  const int64_t n = scan_y * scan_x, chunk = std::min(s.chunk_size, rec.batch_size());
  const int64_t block = cuda ? chunk : fused_loss_block(1, frame, frame, torch::kComplexFloat);
  auto waves = torch::randn({block, 1, frame, frame}, torch::TensorOptions(torch::kComplexFloat).device(device));
  // Each thread transforms its own block, as the fused loss's threads do:
  // two threads on one array would fight over its cache lines.
  std::vector<torch::Tensor> thread_waves;
  for (int t = 0; t < at::get_num_threads(); ++t) thread_waves.push_back(waves.clone());
  auto fft_round_cuda = [&] {
    for (int64_t b = 0; b < n; b += rec.batch_size())
      for (int64_t c = b; c < std::min(n, b + rec.batch_size()); c += chunk) {
        const int64_t len = std::min({chunk, n - c, b + rec.batch_size() - c});
        auto w = len == block ? waves : waves.slice(0, 0, len);
        auto f = torch::fft::fft2(w, c10::nullopt, {-2, -1}, "ortho");
        auto g = torch::fft::ifft2(f, c10::nullopt, {-2, -1}, "ortho");
      }
    sync();
  };
  // On the CPU, one floor per FFT library this build has (src/fft): LibTorch's
  // out of place, as torch::fft is called; the others in place, as the fused
  // loss calls them.
  auto fft_round = [&](FftLibrary library) {
    if (cuda) return fft_round_cuda();
    for (int64_t b = 0; b < n; b += rec.batch_size())
      for (int64_t c = b; c < std::min(n, b + rec.batch_size()); c += chunk) {
        const int64_t chunk_len = std::min({chunk, n - c, b + rec.batch_size() - c});
        // Blocks spread over the threads as the fused loss spreads them:
        // claimed one at a time by whichever thread is free.
        const int64_t blocks = (chunk_len + block - 1) / block;
        std::atomic<int64_t> next{0};
        at::parallel_for(0, std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), blocks)), 1,
                         [&](int64_t, int64_t) {
                           for (int64_t blk; (blk = next.fetch_add(1)) < blocks;) {
                             const int64_t len = std::min(block, chunk_len - blk * block);
                             const auto& mine = thread_waves[static_cast<size_t>(at::get_thread_num())];
                             auto w = len == block ? mine : mine.slice(0, 0, len);
                             if (library == FftLibrary::libtorch) {
                               auto f = torch::fft::fft2(w, c10::nullopt, {-2, -1}, "ortho");
                               auto g = torch::fft::ifft2(f, c10::nullopt, {-2, -1}, "ortho");
                             } else {
                               fft2_in_place(w, false, library);
                               fft2_in_place(w, true, library);
                             }
                           }
                         });
      }
  };
  auto libraries = cuda ? std::vector<FftLibrary>{FftLibrary::libtorch} : available_fft_libraries();
  if (const char* only = std::getenv("FFT_LIBRARIES"); only && !cuda) {  // e.g. "fftw,mkl", for profiling one
    libraries.clear();
    std::string list(only);
    for (size_t at = 0; at <= list.size();) {
      const size_t comma = std::min(list.find(',', at), list.size());
      libraries.push_back(fft_library_from_name(list.substr(at, comma - at)));
      at = comma + 1;
    }
  }
  const size_t L = libraries.size();
  for (auto l : libraries) {
    ScopedFftLibrary use(l);
    rec.iterate();  // the library's plans made before timing
    fft_round(l);
  }
  // Iterations and floor rounds alternate, so that both see the same load on a
  // shared machine; medians are robust to the odd descheduled round.
  std::vector<std::vector<double>> iteration_s(L), floor_s(L);
  int64_t peak = -1;  // over the iterations alone (the floor's buffers, one chunk of waves, stay allocated)
  for (int i = 0; i < iterations; ++i)
    for (size_t k = 0; k < L; ++k) {
      ScopedFftLibrary use(libraries[k]);
      reset_gpu_peak(device);
      const auto t0 = Clock::now();
      rec.iterate();
      sync();
      const auto t1 = Clock::now();
      peak = std::max(peak, gpu_peak_bytes(device));
      fft_round(libraries[k]);
      const auto t2 = Clock::now();
      iteration_s[k].push_back(std::chrono::duration<double>(t1 - t0).count());
      floor_s[k].push_back(std::chrono::duration<double>(t2 - t1).count());
    }
  const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
  std::printf("device %s, scan %ldx%ld, step %g px, object %ldx%ld px\n", s.device.c_str(), static_cast<long>(scan_y),
              static_cast<long>(scan_x), sim.step_px, static_cast<long>(geometry.object_h),
              static_cast<long>(geometry.object_w));
  std::printf("patterns %ld of %ldx%ld, batch %ld, chunk %ld, FFT block %ld, threads %d, OMP_WAIT_POLICY %s\n",
              static_cast<long>(n), static_cast<long>(frame), static_cast<long>(frame),
              static_cast<long>(rec.batch_size()), static_cast<long>(chunk), static_cast<long>(block), threads,
              wait_policy ? wait_policy : "(unset)");
  std::printf("FFT floor: %ld forward + %ld inverse %ldx%ld FFTs per iteration; medians of %d\n",
              static_cast<long>(n), static_cast<long>(n), static_cast<long>(frame), static_cast<long>(frame),
              iterations);
  double fastest_floor = 1e300;
  for (size_t k = 0; k < L; ++k) fastest_floor = std::min(fastest_floor, median(floor_s[k]));
  for (size_t k = 0; k < L; ++k) {
    const double it = median(iteration_s[k]), fl = median(floor_s[k]);
    std::printf("%-9s%s FFT floor %.4f s, iteration %.4f s (mean %.4f), iteration / own floor %.2f, "
                "/ fastest floor %.2f, %.0f patterns/s\n",
                cuda ? "cufft" : fft_library_name(libraries[k]),
                !cuda && libraries[k] == default_fft_library() ? "*" : " ", fl, it, mean(iteration_s[k]), it / fl,
                it / fastest_floor, n / it);
  }
  if (!cuda) std::printf("(* the build's default: %s; target iteration <= 1.5 x the fastest floor)\n",
                         fft_library_description(default_fft_library()).c_str());
  // What `tessera plan` predicts for this run on one rank (same chunk and batch).
  MemoryModelInputs in;
  in.chunk_size = s.chunk_size;
  in.batch_size = rec.batch_size();
  in.probe_modes = s.probe_modes;
  const auto predicted = predict_undecomposed_memory(geometry, in);
  std::printf("peak memory                predicted %s (object+state %s, patterns %s, intermediates %s)",
              format_bytes(predicted.total()).c_str(), format_bytes(predicted.object).c_str(),
              format_bytes(predicted.patterns).c_str(), format_bytes(predicted.intermediates).c_str());
  if (peak >= 0)
    std::printf(", measured %s on the GPU (ratio %.2f)\n", format_bytes(peak).c_str(),
                static_cast<double>(peak) / predicted.total());
  else
    std::printf(", not measured on %s (bench_distributed measures CPU tensors)\n", s.device.c_str());
  return 0;
}
