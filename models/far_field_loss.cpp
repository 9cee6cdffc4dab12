#include "models/far_field_loss.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

#include "models/propagation.h"
#include "src/error.h"
#include "src/fft/batched_fft.h"
#include "src/memory_model.h"
#include "src/ops/loss_measurement.h"
#include "src/ops/patches.h"
#include "src/reusable_buffer.h"
#include "src/simd.h"

namespace tessera {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Measured intensities and mask in the layout the loops read
// (src/ops/loss_measurement.h validates them), rows on the host.
struct Measurement {
  torch::Tensor measured;  // (N, h, w) contiguous
  torch::Tensor keep;      // (h, w) or (N, h, w) contiguous, 1 = pixel used, 0 = not; or undefined
  int64_t keep_stride = 0;  // elements between the masks of consecutive frames
  std::vector<int64_t> rows;  // pattern b is frame rows[b]; empty: frame b

  int64_t frame(int64_t b) const { return rows.empty() ? b : rows[static_cast<size_t>(b)]; }
};

Measurement check_measurement(const char* op, const torch::Tensor& waves, int64_t B, const torch::Tensor& measured,
                              const torch::Tensor& valid, const torch::Tensor& rows) {
  TESSERA_REQUIRE(Error, waves.device().is_cpu(), op, ": the fused loss runs on the CPU; got waves on ", waves.device());
  auto checked = ops::check_loss_measurement(op, B, waves.size(-2), waves.size(-1),
                                             c10::toRealValueType(waves.scalar_type()), waves.device(), measured,
                                             valid, rows);
  Measurement m{checked.measured, checked.keep, checked.keep_stride, {}};
  if (checked.rows.defined()) m.rows.assign(checked.rows.data_ptr<int64_t>(), checked.rows.data_ptr<int64_t>() + B);
  return m;
}

// Pattern order: the same sum for any thread count.
double sum_in_order(const std::vector<double>& values) {
  double total = 0;
  for (double v : values) total += v;
  return total;
}

// out[0 .. n) = sum of `count` arrays (array a starts at arrays + a *
// stride), added in array order: the same result for any thread count, and
// for any split of [0, n) between calls. Run by run, so that out stays in L1.
template <typename T>
TESSERA_SIMD_CLONES void sum_in_order(const T* __restrict__ arrays, int64_t count, int64_t stride, int64_t n,
                                      T* __restrict__ out) {
  constexpr int64_t kRun = 512;
  for (int64_t k0 = 0; k0 < n && count > 0; k0 += kRun) {
    const int64_t len = std::min(kRun, n - k0);
    T* __restrict__ o = out + k0;
    const T* __restrict__ first = arrays + k0;
    for (int64_t k = 0; k < len; ++k) o[k] = first[k];
    for (int64_t a = 1; a < count; ++a) {
      const T* __restrict__ q = arrays + a * stride + k0;
      for (int64_t k = 0; k < len; ++k) o[k] += q[k];
    }
  }
}

// The probe gradient's sum over blocks is shared out in pieces of this many
// reals (64 KiB of float), claimed like the bands of the object gradient.
constexpr int64_t kProbeSumPiece = 16384;

template <typename T>
FarFieldLossKernel<T> kernel_for(const PixelLoss& loss);
template <>
FarFieldLossKernel<float> kernel_for<float>(const PixelLoss& loss) { return loss.far_f32; }
template <>
FarFieldLossKernel<double> kernel_for<double>(const PixelLoss& loss) { return loss.far_f64; }

// Patterns [b0, b0 + len) of far-field waves Psi (len, M, n): their losses
// into per_pattern[b0 ..], Psi overwritten by the residual if asked.
template <typename T>
void block_loss(T* Psi, const Measurement& meas, int64_t b0, int64_t len, int64_t M, int64_t n,
                const PixelLoss& loss, bool residual, double* per_pattern) {
  const T* measured = meas.measured.data_ptr<T>();
  const T* keep = meas.keep.defined() ? meas.keep.data_ptr<T>() : nullptr;
  const auto kernel = kernel_for<T>(loss);
  for (int64_t i = 0; i < len; ++i) {
    const int64_t b = b0 + i, f = meas.frame(b);
    per_pattern[b] = kernel(Psi + i * M * n * 2, M, measured + f * n, keep ? keep + f * meas.keep_stride : nullptr, n,
                            residual);
  }
}

// Far-field waves Psi (B, M, n) as interleaved (re, im) reals. Returns the
// loss; with `residual`, Psi is overwritten by the far-field gradient.
template <typename T>
double loss_and_residual(T* Psi, const Measurement& meas, int64_t B, int64_t M, int64_t n, const PixelLoss& loss,
                         bool residual) {
  std::vector<double> per_pattern(static_cast<size_t>(B), 0.0);
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    block_loss<T>(Psi + begin * M * n * 2, meas, begin, end - begin, M, n, loss, residual, per_pattern.data());
  });
  return sum_in_order(per_pattern);
}

// The loss (summed in double) in the measurement's precision. A diverging
// run's loss can pass float's range: it becomes infinite there, which the
// optimiser loop reports as divergence, rather than a conversion error.
torch::Tensor loss_tensor(double value, const Measurement& meas) {
  return torch::tensor(value, torch::kFloat64).to(meas.measured.scalar_type());
}

// Loss of far-field waves Psi (a fresh tensor this operator may overwrite).
// Returns the loss as a 0-dim tensor of the real precision.
torch::Tensor loss_of_far_field(torch::Tensor& Psi, const Measurement& meas, const PixelLoss& loss, bool residual) {
  const int64_t B = Psi.size(0), M = Psi.size(1), n = Psi.size(2) * Psi.size(3);
  double value = 0;
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(Psi.scalar_type()), "far_field_loss", [&] {
    value = loss_and_residual<scalar_t>(reinterpret_cast<scalar_t*>(Psi.data_ptr()), meas, B, M, n, loss, residual);
  });
  return loss_tensor(value, meas);
}

class FarFieldLossFunction : public torch::autograd::Function<FarFieldLossFunction> {
 public:
  // The measurement is not differentiated: it travels as plain data, not as
  // autograd inputs (an undefined mask could not be one).
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& waves, const Measurement& meas,
                               const PixelLoss& loss) {
    auto Psi = far_field(waves).contiguous();
    const bool residual = waves.requires_grad();
    auto value = loss_of_far_field(Psi, meas, loss, residual);
    if (residual) ctx->saved_data["residual"] = Psi;
    return {value};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const double scale = grad_outputs[0].item<double>();
    auto grad = far_field_adjoint(ctx->saved_data["residual"].toTensor());
    if (scale != 1) grad.mul_(scale);
    return {grad, torch::Tensor(), torch::Tensor()};
  }
};

// psi[i, m] = probe[m] * patches[i] for len patterns, interleaved complex, n
// pixels per window.
template <typename T>
TESSERA_SIMD_CLONES void form_exit_waves(const T* __restrict__ probe, const T* __restrict__ patches,
                                         T* __restrict__ psi, int64_t len, int64_t M, int64_t n) {
  for (int64_t i = 0; i < len; ++i)
    for (int64_t m = 0; m < M; ++m) {
      const T* __restrict__ p = probe + m * n * 2;
      const T* __restrict__ x = patches + i * n * 2;
      T* __restrict__ out = psi + (i * M + m) * n * 2;
      for (int64_t k = 0; k < n; ++k) {
        const T pr = p[2 * k], pi = p[2 * k + 1], xr = x[2 * k], xi = x[2 * k + 1];
        out[2 * k] = pr * xr - pi * xi;
        out[2 * k + 1] = pr * xi + pi * xr;
      }
    }
}

// One pattern and mode of the product gradients, over n pixels:
//   gx (+)= conj(p) g   (if kPatch; set when kSetPatch, else added)
//   gp (+)= conj(x) g   (if kProbe; set when kSetProbe, else added)
// The choices are template parameters so that every variant is a plain
// vector loop (a per-pixel choice between storing and adding would be a
// conditional load, and keep the loop scalar).
// out[k] = conj(a[k]) g (kSet) or out[k] += conj(a[k]) g, interleaved complex.
template <bool kSet, typename T>
__attribute__((always_inline)) inline void conj_product_into(const T* __restrict__ a, T gr, T gi, T* __restrict__ out,
                                                             int64_t k) {
  const T ar = a[2 * k], ai = a[2 * k + 1];
  const T re = ar * gr + ai * gi, im = ar * gi - ai * gr;
  if constexpr (kSet) {
    out[2 * k] = re;
    out[2 * k + 1] = im;
  } else {
    out[2 * k] += re;
    out[2 * k + 1] += im;
  }
}

template <bool kPatch, bool kSetPatch, bool kProbe, bool kSetProbe, typename T>
__attribute__((always_inline)) inline void product_pass(const T* __restrict__ p, const T* __restrict__ x,
                                                        const T* __restrict__ g, T* __restrict__ gx,
                                                        T* __restrict__ gp, int64_t n, T weight) {
  for (int64_t k = 0; k < n; ++k) {
    const T gr = weight * g[2 * k], gi = weight * g[2 * k + 1];
    if constexpr (kPatch) conj_product_into<kSetPatch>(p, gr, gi, gx, k);
    if constexpr (kProbe) conj_product_into<kSetProbe>(x, gr, gi, gp, k);
  }
}

// The adjoints of psi = probe * patch for the exit-wave gradient weight * g
// (g is (len, M, n)):
//   grad_patches[i] = sum_m conj(probe[m]) weight g[i, m]
//   grad_probe[m]   = sum_i conj(patches[i]) weight g[i, m]   (i in order: deterministic)
// Either output may be null (not wanted). Both wanted: one loop reads probe,
// patch and gradient once for the two products. Outputs are set by their
// first term (no zero-fill pass).
template <typename T>
TESSERA_SIMD_CLONES void product_gradients(const T* __restrict__ probe, const T* __restrict__ patches,
                                           const T* __restrict__ g, T* __restrict__ grad_probe,
                                           T* __restrict__ grad_patches, int64_t len, int64_t M, int64_t n,
                                           T weight) {
  for (int64_t i = 0; i < len; ++i) {
    const T* x = patches + i * n * 2;
    T* gx = grad_patches ? grad_patches + i * n * 2 : nullptr;
    for (int64_t m = 0; m < M; ++m) {
      const T* gm = g + (i * M + m) * n * 2;
      const T* p = probe + m * n * 2;
      T* gp = grad_probe ? grad_probe + m * n * 2 : nullptr;
      const bool set_patch = m == 0, set_probe = i == 0;
      if (gx && gp) {
        if (set_patch && set_probe)
          product_pass<true, true, true, true>(p, x, gm, gx, gp, n, weight);
        else if (set_patch)
          product_pass<true, true, true, false>(p, x, gm, gx, gp, n, weight);
        else if (set_probe)
          product_pass<true, false, true, true>(p, x, gm, gx, gp, n, weight);
        else
          product_pass<true, false, true, false>(p, x, gm, gx, gp, n, weight);
      } else if (gx) {
        if (set_patch)
          product_pass<true, true, false, false>(p, x, gm, gx, gp, n, weight);
        else
          product_pass<true, false, false, false>(p, x, gm, gx, gp, n, weight);
      } else if (gp) {
        if (set_probe)
          product_pass<false, false, true, true>(p, x, gm, gx, gp, n, weight);
        else
          product_pass<false, false, true, false>(p, x, gm, gx, gp, n, weight);
      }
    }
  }
}

// The loss is the end of the graph (a scalar the caller backpropagates), so
// the gradients are computed in the forward pass, block by block: a block's
// object windows, exit waves, far field, residual and exit-wave gradient
// never leave the cache, and nothing of size (B, M, h, w) is kept. The
// window gradients are overlap-added into the object gradient in the same
// parallel region; they are kept for backward only when the positions are
// refined. Backward scales, if the caller scaled the loss.
class ObjectFarFieldLossFunction : public torch::autograd::Function<ObjectFarFieldLossFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& object_in, const torch::Tensor& positions,
                               const torch::Tensor& probe_in, const Measurement& meas, const PixelLoss& loss,
                               double weight) {
    const int64_t B = positions.size(0), M = probe_in.size(0), h = probe_in.size(1), w = probe_in.size(2);
    const int64_t n = h * w;
    const auto probe = probe_in.contiguous();
    const ops::CpuPatchExtractor windows(object_in, positions, h, w);  // validates every window
    const bool want_probe = probe_in.requires_grad(), want_object = object_in.requires_grad();
    const bool want_windows = want_object || positions.requires_grad();
    const bool residual = want_probe || want_windows;
    const int64_t per_block = fused_loss_block(M, h, w, probe.scalar_type());
    const int64_t blocks = (B + per_block - 1) / per_block;
    torch::Tensor grad_windows, probe_partials, grad_object;
    // Kept from call to call (src/reusable_buffer.h), except window
    // gradients that backward needs for the positions.
    if (want_windows)
      grad_windows = positions.requires_grad()
                         ? torch::empty({B, h, w}, probe.options())
                         : reusable_buffer(BufferSlot::fused_window_gradients, {B, h, w}, probe.options());
    // Every block sets its partial (a block has at least one pattern).
    if (want_probe)
      probe_partials = reusable_buffer(BufferSlot::fused_probe_partials, {std::max<int64_t>(blocks, 1), M, h, w},
                                       probe.options());
    std::unique_ptr<ops::CpuOverlapAdder> adder;
    if (want_object) {
      adder = std::make_unique<ops::CpuOverlapAdder>(windows);
      grad_object = torch::empty({1, object_in.size(1), object_in.size(2)}, probe.options());
    }
    torch::Tensor grad_probe;
    if (want_probe) grad_probe = blocks > 0 ? torch::empty_like(probe) : torch::zeros_like(probe);
    const int64_t probe_reals = M * n * 2;
    const int64_t bands = adder ? adder->bands() : 0;
    const int64_t probe_pieces = want_probe && blocks > 0 ? (probe_reals + kProbeSumPiece - 1) / kProbeSumPiece : 0;
    std::vector<double> per_pattern(static_cast<size_t>(B), 0.0);
    // Threads claim work as they come free: blocks first, then the bands of
    // the object gradient and the pieces of the probe gradient's sum, which
    // need every block. Results are stored by block, pattern, band and piece
    // index, so the claim order changes nothing. One parallel region per
    // call, and no thread idles while another finishes a longer share of
    // blocks.
    std::atomic<int64_t> next_block{0}, blocks_done{0}, next_item{0};
    std::atomic<bool> failed{false};
    const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), blocks));
    AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(probe.scalar_type()), "object_far_field_loss", [&] {
      using T = scalar_t;
      auto ptr = [](const torch::Tensor& t) { return t.defined() ? reinterpret_cast<T*>(t.data_ptr()) : nullptr; };
      const T* probe_p = ptr(probe);
      at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
        try {
          auto patches = torch::empty({per_block, h, w}, probe.options());
          auto psi = torch::empty({per_block, M, h, w}, probe.options());
          for (int64_t blk; (blk = next_block.fetch_add(1)) < blocks;) {
            const int64_t b0 = blk * per_block, len = std::min(per_block, B - b0);
            windows.extract(b0, b0 + len, patches.data_ptr());
            auto waves = len == per_block ? psi : psi.narrow(0, 0, len);
            form_exit_waves<T>(probe_p, ptr(patches), ptr(waves), len, M, n);
            // In place: the block's exit waves become its far field, then its
            // residual, then the exit waves' gradient, in one cache-sized array.
            fft2_in_place(waves, false);
            block_loss<T>(ptr(waves), meas, b0, len, M, n, loss, residual, per_pattern.data());
            if (residual) {
              fft2_in_place(waves, true);
              product_gradients<T>(probe_p, ptr(patches), ptr(waves),
                                   want_probe ? ptr(probe_partials) + blk * M * n * 2 : nullptr,
                                   want_windows ? ptr(grad_windows) + b0 * n * 2 : nullptr, len, M, n,
                                   static_cast<T>(weight));
            }
            blocks_done.fetch_add(1, std::memory_order_release);
          }
        } catch (...) {
          failed = true;  // at::parallel_for rethrows it once every thread is out
          throw;
        }
        if (bands + probe_pieces == 0) return;
        // A block not done yet was claimed by a thread that is running it:
        // waiting cannot deadlock, even if the calls run one after another.
        while (blocks_done.load(std::memory_order_acquire) < blocks) {
          if (failed) return;
          std::this_thread::yield();
        }
        for (int64_t item; (item = next_item.fetch_add(1)) < bands + probe_pieces;) {
          if (item < bands) {
            adder->add_band(item, grad_windows.data_ptr(), grad_object.data_ptr());
          } else {
            const int64_t k0 = (item - bands) * kProbeSumPiece;
            sum_in_order<T>(ptr(probe_partials) + k0, blocks, probe_reals, std::min(kProbeSumPiece, probe_reals - k0),
                            ptr(grad_probe) + k0);
          }
        }
      });
    });
    if (want_probe) ctx->saved_data["grad_probe"] = grad_probe;
    if (want_object) ctx->saved_data["grad_object"] = grad_object;
    if (positions.requires_grad()) ctx->saved_data["grad_windows"] = grad_windows.unsqueeze(1);  // (B, 1, h, w)
    // The object is only needed for the positions gradient: do not pin it otherwise.
    ctx->save_for_backward({positions, positions.requires_grad() ? object_in : torch::Tensor()});
    return {loss_tensor(weight * sum_in_order(per_pattern), meas)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const double scale = grad_outputs[0].item<double>();
    auto take = [&](const char* key) {
      auto it = ctx->saved_data.find(key);
      if (it == ctx->saved_data.end()) return torch::Tensor();
      TESSERA_REQUIRE(Error, it->second.isTensor(), "object_far_field_loss: its gradients were already used by an "
                      "earlier backward; the fused loss supports one backward per forward");
      auto t = it->second.toTensor();
      it->second = c10::IValue();  // released: the caller owns the gradient now
      return t;
    };
    const auto saved = ctx->get_saved_variables();
    auto grad_object = take("grad_object");
    if (grad_object.defined() && scale != 1) grad_object.mul_(scale);
    torch::Tensor grad_positions;
    if (ctx->needs_input_grad(1)) {
      grad_positions = ops::patches_position_grad(take("grad_windows"), saved[1], saved[0]);
      if (scale != 1) grad_positions.mul_(scale);
    }
    auto grad_probe = take("grad_probe");
    if (grad_probe.defined() && scale != 1) grad_probe.mul_(scale);
    return {grad_object, grad_positions, grad_probe, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

int64_t fused_loss_block(int64_t modes, int64_t h, int64_t w, torch::ScalarType complex_type) {
  // One definition, which the memory model (src/, below models/) shares.
  return fused_loss_block_patterns(modes, h, w, static_cast<int64_t>(c10::elementSize(complex_type)));
}

torch::Tensor far_field_loss(const torch::Tensor& exit_waves, const torch::Tensor& measured,
                             const torch::Tensor& valid, const PixelLoss& loss, const torch::Tensor& rows) {
  constexpr const char* op = "far_field_loss";
  TESSERA_REQUIRE(Error, loss.available(), op, ": this loss has no per-pixel form; use its autograd form");
  TESSERA_REQUIRE(Error, exit_waves.dim() == 4 && exit_waves.is_complex(), op,
                  ": exit waves must be a complex (patterns, modes, h, w) array, got ", exit_waves.sizes(), " ",
                  exit_waves.scalar_type());
  const auto meas = check_measurement(op, exit_waves, exit_waves.size(0), measured, valid, rows);
  return FarFieldLossFunction::apply(exit_waves, meas, loss)[0];
}

torch::Tensor object_far_field_loss(const torch::Tensor& object, const torch::Tensor& positions,
                                    const torch::Tensor& probe, const torch::Tensor& measured,
                                    const torch::Tensor& valid, const PixelLoss& loss, const torch::Tensor& rows,
                                    double weight) {
  constexpr const char* op = "object_far_field_loss";
  TESSERA_REQUIRE(Error, loss.available(), op, ": this loss has no per-pixel form; use its autograd form");
  TESSERA_REQUIRE(Error, probe.dim() == 3 && probe.is_complex(), op,
                  ": the probe must be a complex (modes, h, w) array, got ", probe.sizes(), " ", probe.scalar_type());
  TESSERA_REQUIRE(Error, object.dim() == 3 && object.size(0) == 1 && object.is_complex(), op,
                  ": the object must be a complex single-slice (1, H, W) array, got ", object.sizes(), " ",
                  object.scalar_type());
  TESSERA_REQUIRE(Error, object.scalar_type() == probe.scalar_type() && object.device() == probe.device(), op,
                  ": the object (", object.scalar_type(), " on ", object.device(), ") does not match the probe (",
                  probe.scalar_type(), " on ", probe.device(), ")");
  TESSERA_REQUIRE(Error, positions.dim() == 2 && positions.size(1) == 2, op,
                  ": positions must be a (patterns, 2) array, got ", positions.sizes());
  const auto meas = check_measurement(op, probe, positions.size(0), measured, valid, rows);
  TESSERA_REQUIRE(Error, std::isfinite(weight), op, ": the loss weight must be finite, got ", weight);
  return ObjectFarFieldLossFunction::apply(object, positions, probe, meas, loss, weight)[0];
}

}  // namespace tessera
