#include "models/losses.h"

#include <map>

#include "src/error.h"

namespace tessera {
namespace {

// Keeps sqrt and log differentiable where the model predicts exactly zero.
constexpr double kFloor = 1e-9;

torch::Tensor masked_sum(const torch::Tensor& per_pixel, const torch::Tensor& valid) {
  if (!valid.defined()) return per_pixel.sum();
  return torch::where(valid, per_pixel, torch::zeros_like(per_pixel)).sum();
}

torch::Tensor amplitude_loss(const torch::Tensor& pred, const torch::Tensor& meas, const torch::Tensor& valid) {
  auto r = torch::sqrt(pred + kFloor) - torch::sqrt(meas);
  return masked_sum(r * r, valid);
}

torch::Tensor intensity_loss(const torch::Tensor& pred, const torch::Tensor& meas, const torch::Tensor& valid) {
  auto r = pred - meas;
  return masked_sum(r * r, valid);
}

torch::Tensor poisson_loss(const torch::Tensor& pred, const torch::Tensor& meas, const torch::Tensor& valid) {
  return masked_sum(pred - meas * torch::log(pred + kFloor), valid);
}

std::map<std::string, LossInfo>& registry() {
  static std::map<std::string, LossInfo> r = [] {
    std::map<std::string, LossInfo> m;
    m["amplitude"] = {"amplitude", "Gaussian noise on amplitudes: sum (sqrt(I_pred) - sqrt(I))^2",
                      amplitude_loss, 2.0, false};
    m["intensity"] = {"intensity", "Gaussian noise on intensities: sum (I_pred - I)^2", intensity_loss,
                      8.0, true};
    m["poisson"] = {"poisson", "Poisson negative log-likelihood: sum (I_pred - I log I_pred)",
                    poisson_loss, 4.0, false};
    return m;
  }();
  return r;
}

}  // namespace

void register_loss(LossInfo info) { registry()[info.name] = std::move(info); }

const LossInfo& loss_by_name(const std::string& name) {
  auto it = registry().find(name);
  if (it == registry().end()) {
    std::string known;
    for (auto& n : loss_names()) known += (known.empty() ? "" : ", ") + n;
    throw SettingsError("unknown loss '" + name + "'; choose one of: " + known);
  }
  return it->second;
}

std::vector<std::string> loss_names() {
  std::vector<std::string> v;
  for (auto& [k, _] : registry()) v.push_back(k);
  return v;
}

}  // namespace tessera
