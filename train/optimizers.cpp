#include "train/optimizers.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <map>
#include <optional>

#include "src/error.h"
#include "src/registry.h"
#include "train/fused_adam.h"

namespace tessera {
namespace {

Registry<OptimizerInfo>& registry() {
  static Registry<OptimizerInfo> r = [] {
    using namespace torch::optim;
    Registry<OptimizerInfo> m("optimizer");
    m.add({"adam", "Adam (element-wise adaptive moments)", StepScaling::ParameterUnits, 0.05,
                 [](std::vector<torch::Tensor> p, double lr) {
                   return std::make_unique<FusedAdam>(std::move(p), AdamOptions(lr));
                 }});
    m.add({"rmsprop", "RMSprop", StepScaling::ParameterUnits, 0.01,
                    [](std::vector<torch::Tensor> p, double lr) {
                      return std::make_unique<RMSprop>(std::move(p), RMSpropOptions(lr));
                    }});
    m.add({"adagrad", "Adagrad", StepScaling::ParameterUnits, 0.2,
                    [](std::vector<torch::Tensor> p, double lr) {
                      return std::make_unique<Adagrad>(std::move(p), AdagradOptions(lr));
                    }});
    m.add({"sgd", "gradient descent with Nesterov momentum 0.9", StepScaling::InverseCurvature, 0.1,
                [](std::vector<torch::Tensor> p, double lr) {
                  return std::make_unique<SGD>(std::move(p), SGDOptions(lr).momentum(0.9).nesterov(true));
                }});
    m.add({"lbfgs", "L-BFGS with strong-Wolfe line search (full batch, one tile)",
                  StepScaling::LineSearch, 1.0, [](std::vector<torch::Tensor> p, double lr) {
                    return std::make_unique<LBFGS>(
                        std::move(p), LBFGSOptions(lr).max_iter(2).history_size(10).line_search_fn("strong_wolfe"));
                  }});
    return m;
  }();
  return r;
}

}  // namespace

void register_optimizer(OptimizerInfo info) { registry().add(std::move(info)); }

const OptimizerInfo& optimizer_by_name(const std::string& name) { return registry().get(name); }

namespace {

void rotate_moment(torch::Tensor& m, const torch::Tensor& u) {
  if (!m.defined() || m.numel() == 0) return;
  auto c = torch::view_as_complex(m);
  c.mul_(u.to(c.dtype()));
}

// (re, im) second moments under z -> u z, |u| = 1: re' = cos^2 re + sin^2 im,
// im' = sin^2 re + cos^2 im. One pass on the CPU (this runs every iteration,
// over the whole object); tensor operations elsewhere.
void rotate_second_moment(torch::Tensor& v, const torch::Tensor& u) {
  if (!v.defined() || v.numel() == 0) return;
  const auto uv = u.to(c10::toComplexType(v.scalar_type())).expand(v.sizes().slice(0, v.dim() - 1)).contiguous();
  if (v.device().is_cpu() && v.is_contiguous()) {
    AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "rotate_second_moment", [&] {
      auto* pv = v.data_ptr<scalar_t>();
      const auto* pu = reinterpret_cast<const scalar_t*>(uv.data_ptr());
      at::parallel_for(0, uv.numel(), 1 << 17, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const scalar_t c2 = pu[2 * i] * pu[2 * i], s2 = pu[2 * i + 1] * pu[2 * i + 1];
          const scalar_t re = pv[2 * i], im = pv[2 * i + 1];
          pv[2 * i] = c2 * re + s2 * im;
          pv[2 * i + 1] = s2 * re + c2 * im;
        }
      });
    });
    return;
  }
  auto cos2 = torch::real(uv).pow(2), sin2 = torch::imag(uv).pow(2);
  auto re = v.select(-1, 0), im = v.select(-1, 1);
  auto new_re = cos2 * re + sin2 * im, new_im = sin2 * re + cos2 * im;
  re.copy_(new_re);
  im.copy_(new_im);
}

// The per-parameter state arrays of the optimisers this build knows, by how
// they follow the parameter p -> u p: moments turn with it, element-wise
// second moments of (re, im) mix. Handles share the state's storage, so
// changing them in place changes the state. nullopt for another kind.
struct StateArrays {
  std::vector<torch::Tensor> moments, second_moments;
};

std::optional<StateArrays> state_arrays(torch::optim::OptimizerParamState* state) {
  using namespace torch::optim;
  if (auto* a = dynamic_cast<AdamParamState*>(state))
    return StateArrays{{a->exp_avg()}, {a->exp_avg_sq(), a->max_exp_avg_sq()}};
  if (auto* w = dynamic_cast<AdamWParamState*>(state))
    return StateArrays{{w->exp_avg()}, {w->exp_avg_sq(), w->max_exp_avg_sq()}};
  if (auto* g = dynamic_cast<SGDParamState*>(state)) return StateArrays{{g->momentum_buffer()}, {}};
  if (auto* r = dynamic_cast<RMSpropParamState*>(state))
    return StateArrays{{r->momentum_buffer(), r->grad_avg()}, {r->square_avg()}};
  if (auto* d = dynamic_cast<AdagradParamState*>(state)) return StateArrays{{}, {d->sum()}};
  return std::nullopt;
}

}  // namespace

bool set_adam_epsilon(torch::optim::Optimizer& optimizer, double eps) {
  if (!dynamic_cast<torch::optim::Adam*>(&optimizer)) return false;
  for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).eps(eps);
  return true;
}

bool rotate_optimizer_state(torch::optim::Optimizer& optimizer, const torch::Tensor& param, const torch::Tensor& u) {
  using namespace torch::optim;
  torch::NoGradGuard no_grad;
  if (dynamic_cast<LBFGS*>(&optimizer)) return false;
  auto it = optimizer.state().find(optimizer_state_key(optimizer, param));
  if (it == optimizer.state().end()) return true;  // no step taken yet: nothing to carry
  const auto arrays = state_arrays(it->second.get());
  if (!arrays) return false;
  for (auto m : arrays->moments) rotate_moment(m, u);
  for (auto v : arrays->second_moments) rotate_second_moment(v, u);
  return true;
}

std::string optimizer_state_mismatch(torch::optim::Optimizer& optimizer) {
  using namespace torch::optim;
  if (dynamic_cast<LBFGS*>(&optimizer)) return {};  // its state is rebuilt, never restored (reconstruction.cpp)
  for (auto& group : optimizer.param_groups()) {
    for (auto& param : group.params()) {
      auto it = optimizer.state().find(optimizer_state_key(optimizer, param));
      if (it == optimizer.state().end()) continue;  // no step taken yet
      const auto arrays = state_arrays(it->second.get());
      if (!arrays) return "a per-parameter state of a kind this build does not know";
      std::vector<torch::Tensor> tensors = arrays->moments;
      tensors.insert(tensors.end(), arrays->second_moments.begin(), arrays->second_moments.end());
      for (const auto& t : tensors) {
        // Optional buffers (amsgrad, momentum 0) stay undefined or empty.
        if (!t.defined() || (t.numel() == 0 && param.numel() != 0)) continue;
        if (t.sizes() != param.sizes() || t.scalar_type() != param.scalar_type() || t.device() != param.device())
          return detail::concat("a state array of shape ", t.sizes(), " and type ", t.scalar_type(),
                                " for a parameter of shape ", param.sizes(), " and type ", param.scalar_type());
      }
    }
  }
  return {};
}

std::vector<std::string> optimizer_names() { return registry().names(); }

bool optimizer_state_follows_gauge(const OptimizerInfo& info) {
  if (info.scaling == StepScaling::LineSearch) return false;
  // One step on a one-element complex parameter gives the optimiser its state;
  // a rotation by u = 1 then succeeds exactly when that state is one the
  // rotation knows.
  torch::Tensor p = torch::zeros({1, 2}, torch::kFloat32).requires_grad_();
  p.mutable_grad() = torch::ones_like(p);
  auto optimizer = info.make({p}, 1e-3);
  optimizer->step();
  return rotate_optimizer_state(*optimizer, p, torch::ones({1}, torch::kComplexFloat));
}

}  // namespace tessera
