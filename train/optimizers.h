#pragma once
// torch::optim optimisers by name. A new optimiser is added by one
// register_optimizer call (optimizers.cpp registers the built-ins).
#include <functional>
#include <memory>
#include <string>
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

}  // namespace tessera
