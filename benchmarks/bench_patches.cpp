// Custom probe-window ops against plain tensor indexing, forward + backward
// through autograd, on the CPU or (--device cuda) the GPU, synchronised
// around every timed call.
//
//   loss = sum(|extract(object, positions) * probe|^2),  loss.backward() -> object.grad
//
//   custom         tessera::ops::extract_patches (backward: tessera::overlap_add)
//   index-bilinear the same bilinear windows from 4 gathers of the flattened
//                  object (backward: 4 scatter-adds); same arithmetic as the
//                  custom op, so the fair comparison
//   index-integer  one gather at floor(positions) (no interpolation; a lower
//                  bound for any indexing implementation)
// The gathers use torch::gather (backward scatter_add, the fastest of the three
// on LibTorch 1.13 CPU), or with --gather index_select (backward index_add) or
// --gather index (advanced indexing, backward index_put_ with accumulate).
// The index tensors are built from the positions inside the timed region, as a
// reconstruction that refines positions must do every iteration.
//
// Usage: bench_patches [--windows B] [--window h] [--object N] [--slices L]
//                      [--iters K] [--dtype complex64|complex128]
//                      [--gather gather|index_select|index] [--device cpu|cuda]
// Defaults: 1024 windows of 128 x 128 from a 2048 x 2048 complex64 object,
// fractional positions, 5 timed iterations after 1 warm-up. Threads: the value
// of OMP_NUM_THREADS if set, else std::thread::hardware_concurrency().
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <torch/cuda.h>

#include "src/ops/patches.h"

namespace {

struct Options {
  int64_t windows = 1024, window = 128, object = 2048, slices = 1;
  int iters = 5;
  torch::ScalarType dtype = torch::kComplexFloat;
  std::string device = "cpu";
};

bool g_cuda = false;  // synchronise around timed calls

// How the baselines gather: torch::gather (backward scatter_add), index_select
// (backward index_add) or advanced indexing (backward index_put_ accumulate).
enum class Gather { gather, index_select, index };
Gather g_gather = Gather::gather;

const char* gather_name(Gather g) {
  switch (g) {
    case Gather::gather: return "gather/scatter_add";
    case Gather::index_select: return "index_select/index_add";
    default: return "index/index_put";
  }
}

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--windows B] [--window h] [--object N] [--slices L] [--iters K] "
               "[--dtype complex64|complex128] [--gather gather|index_select|index] [--device cpu|cuda]\n",
               argv0);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    if (key == "-h" || key == "--help") usage(argv[0]);
    if (i + 1 >= argc) usage(argv[0]);
    const std::string value = argv[++i];
    if (key == "--windows") o.windows = std::stoll(value);
    else if (key == "--window") o.window = std::stoll(value);
    else if (key == "--object") o.object = std::stoll(value);
    else if (key == "--slices") o.slices = std::stoll(value);
    else if (key == "--iters") o.iters = std::stoi(value);
    else if (key == "--dtype" && value == "complex64") o.dtype = torch::kComplexFloat;
    else if (key == "--dtype" && value == "complex128") o.dtype = torch::kComplexDouble;
    else if (key == "--gather" && value == "gather") g_gather = Gather::gather;
    else if (key == "--gather" && value == "index_select") g_gather = Gather::index_select;
    else if (key == "--gather" && value == "index") g_gather = Gather::index;
    else if (key == "--device" && (value == "cpu" || value == "cuda")) o.device = value;
    else usage(argv[0]);
  }
  if (o.windows < 1 || o.window < 1 || o.slices < 1 || o.iters < 1 || o.object < o.window + 2) {
    std::fprintf(stderr, "invalid sizes: need windows, window, slices, iters >= 1 and "
                         "object >= window + 2\n");
    std::exit(2);
  }
  return o;
}

int thread_count() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

using Extract = std::function<torch::Tensor(const torch::Tensor& object, const torch::Tensor& pos,
                                            int64_t h, int64_t w)>;

torch::Tensor custom_extract(const torch::Tensor& object, const torch::Tensor& pos, int64_t h,
                             int64_t w) {
  return tessera::ops::extract_patches(object, pos, h, w);
}

// Flat indices (L, B, h, w) of the top-left stencil point of every window pixel,
// in the flattened (L * H * W) object.
torch::Tensor window_indices(const torch::Tensor& object, const torch::Tensor& corner, int64_t h,
                             int64_t w) {
  const int64_t L = object.size(0), H = object.size(1), W = object.size(2);
  const auto opts = torch::TensorOptions().dtype(torch::kLong).device(object.device());
  const auto y0 = corner.select(1, 0).view({1, -1, 1, 1});
  const auto x0 = corner.select(1, 1).view({1, -1, 1, 1});
  return (torch::arange(L, opts).view({L, 1, 1, 1}) * (H * W) + y0 * W + x0 +
          torch::arange(h, opts).view({1, 1, h, 1}) * W + torch::arange(w, opts).view({1, 1, 1, w}));
}

// Values at idx (L, B, h, w) of the flattened object.
torch::Tensor gather(const torch::Tensor& flat, const torch::Tensor& idx) {
  const auto i = idx.reshape({-1});
  torch::Tensor v;
  switch (g_gather) {
    case Gather::gather: v = torch::gather(flat, 0, i); break;
    case Gather::index_select: v = flat.index_select(0, i); break;
    default: v = flat.index({i}); break;
  }
  return v.view(idx.sizes());
}

torch::Tensor index_integer_extract(const torch::Tensor& object, const torch::Tensor& pos,
                                    int64_t h, int64_t w) {
  const auto corner = pos.detach().floor().to(torch::kLong);
  return gather(object.reshape({-1}), window_indices(object, corner, h, w)).transpose(0, 1);
}

torch::Tensor index_bilinear_extract(const torch::Tensor& object, const torch::Tensor& pos,
                                     int64_t h, int64_t w) {
  const int64_t W = object.size(2);
  const auto floor = pos.detach().floor();
  const auto frac = (pos - floor).view({-1, 2, 1, 1});
  const auto fy = frac.select(1, 0), fx = frac.select(1, 1);  // (B, 1, 1)
  const auto idx = window_indices(object, floor.to(torch::kLong), h, w);
  const auto flat = object.reshape({-1});
  // Weights (B, 1, 1) broadcast over the (L, B, h, w) gathers.
  return ((1 - fy) * (1 - fx) * gather(flat, idx) + (1 - fy) * fx * gather(flat, idx + 1) +
          fy * (1 - fx) * gather(flat, idx + W) + fy * fx * gather(flat, idx + W + 1))
      .transpose(0, 1);
}

// One forward + backward; returns (patches, object gradient).
std::pair<torch::Tensor, torch::Tensor> step(const Extract& extract, const torch::Tensor& object,
                                             const torch::Tensor& pos, const torch::Tensor& probe,
                                             int64_t h, int64_t w) {
  object.mutable_grad() = torch::Tensor();
  auto patches = extract(object, pos, h, w);
  torch::view_as_real(patches * probe).pow(2).sum().backward();
  return {patches.detach(), object.grad()};
}

double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  const auto A = a.to(torch::kComplexDouble), Bt = b.to(torch::kComplexDouble);
  return ((A - Bt).abs().max() / Bt.abs().max().clamp_min(1e-300)).item<double>();
}

struct Timing {
  double mean_ms = 0, min_ms = 1e300;
  void add(double ms, int iters) {
    mean_ms += ms / iters;
    min_ms = std::min(min_ms, ms);
  }
};

template <typename F>
double milliseconds(F&& f) {
  if (g_cuda) torch::cuda::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  f();
  if (g_cuda) torch::cuda::synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Times each function once per round, rounds interleaved so that a busy
// machine slows all of them alike; one warm-up call each first.
std::vector<Timing> time_interleaved(const std::vector<std::function<void()>>& fs, int iters) {
  for (const auto& f : fs) f();
  std::vector<Timing> t(fs.size());
  for (int i = 0; i < iters; ++i)
    for (size_t k = 0; k < fs.size(); ++k) t[k].add(milliseconds(fs[k]), iters);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const int threads = thread_count();
  at::set_num_threads(threads);
  const int64_t B = o.windows, h = o.window, w = o.window, N = o.object, L = o.slices;
  const auto real_t = c10::toRealValueType(o.dtype);
  const torch::Device device(o.device);
  g_cuda = device.is_cuda();
  std::printf("bench_patches: %lld windows of %lld x %lld from a %lld x %lld x %lld %s object on %s, "
              "%d threads (at::get_num_threads() = %d), %d iterations\n",
              (long long)B, (long long)h, (long long)w, (long long)L, (long long)N, (long long)N,
              c10::toString(o.dtype), o.device.c_str(), threads, at::get_num_threads(), o.iters);

  torch::manual_seed(0);
  const auto object = torch::randn({L, N, N}, o.dtype).to(device).requires_grad_();
  const auto probe = torch::randn({h, w}, o.dtype).to(device);
  // floor(y) + h + 1 <= N: y uniform in [0, N - h - 1).
  const auto pos = (torch::rand({B, 2}, torch::kDouble) * (N - h - 1)).to(real_t).to(device);
  const auto pos_int = pos.floor();

  // Check that all three compute the same thing before timing them.
  {
    const auto [p_custom, g_custom] = step(custom_extract, object, pos, probe, h, w);
    const auto [p_bil, g_bil] = step(index_bilinear_extract, object, pos, probe, h, w);
    const auto [p_cint, g_cint] = step(custom_extract, object, pos_int, probe, h, w);
    const auto [p_int, g_int] = step(index_integer_extract, object, pos_int, probe, h, w);
    const double d[4] = {relative_difference(p_custom, p_bil), relative_difference(g_custom, g_bil),
                         relative_difference(p_cint, p_int), relative_difference(g_cint, g_int)};
    const double tol = real_t == torch::kFloat ? 1e-4 : 1e-10;
    std::printf("check: custom vs index-bilinear: patches %.2e, object grad %.2e; "
                "custom vs index-integer at integer positions: patches %.2e, object grad %.2e "
                "(max relative difference)\n",
                d[0], d[1], d[2], d[3]);
    for (double x : d) {
      if (!(x <= tol)) {
        std::printf("FAILED: the implementations disagree (tolerance %.0e)\n", tol);
        return 1;
      }
    }
  }

  // Whole steps, plus the pieces of the custom one: the op pair alone, and the
  // loss arithmetic that every method shares (patches * probe, |.|^2, sum, and
  // their backward).
  const auto patches = tessera::ops::extract_patches(object.detach(), pos, h, w);
  const auto upstream = torch::randn_like(patches);
  auto loss_only = patches.clone().requires_grad_();
  const auto t = time_interleaved(
      {[&] { step(custom_extract, object, pos, probe, h, w); },
       [&] { step(index_bilinear_extract, object, pos, probe, h, w); },
       [&] { step(index_integer_extract, object, pos, probe, h, w); },
       [&] { tessera::ops::extract_patches(object.detach(), pos, h, w); },
       [&] { tessera::ops::overlap_add(upstream, pos, N, N); },
       [&] {
         loss_only.mutable_grad() = torch::Tensor();
         torch::view_as_real(loss_only * probe).pow(2).sum().backward();
       }},
      o.iters);
  const std::string bil = std::string("index-bilinear (4x ") + gather_name(g_gather) + ")";
  const std::string in1 = std::string("index-integer (1x ") + gather_name(g_gather) + ")";
  std::printf("%-50s %10s %10s\n", "forward + backward, ms per iteration", "mean", "min");
  const char* names[] = {"custom extract_patches/overlap_add", bil.c_str(), in1.c_str(),
                         "  of which extract_patches (forward)",
                         "  of which overlap_add (backward)",
                         "  of which the shared loss arithmetic"};
  for (size_t k = 0; k < t.size(); ++k)
    std::printf("%-50s %10.1f %10.1f\n", names[k], t[k].mean_ms, t[k].min_ms);
  std::printf("speed-up of custom over index-bilinear (fair): %.2fx (mean), %.2fx (min)\n",
              t[1].mean_ms / t[0].mean_ms, t[1].min_ms / t[0].min_ms);
  std::printf("speed-up of custom over index-integer (no interpolation): %.2fx (mean), %.2fx "
              "(min)\n",
              t[2].mean_ms / t[0].mean_ms, t[2].min_ms / t[0].min_ms);
  std::printf("without the shared loss arithmetic: custom %.1f ms, index-bilinear %.1f ms, "
              "index-integer %.1f ms (means)\n",
              t[0].mean_ms - t[5].mean_ms, t[1].mean_ms - t[5].mean_ms,
              t[2].mean_ms - t[5].mean_ms);
  return 0;
}
