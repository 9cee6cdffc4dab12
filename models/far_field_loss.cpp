#include "models/far_field_loss.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "models/propagation.h"
#include "src/error.h"

namespace tessera {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Measured intensities and mask in the layout the loops read.
struct Measurement {
  torch::Tensor measured;  // (B, h, w) contiguous
  torch::Tensor valid;     // (h, w) or (B, h, w) contiguous bool, or undefined
  int64_t valid_stride = 0;  // elements between the masks of consecutive patterns
};

Measurement check_measurement(const char* op, const torch::Tensor& waves, int64_t B, const torch::Tensor& measured,
                              const torch::Tensor& valid) {
  const int64_t h = waves.size(-2), w = waves.size(-1);
  TESSERA_REQUIRE(Error, waves.device().is_cpu(), op, ": the fused loss runs on the CPU; got waves on ", waves.device());
  TESSERA_REQUIRE(Error, measured.dim() == 3 && measured.size(0) == B && measured.size(1) == h && measured.size(2) == w,
                  op, ": measured intensities have shape ", measured.sizes(), ", expected (", B, ", ", h, ", ", w, ")");
  const auto real_type = c10::toRealValueType(waves.scalar_type());
  TESSERA_REQUIRE(Error, measured.scalar_type() == real_type, op, ": measured intensities are ", measured.scalar_type(),
                  " but the waves are ", waves.scalar_type(), "; both must have the same precision");
  Measurement m;
  m.measured = measured.contiguous();
  if (valid.defined()) {
    TESSERA_REQUIRE(Error, valid.scalar_type() == torch::kBool, op, ": the valid-pixel mask must be bool, got ",
                    valid.scalar_type());
    const bool per_frame = valid.dim() == 3 && valid.size(0) == B && valid.size(1) == h && valid.size(2) == w;
    TESSERA_REQUIRE(Error, per_frame || (valid.dim() == 2 && valid.size(0) == h && valid.size(1) == w), op,
                    ": the valid-pixel mask has shape ", valid.sizes(), ", expected (", h, ", ", w, ") or (", B, ", ",
                    h, ", ", w, ")");
    m.valid = valid.contiguous();
    m.valid_stride = per_frame ? h * w : 0;
  }
  return m;
}

template <typename T>
PixelLossKernel<T> kernel_for(const PixelLoss& loss);
template <>
PixelLossKernel<float> kernel_for<float>(const PixelLoss& loss) { return loss.f32; }
template <>
PixelLossKernel<double> kernel_for<double>(const PixelLoss& loss) { return loss.f64; }

// Far-field waves Psi (B, M, n) as interleaved (re, im) reals. Returns the
// loss; with `residual`, Psi is overwritten by 2 dl/dI Psi, the far-field
// gradient (what the inverse FFT takes back to the exit waves).
template <typename T>
double loss_and_residual(T* Psi, const Measurement& meas, int64_t B, int64_t M, int64_t n, const PixelLoss& loss,
                         bool residual) {
  const T* measured = meas.measured.data_ptr<T>();
  const bool* valid = meas.valid.defined() ? meas.valid.data_ptr<bool>() : nullptr;
  const auto kernel = kernel_for<T>(loss);
  std::vector<double> per_pattern(static_cast<size_t>(B), 0.0);
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> intensity(static_cast<size_t>(n)), slope(static_cast<size_t>(n));
    T* __restrict__ I = intensity.data();
    T* __restrict__ s = slope.data();
    for (int64_t b = begin; b < end; ++b) {
      T* __restrict__ P = Psi + b * M * n * 2;
      for (int64_t k = 0; k < n; ++k) I[k] = P[2 * k] * P[2 * k] + P[2 * k + 1] * P[2 * k + 1];
      for (int64_t m = 1; m < M; ++m) {
        const T* __restrict__ Pm = P + m * n * 2;
        for (int64_t k = 0; k < n; ++k) I[k] += Pm[2 * k] * Pm[2 * k] + Pm[2 * k + 1] * Pm[2 * k + 1];
      }
      per_pattern[b] = kernel(I, measured + b * n, valid ? valid + b * meas.valid_stride : nullptr, s, n);
      if (!residual) continue;
      for (int64_t k = 0; k < n; ++k) s[k] *= 2;
      for (int64_t m = 0; m < M; ++m) {
        T* __restrict__ Pm = P + m * n * 2;
        for (int64_t k = 0; k < n; ++k) {
          Pm[2 * k] *= s[k];
          Pm[2 * k + 1] *= s[k];
        }
      }
    }
  });
  double total = 0;
  for (double v : per_pattern) total += v;  // pattern order: the same sum for any thread count
  return total;
}

// Loss of far-field waves Psi (a fresh tensor this operator may overwrite).
// Returns the loss as a 0-dim tensor of the real precision.
torch::Tensor loss_of_far_field(torch::Tensor& Psi, const Measurement& meas, const PixelLoss& loss, bool residual) {
  const int64_t B = Psi.size(0), M = Psi.size(1), n = Psi.size(2) * Psi.size(3);
  double value = 0;
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(Psi.scalar_type()), "far_field_loss", [&] {
    value = loss_and_residual<scalar_t>(reinterpret_cast<scalar_t*>(Psi.data_ptr()), meas, B, M, n, loss, residual);
  });
  return torch::tensor(value, meas.measured.options());
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

// psi[b, m] = probe[m] * patches[b], interleaved complex, n pixels per window.
template <typename T>
void form_exit_waves(const T* probe, const T* patches, T* psi, int64_t B, int64_t M, int64_t n) {
  at::parallel_for(0, B * M, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bm = begin; bm < end; ++bm) {
      const T* __restrict__ p = probe + (bm % M) * n * 2;
      const T* __restrict__ x = patches + (bm / M) * n * 2;
      T* __restrict__ out = psi + bm * n * 2;
      for (int64_t k = 0; k < n; ++k) {
        const T pr = p[2 * k], pi = p[2 * k + 1], xr = x[2 * k], xi = x[2 * k + 1];
        out[2 * k] = pr * xr - pi * xi;
        out[2 * k + 1] = pr * xi + pi * xr;
      }
    }
  });
}

// The adjoints of psi = probe * patch for the exit-wave gradient g (B, M, n):
//   grad_patches[b] = scale * sum_m conj(probe[m]) g[b, m]
//   grad_probe[m]   = scale * sum_b conj(patches[b]) g[b, m]   (b in order: deterministic)
// in one pass over g and the patches: each task owns a block of pixels of
// every output, so the probe sums need no reduction across threads.
template <typename T>
void product_gradients(const T* probe, const T* patches, const T* g, T* grad_probe, T* grad_patches, int64_t B,
                       int64_t M, int64_t n, T scale) {
  constexpr int64_t kBlock = 256;  // pixels: a few KiB of every row, in L1
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t k0 = blk * kBlock, len = std::min(kBlock, n - k0);
      if (grad_probe)
        for (int64_t m = 0; m < M; ++m) std::fill_n(grad_probe + (m * n + k0) * 2, 2 * len, T(0));
      for (int64_t b = 0; b < B; ++b) {
        const T* __restrict__ x = patches + (b * n + k0) * 2;
        T* __restrict__ gx = grad_patches ? grad_patches + (b * n + k0) * 2 : nullptr;
        if (gx) std::fill_n(gx, 2 * len, T(0));
        for (int64_t m = 0; m < M; ++m) {
          const T* __restrict__ gm = g + ((b * M + m) * n + k0) * 2;
          if (gx) {
            const T* __restrict__ p = probe + (m * n + k0) * 2;
            for (int64_t k = 0; k < len; ++k) {
              const T pr = p[2 * k], pi = p[2 * k + 1], gr = gm[2 * k], gi = gm[2 * k + 1];
              gx[2 * k] += scale * (pr * gr + pi * gi);
              gx[2 * k + 1] += scale * (pr * gi - pi * gr);
            }
          }
          if (grad_probe) {
            T* __restrict__ gp = grad_probe + (m * n + k0) * 2;
            for (int64_t k = 0; k < len; ++k) {
              const T xr = x[2 * k], xi = x[2 * k + 1], gr = gm[2 * k], gi = gm[2 * k + 1];
              gp[2 * k] += xr * gr + xi * gi;
              gp[2 * k + 1] += xr * gi - xi * gr;
            }
          }
        }
      }
      if (grad_probe && scale != T(1))
        for (int64_t m = 0; m < M; ++m) {
          T* __restrict__ gp = grad_probe + (m * n + k0) * 2;
          for (int64_t k = 0; k < 2 * len; ++k) gp[k] *= scale;
        }
    }
  });
}

class ProbeFarFieldLossFunction : public torch::autograd::Function<ProbeFarFieldLossFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& probe_in, const torch::Tensor& patches_in,
                               const Measurement& meas, const PixelLoss& loss) {
    const int64_t B = patches_in.size(0), M = probe_in.size(0), h = probe_in.size(1), w = probe_in.size(2);
    const auto probe = probe_in.contiguous(), patches = patches_in.contiguous();
    auto psi = torch::empty({B, M, h, w}, probe.options());
    AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(probe.scalar_type()), "probe_far_field_loss", [&] {
      form_exit_waves<scalar_t>(reinterpret_cast<const scalar_t*>(probe.data_ptr()),
                                reinterpret_cast<const scalar_t*>(patches.data_ptr()),
                                reinterpret_cast<scalar_t*>(psi.data_ptr()), B, M, h * w);
    });
    auto Psi = far_field(psi).contiguous();
    psi = torch::Tensor();  // freed before the loss pass
    const bool residual = probe_in.requires_grad() || patches_in.requires_grad();
    auto value = loss_of_far_field(Psi, meas, loss, residual);
    if (residual) {
      ctx->saved_data["residual"] = Psi;
      ctx->save_for_backward({probe, patches});
    }
    return {value};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& probe = saved[0];
    const auto& patches = saved[1];
    const auto g = far_field_adjoint(ctx->saved_data["residual"].toTensor()).contiguous();
    const int64_t B = patches.size(0), M = probe.size(0), n = probe.size(1) * probe.size(2);
    torch::Tensor grad_probe, grad_patches;
    if (ctx->needs_input_grad(0)) grad_probe = torch::empty_like(probe);
    if (ctx->needs_input_grad(1)) grad_patches = torch::empty_like(patches);
    const double scale = grad_outputs[0].item<double>();
    AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(probe.scalar_type()), "probe_far_field_loss_backward", [&] {
      auto ptr = [](const torch::Tensor& t) {
        return t.defined() ? reinterpret_cast<scalar_t*>(t.data_ptr()) : nullptr;
      };
      product_gradients<scalar_t>(ptr(probe), ptr(patches), ptr(g), ptr(grad_probe), ptr(grad_patches), B, M, n,
                                  static_cast<scalar_t>(scale));
    });
    return {grad_probe, grad_patches, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor far_field_loss(const torch::Tensor& exit_waves, const torch::Tensor& measured,
                             const torch::Tensor& valid, const PixelLoss& loss) {
  constexpr const char* op = "far_field_loss";
  TESSERA_REQUIRE(Error, loss.available(), op, ": this loss has no per-pixel form; use its autograd form");
  TESSERA_REQUIRE(Error, exit_waves.dim() == 4 && exit_waves.is_complex(), op,
                  ": exit waves must be a complex (patterns, modes, h, w) array, got ", exit_waves.sizes(), " ",
                  exit_waves.scalar_type());
  const auto meas = check_measurement(op, exit_waves, exit_waves.size(0), measured, valid);
  return FarFieldLossFunction::apply(exit_waves, meas, loss)[0];
}

torch::Tensor probe_far_field_loss(const torch::Tensor& probe, const torch::Tensor& patches,
                                   const torch::Tensor& measured, const torch::Tensor& valid, const PixelLoss& loss) {
  constexpr const char* op = "probe_far_field_loss";
  TESSERA_REQUIRE(Error, loss.available(), op, ": this loss has no per-pixel form; use its autograd form");
  TESSERA_REQUIRE(Error, probe.dim() == 3 && probe.is_complex(), op,
                  ": the probe must be a complex (modes, h, w) array, got ", probe.sizes(), " ", probe.scalar_type());
  TESSERA_REQUIRE(Error, patches.dim() == 3 && patches.is_complex(), op,
                  ": the object patches must be a complex (patterns, h, w) array, got ", patches.sizes(), " ",
                  patches.scalar_type());
  TESSERA_REQUIRE(Error, patches.size(1) == probe.size(1) && patches.size(2) == probe.size(2) &&
                             patches.scalar_type() == probe.scalar_type() && patches.device() == probe.device(),
                  op, ": object patches ", patches.sizes(), " ", patches.scalar_type(), " on ", patches.device(),
                  " do not match the probe ", probe.sizes(), " ", probe.scalar_type(), " on ", probe.device());
  const auto meas = check_measurement(op, patches, patches.size(0), measured, valid);
  return ProbeFarFieldLossFunction::apply(probe, patches, meas, loss)[0];
}

}  // namespace tessera
