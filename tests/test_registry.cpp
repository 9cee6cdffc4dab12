// One way to extend (issue 17, item 2): losses, optimisers, priors and probe
// starts are Registries; a registered entry is found by name and listed; an optimiser
// whose state the phase-ramp gauge cannot carry is refused, never left
// inconsistent.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "data/simulate.h"
#include "models/losses.h"
#include "models/priors/native.h"
#include "src/error.h"
#include "tests/error_text.h"
#include "src/registry.h"
#include "models/probe_init.h"
#include "train/optimizers.h"
#include "train/probe_starts.h"
#include "train/reconstruction.h"
#include "train/scan_problem.h"

using namespace tessera;

namespace {

struct Named {
  std::string name;
  int value;
};


// A plain gradient step that keeps a per-parameter state of its own kind:
// one the gauge's rotation does not know.
struct CountState : torch::optim::OptimizerCloneableParamState<CountState> {
  int64_t steps = 0;
};

struct CountOptions : torch::optim::OptimizerCloneableOptions<CountOptions> {
  double lr = 0.01;
  double get_lr() const override { return lr; }
  void set_lr(const double v) override { lr = v; }
};

class CountingDescent : public torch::optim::Optimizer {
 public:
  CountingDescent(std::vector<torch::Tensor> params, double lr)
      : Optimizer({torch::optim::OptimizerParamGroup(std::move(params))}, std::make_unique<CountOptions>()) {
    static_cast<CountOptions&>(defaults()).lr = lr;
  }
  torch::Tensor step(LossClosure closure = nullptr) override {
    torch::NoGradGuard no_grad;
    for (auto& group : param_groups())
      for (auto& p : group.params()) {
        if (!p.grad().defined()) continue;
        auto& slot = state()[optimizer_state_key(*this, p)];
        if (!slot) slot = std::make_unique<CountState>();
        static_cast<CountState&>(*slot).steps++;
        p.add_(p.grad(), -static_cast<CountOptions&>(group.options()).lr);
      }
    return {};
  }
  void save(torch::serialize::OutputArchive&) const override {}
  void load(torch::serialize::InputArchive&) override {}
};

// An optimiser stepping in parameter units, as a program registers one.
OptimizerInfo parameter_units_optimizer(
    std::string name, std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>, double)> make) {
  OptimizerInfo info;
  info.name = std::move(name);
  info.description = info.name + " (test)";
  info.scaling = StepScaling::ParameterUnits;
  info.default_rate = 0.05;
  info.make = std::move(make);
  return info;
}

OptimizerInfo counting_descent() {
  return parameter_units_optimizer("counting-descent", [](std::vector<torch::Tensor> p, double lr) {
    return std::make_unique<CountingDescent>(std::move(p), lr);
  });
}

OptimizerInfo adamw() {
  return parameter_units_optimizer("adamw-test", [](std::vector<torch::Tensor> p, double lr) {
    return std::make_unique<torch::optim::AdamW>(std::move(p), torch::optim::AdamWOptions(lr));
  });
}

ScanProblem small_problem() {
  SimulationSettings sim;
  sim.frame = 16;
  sim.scan_y = sim.scan_x = 4;
  sim.step_px = 3;
  return ScanProblem::from_content(simulate(sim), "simulated");
}

}  // namespace

TEST(Registry, FindsListsAndReplacesByName) {
  Registry<Named> r("widget", " (see the manual)");
  r.add({"b", 2});
  r.add({"a", 1});
  EXPECT_EQ(r.get("a").value, 1);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.listed(), "a, b");
  r.add({"a", 3});  // a program's own "a" replaces the built-in
  EXPECT_EQ(r.get("a").value, 3);
  const std::string e = settings_error_of([&] { r.get("c"); });
  EXPECT_EQ(e, "unknown widget 'c'; choose one of: a, b (see the manual)");
  EXPECT_NE(settings_error_of([&] { r.add({"", 0}); }).find("needs a name"), std::string::npos);
}

TEST(Registry, LossesOptimisersAndPriorsAreRegistriesAProgramExtends) {
  for (const char* name : {"amplitude", "intensity", "poisson"}) EXPECT_EQ(loss_by_name(name).name, name);
  for (const char* name : {"adam", "sgd", "rmsprop", "adagrad", "lbfgs"}) EXPECT_EQ(optimizer_by_name(name).name, name);
  EXPECT_EQ(prior_names(), (std::vector<std::string>{"smooth", "tv", "tv-amplitude", "tv-phase"}));
  EXPECT_NE(settings_error_of([] { optimizer_by_name("adamw9"); }).find("unknown optimizer 'adamw9'; choose one of: adagrad"),
            std::string::npos);
  const std::string e = settings_error_of([] { make_builtin_prior("tikhonov"); });
  EXPECT_NE(e.find("unknown prior 'tikhonov'"), std::string::npos) << e;
  EXPECT_NE(e.find("--regulariser"), std::string::npos) << e;

  register_prior({"flat-test", "no penalty (test)", [] { return make_builtin_prior("smooth"); }});
  EXPECT_EQ(make_builtin_prior("flat-test")->name(), "smooth");
  EXPECT_NE(builtin_prior_names().find("flat-test"), std::string::npos);
}

TEST(Registry, TheGaugeCarriesTheStateOfEveryBuiltInOptimiserAndAdamW) {
  for (const char* name : {"adam", "sgd", "rmsprop", "adagrad"})
    EXPECT_TRUE(optimizer_state_follows_gauge(optimizer_by_name(name))) << name;
  EXPECT_FALSE(optimizer_state_follows_gauge(optimizer_by_name("lbfgs")));  // runs without the gauge
  EXPECT_TRUE(optimizer_state_follows_gauge(adamw()));
  EXPECT_FALSE(optimizer_state_follows_gauge(counting_descent()));

  // AdamW's moments turn with its parameter as Adam's do.
  auto p = torch::randn({5, 2}, torch::kFloat64).requires_grad_();
  torch::optim::AdamW w({p}, torch::optim::AdamWOptions(0.1));
  p.mutable_grad() = torch::randn({5, 2}, torch::kFloat64);
  w.step();
  auto& s = static_cast<torch::optim::AdamWParamState&>(*w.state().begin()->second);
  const auto before = torch::view_as_complex(s.exp_avg()).clone();
  const auto u = torch::polar(torch::ones({5}, torch::kFloat64), torch::linspace(0, 3, 5, torch::kFloat64));
  EXPECT_TRUE(rotate_optimizer_state(w, p, u));
  EXPECT_TRUE(torch::allclose(torch::view_as_complex(s.exp_avg()), before * u));
}

TEST(Registry, AnOptimiserWhoseStateTheGaugeCannotCarryIsRefusedUnlessTheGaugeIsOff) {
  register_optimizer(counting_descent());
  ReconstructionSettings s;
  s.optimizer = "counting-descent";
  s.iterations = 1;
  s.quiet = true;
  s.threads = 1;
  const std::string e = settings_error_of([&] { Reconstruction refused(small_problem(), s); });
  EXPECT_NE(e.find("optimizer 'counting-descent'"), std::string::npos) << e;
  EXPECT_NE(e.find("--phase-ramp-gauge off"), std::string::npos) << e;
  s.phase_ramp_gauge = "off";
  Reconstruction rec(small_problem(), s);
  EXPECT_NO_THROW(rec.iterate());
}

// A program's probe start chooses the probe the reconstruction starts from;
// one that gives a probe of another shape, and an unknown name, are refused.
TEST(Registry, AProgramsProbeStartChoosesTheStartingProbe) {
  EXPECT_EQ(probe_start_names(), (std::vector<std::string>{"focused", "parallax", "search"}));
  torch::Tensor chosen;
  register_probe_start({"defocus-3-test", "3 rad at the aperture edge (test)", [&](const ProbeStartContext& c) {
                          chosen = add_defocus(c.focused_probe, 3.0, c.aperture_radius_px, c.centre);
                          c.restart_from(chosen);
                        }});
  EXPECT_NE(probe_start_help().find("defocus-3-test: 3 rad"), std::string::npos) << probe_start_help();
  ReconstructionSettings s;
  s.iterations = 1;
  s.quiet = true;
  s.threads = 1;
  s.defocus_start = "focused";
  const auto focused = Reconstruction(small_problem(), s).probe();
  s.defocus_start = "defocus-3-test";
  Reconstruction rec(small_problem(), s);
  ASSERT_TRUE(chosen.defined());
  EXPECT_TRUE(torch::allclose(rec.probe().to(torch::kComplexDouble), chosen.to(torch::kComplexDouble), 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(rec.probe().to(torch::kComplexDouble), focused.to(torch::kComplexDouble), 1e-3, 1e-3));

  register_probe_start({"wrong-shape-test", "(test)", [](const ProbeStartContext& c) {
                          c.restart_from(torch::ones({1, 3, 3}, c.focused_probe.options()));
                        }});
  s.defocus_start = "wrong-shape-test";
  const std::string shape = settings_error_of([&] { Reconstruction refused(small_problem(), s); });
  EXPECT_NE(shape.find("probe start 'wrong-shape-test' gave a probe of shape [1, 3, 3]"), std::string::npos) << shape;
  s.defocus_start = "sideways";
  const std::string unknown = settings_error_of([&] { Reconstruction refused(small_problem(), s); });
  EXPECT_NE(unknown.find("unknown probe start 'sideways'; choose one of: defocus-3-test, focused"), std::string::npos)
      << unknown;
}
