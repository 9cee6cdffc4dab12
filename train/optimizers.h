#pragma once
// torch::optim optimisers by name. A new optimiser is added by one
// register_optimizer call (optimizers.cpp registers the built-ins).
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <torch/torch.h>

namespace tessera {

enum class StepScaling {
  // Step size is in parameter units whatever the gradient's scale (Adam, RMSprop, Adagrad):
  // the learning rate is a fraction of the parameter's typical magnitude.
  ParameterUnits,
  // Step = lr * gradient (SGD): the learning rate is derived from the loss curvature.
  InverseCurvature,
  // Line search sets the step (L-BFGS): full batch, one tile only.
  LineSearch,
};

struct OptimizerInfo {
  std::string name;
  std::string description;
  StepScaling scaling;
  double default_rate;  // in the units that `scaling` says
  // Builds the optimiser for one parameter with learning rate lr.
  std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>, double lr)> make;
};

void register_optimizer(OptimizerInfo info);
const OptimizerInfo& optimizer_by_name(const std::string& name);  // SettingsError listing known names
std::vector<std::string> optimizer_names();

// Carries an optimiser's state through the change of variables p -> u p of
// the complex parameter stored as `param` (real (..., 2) view), u unit-modulus
// (broadcast to p): a gauge transformation, after which the loss is the same
// function of the new variables, so gradients turn by u as well. Moment
// buffers turn with the parameter; element-wise second moments of the real
// and imaginary parts mix as cos^2 / sin^2 of the angle (their correlation
// is not kept). Returns false for optimisers whose state it cannot follow
// (L-BFGS): do not transform their parameters.
bool rotate_optimizer_state(torch::optim::Optimizer& optimizer, const torch::Tensor& param, const torch::Tensor& u);

// Whether the state of the optimiser `info` makes is one that
// rotate_optimizer_state carries (Adam, AdamW, RMSprop, Adagrad, SGD); false
// for L-BFGS and for a registered optimiser whose state it does not know.
// The reconstruction refuses a phase-ramp gauge with such an optimiser
// rather than leave its state inconsistent with the parameters.
bool optimizer_state_follows_gauge(const OptimizerInfo& info);

// Whether every per-parameter state tensor of `optimizer` (moments, momentum,
// sums) has its parameter's shape, dtype and device: a state restored from a
// file written for other tiles, slices or precision fails this, and stepping
// with it would read past the parameter's memory. An empty string when it
// fits, else what does not fit.
std::string optimizer_state_mismatch(torch::optim::Optimizer& optimizer);

// Sets Adam's epsilon on every parameter group; false (nothing set) for
// another optimiser. (torch::optim saves the options with the state but does
// not load them back: Reconstruction::set_adam_epsilons sets it every step.)
bool set_adam_epsilon(torch::optim::Optimizer& optimizer, double eps);

// torch::optim keeps an optimiser's per-parameter state under the parameter's
// TensorImpl: its address printed as text up to LibTorch 1.13, the pointer
// itself from 2.0. The key of `param` in optimizer.state(), for either.
template <typename Optimizer>
auto optimizer_state_key(const Optimizer& optimizer, const torch::Tensor& param) {
  using Key = typename std::decay_t<decltype(optimizer.state())>::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream text;  // as c10::guts::to_string prints a pointer
    text << static_cast<const void*>(param.unsafeGetTensorImpl());
    return Key(text.str());
  } else {
    return Key(param.unsafeGetTensorImpl());
  }
}

}  // namespace tessera
