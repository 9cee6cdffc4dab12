// A reconstruction with parts tessera does not ship: a loss, an optimiser, a
// probe start and a prior registered or plugged in by the application, on
// simulated data.
#include <cmath>
#include <iostream>
#include <memory>

#include "data/simulate.h"
#include "models/losses.h"
#include "models/prior.h"
#include "train/optimizers.h"
#include "train/probe_starts.h"
#include "train/run.h"
#include "train/scan_problem.h"

namespace {

// Amplitude loss with a Huber tail: quadratic for small residuals, linear for
// outliers (hot pixels, cosmic rays). No pixel kernel: autograd differentiates it.
tessera::LossInfo huber_loss() {
  tessera::LossInfo info;
  info.name = "huber";
  info.description = "Huber loss on amplitudes (delta = 1 count^0.5)";
  info.function = [](const torch::Tensor& predicted, const torch::Tensor& measured, const torch::Tensor& valid) {
    auto r = torch::sqrt(predicted.clamp_min(0) + 1e-12) - torch::sqrt(measured.clamp_min(0));
    auto a = torch::abs(r);
    auto l = torch::where(a <= 1.0, r * r, 2 * a - 1);
    // valid is undefined when every pixel is used.
    return (valid.defined() ? torch::where(valid, l, torch::zeros_like(l)) : l).sum();
  };
  info.curvature = 2;  // the amplitude loss's near the solution
  info.curvature_scales_with_intensity = false;
  return info;
}

// Adam with decoupled weight decay, from torch::optim.
tessera::OptimizerInfo adamw() {
  tessera::OptimizerInfo info;
  info.name = "adamw";
  info.description = "AdamW (torch::optim), weight decay 0";
  info.scaling = tessera::StepScaling::ParameterUnits;
  info.default_rate = 0.05;
  info.make = [](std::vector<torch::Tensor> params, double lr) -> std::unique_ptr<torch::optim::Optimizer> {
    return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(lr).weight_decay(0));
  };
  return info;
}

// A total-variation-like smoothness penalty on the object, summed over the
// pixels this tile owns (so that tiles add up exactly).
class Smoothness : public tessera::Prior {
 public:
  std::string name() const override { return "smoothness"; }
  bool is_regulariser() const override { return true; }
  torch::Tensor penalty(const torch::Tensor& object, const tessera::Rect& owned) override {
    auto o = object.slice(-2, owned.y0, owned.y1()).slice(-1, owned.x0, owned.x1());
    auto dy = o.slice(-2, 1) - o.slice(-2, 0, -1);
    auto dx = o.slice(-1, 1) - o.slice(-1, 0, -1);
    return torch::abs(dy).pow(2).sum() + torch::abs(dx).pow(2).sum();
  }
};

// The defocus the shadow parallax shows, else the focused probe: no search
// (for data whose probe is known to be near focus when the parallax is flat).
tessera::ProbeStartInfo parallax_or_focused() {
  return {"parallax-or-focused", "the shadow parallax's defocus, else the focused probe",
          [](const tessera::ProbeStartContext& c) { c.parallax_defocus(); }};
}

}  // namespace

int main() try {
  tessera::register_loss(huber_loss());
  tessera::register_optimizer(adamw());
  tessera::register_probe_start(parallax_or_focused());

  tessera::SimulationSettings sim;
  sim.frame = 32;
  sim.scan_y = sim.scan_x = 12;
  sim.step_px = 3;
  auto problem = tessera::ScanProblem::from_content(tessera::simulate(sim), "simulated");

  tessera::ReconstructionSettings settings;
  settings.loss = "huber";
  settings.optimizer = "adamw";
  settings.defocus_start = "parallax-or-focused";
  settings.iterations = 40;
  settings.quiet = true;
  tessera::RunOptions options;
  options.output = "custom_parts_result.h5";
  options.previews = false;
  options.overwrite = true;
  tessera::PriorSettings weight;
  weight.weight = 1e-3;
  options.priors.emplace_back(std::make_shared<Smoothness>(), weight);

  const auto summary = tessera::run_reconstruction(std::move(problem), settings, options);
  std::cout << "custom loss 'huber', optimiser 'adamw', probe start 'parallax-or-focused', prior 'smoothness': " << summary.iterations
            << " iterations, final loss " << summary.final_loss;
  if (summary.score) std::cout << ", correlation with the true object " << summary.score->correlation;
  std::cout << std::endl;
  // A run that learnt nothing is a failure of the example, not a figure to print.
  return summary.score && summary.score->correlation > 0.9 ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "custom_parts: " << e.what() << std::endl;
  return 1;
}
