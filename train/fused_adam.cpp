#include "train/fused_adam.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "src/simd.h"
#include "train/optimizers.h"

namespace tessera {
namespace {

struct AdamConstants {
  double beta1, beta2, eps, weight_decay, step_size, sqrt_bias_correction2;
};

template <typename T>
TESSERA_SIMD_CLONES void adam_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                                     T* __restrict__ v, int64_t n, AdamConstants c) {
  const T beta1 = static_cast<T>(c.beta1), beta2 = static_cast<T>(c.beta2);
  const T one_minus_beta1 = static_cast<T>(1 - c.beta1), one_minus_beta2 = static_cast<T>(1 - c.beta2);
  const T eps = static_cast<T>(c.eps), decay = static_cast<T>(c.weight_decay);
  const T step_size = static_cast<T>(c.step_size), root_bc2 = static_cast<T>(c.sqrt_bias_correction2);
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i] + decay * p[i];
    m[i] = beta1 * m[i] + one_minus_beta1 * gi;
    v[i] = beta2 * v[i] + one_minus_beta2 * gi * gi;
    p[i] -= step_size * m[i] / (std::sqrt(v[i]) / root_bc2 + eps);
  }
}

bool fusable(const torch::Tensor& p, const torch::optim::AdamOptions& options) {
  const auto& g = p.grad();
  return !options.amsgrad() && p.device().is_cpu() && p.is_contiguous() && !p.is_sparse() && g.is_contiguous() &&
         !g.is_sparse() && g.scalar_type() == p.scalar_type() &&
         (p.scalar_type() == torch::kFloat || p.scalar_type() == torch::kDouble);
}

}  // namespace

torch::Tensor FusedAdam::step(LossClosure closure) {
  for (const auto& group : param_groups())
    for (const auto& p : group.params())
      if (p.grad().defined() && !fusable(p, static_cast<const torch::optim::AdamOptions&>(group.options())))
        return torch::optim::Adam::step(std::move(closure));
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      // The key and the lazily created state are torch::optim::Adam's own.
      auto& slot = state_[optimizer_state_key(*this, p)];
      if (!slot) {
        auto fresh = std::make_unique<torch::optim::AdamParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        slot = std::move(fresh);
      }
      auto& state = static_cast<torch::optim::AdamParamState&>(*slot);
      state.step(state.step() + 1);
      AdamConstants c;
      c.beta1 = std::get<0>(options.betas());
      c.beta2 = std::get<1>(options.betas());
      c.eps = options.eps();
      c.weight_decay = options.weight_decay();
      c.step_size = options.lr() / (1 - std::pow(c.beta1, static_cast<double>(state.step())));
      c.sqrt_bias_correction2 = std::sqrt(1 - std::pow(c.beta2, static_cast<double>(state.step())));
      auto& m = state.exp_avg();
      auto& v = state.exp_avg_sq();
      const auto g = p.grad();
      AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "fused_adam", [&] {
        scalar_t* pp = p.data_ptr<scalar_t>();
        const scalar_t* gp = g.data_ptr<scalar_t>();
        scalar_t* mp = m.data_ptr<scalar_t>();
        scalar_t* vp = v.data_ptr<scalar_t>();
        // Element-wise: the same result for any thread count. Threads only
        // for large arrays: waking a sleeping worker (OMP_WAIT_POLICY=PASSIVE)
        // costs tens of microseconds, more than a one-thread pass over the
        // ~50k values of a 165 x 165 object (about 30 us).
        at::parallel_for(0, p.numel(), 1 << 18, [&](int64_t begin, int64_t end) {
          adam_update<scalar_t>(pp + begin, gp + begin, mp + begin, vp + begin, end - begin, c);
        });
      });
    }
  }
  return loss;
}

}  // namespace tessera
