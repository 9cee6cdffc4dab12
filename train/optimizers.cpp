#include "train/optimizers.h"

#include <map>

#include "src/error.h"

namespace tessera {
namespace {

std::map<std::string, OptimizerInfo>& registry() {
  static std::map<std::string, OptimizerInfo> r = [] {
    using namespace torch::optim;
    std::map<std::string, OptimizerInfo> m;
    m["adam"] = {"adam", "Adam (element-wise adaptive moments)", StepScaling::ParameterUnits, 0.05,
                 [](std::vector<torch::Tensor> p, double lr) {
                   return std::make_unique<Adam>(std::move(p), AdamOptions(lr));
                 }};
    m["rmsprop"] = {"rmsprop", "RMSprop", StepScaling::ParameterUnits, 0.01,
                    [](std::vector<torch::Tensor> p, double lr) {
                      return std::make_unique<RMSprop>(std::move(p), RMSpropOptions(lr));
                    }};
    m["adagrad"] = {"adagrad", "Adagrad", StepScaling::ParameterUnits, 0.2,
                    [](std::vector<torch::Tensor> p, double lr) {
                      return std::make_unique<Adagrad>(std::move(p), AdagradOptions(lr));
                    }};
    m["sgd"] = {"sgd", "gradient descent with Nesterov momentum 0.9", StepScaling::InverseCurvature, 0.1,
                [](std::vector<torch::Tensor> p, double lr) {
                  return std::make_unique<SGD>(std::move(p), SGDOptions(lr).momentum(0.9).nesterov(true));
                }};
    m["lbfgs"] = {"lbfgs", "L-BFGS with strong-Wolfe line search (full batch, one tile)",
                  StepScaling::LineSearch, 1.0, [](std::vector<torch::Tensor> p, double lr) {
                    return std::make_unique<LBFGS>(
                        std::move(p), LBFGSOptions(lr).max_iter(2).history_size(10).line_search_fn("strong_wolfe"));
                  }};
    return m;
  }();
  return r;
}

}  // namespace

void register_optimizer(OptimizerInfo info) { registry()[info.name] = std::move(info); }

const OptimizerInfo& optimizer_by_name(const std::string& name) {
  auto it = registry().find(name);
  if (it == registry().end()) {
    std::string known;
    for (auto& n : optimizer_names()) known += (known.empty() ? "" : ", ") + n;
    throw SettingsError("unknown optimizer '" + name + "'; choose one of: " + known);
  }
  return it->second;
}

std::vector<std::string> optimizer_names() {
  std::vector<std::string> v;
  for (auto& [k, _] : registry()) v.push_back(k);
  return v;
}

}  // namespace tessera
