// FusedAdam (train/fused_adam.h) against torch::optim::Adam: the same
// parameters and moments step after step, the same serialised state, and the
// registry's "adam" is the fused one.
#include <gtest/gtest.h>

#include <sstream>

#include "train/fused_adam.h"
#include "train/optimizers.h"

using namespace tessera;

namespace {

using torch::optim::Adam;
using torch::optim::AdamOptions;
using torch::optim::AdamParamState;

// Runs `steps` steps with the same gradients on a torch Adam and a FusedAdam
// and returns the largest relative difference of the parameters and moments.
double largest_difference(torch::Dtype dtype, AdamOptions options, int steps, bool contiguous = true) {
  torch::manual_seed(21);
  auto start = torch::randn({37, 41, 2}, dtype);
  auto a = start.clone(), b = start.clone();
  if (!contiguous) {  // a transposed view: not fusable, the fused optimiser falls back
    a = start.clone().transpose(0, 1);
    b = start.clone().transpose(0, 1);
  }
  Adam reference({a}, options);
  FusedAdam fused({b}, options);
  for (int s = 0; s < steps; ++s) {
    auto g = torch::randn(a.sizes(), dtype) * (s + 1);
    a.mutable_grad() = g.clone();
    b.mutable_grad() = g.clone();
    reference.step();
    fused.step();
  }
  auto scale = [](const torch::Tensor& t) { return t.abs().max().item<double>(); };
  auto& ra = static_cast<AdamParamState&>(*reference.state().begin()->second);
  auto& fb = static_cast<AdamParamState&>(*fused.state().begin()->second);
  EXPECT_EQ(ra.step(), fb.step());
  return std::max({(a - b).abs().max().item<double>() / scale(a),
                   (ra.exp_avg() - fb.exp_avg()).abs().max().item<double>() / scale(ra.exp_avg()),
                   (ra.exp_avg_sq() - fb.exp_avg_sq()).abs().max().item<double>() / scale(ra.exp_avg_sq())});
}

}  // namespace

TEST(FusedAdam, SameStepsAsTorchAdam) {
  EXPECT_LE(largest_difference(torch::kFloat64, AdamOptions(0.05), 6), 1e-13);
  EXPECT_LE(largest_difference(torch::kFloat64, AdamOptions(0.01).weight_decay(0.1).betas({0.8, 0.99}), 6), 1e-13);
  EXPECT_LE(largest_difference(torch::kFloat32, AdamOptions(0.05), 6), 1e-5);
  // Not fusable: torch::optim::Adam's own step.
  EXPECT_EQ(largest_difference(torch::kFloat64, AdamOptions(0.05), 3, false), 0.0);
  EXPECT_EQ(largest_difference(torch::kFloat64, AdamOptions(0.05).amsgrad(true), 3), 0.0);
}

// Saved after 3 steps, loaded into a new optimiser, 3 more steps: the same
// parameter as 6 uninterrupted steps, bit for bit.
TEST(FusedAdam, ResumesFromItsSavedState) {
  torch::manual_seed(22);
  auto start = torch::randn({50, 2}, torch::kFloat32);
  std::vector<torch::Tensor> grads;
  for (int s = 0; s < 6; ++s) grads.push_back(torch::randn({50, 2}, torch::kFloat32));
  auto whole = start.clone();
  FusedAdam uninterrupted({whole}, AdamOptions(0.05));
  for (const auto& g : grads) {
    whole.mutable_grad() = g.clone();
    uninterrupted.step();
  }
  auto first = start.clone();
  FusedAdam before({first}, AdamOptions(0.05));
  for (int s = 0; s < 3; ++s) {
    first.mutable_grad() = grads[s].clone();
    before.step();
  }
  std::ostringstream saved;
  {
    torch::serialize::OutputArchive archive;
    before.save(archive);
    archive.save_to(saved);
  }
  auto second = first.clone();
  FusedAdam after({second}, AdamOptions(0.05));
  std::istringstream in(saved.str());
  torch::serialize::InputArchive archive;
  archive.load_from(in);
  after.load(archive);
  for (int s = 3; s < 6; ++s) {
    second.mutable_grad() = grads[s].clone();
    after.step();
  }
  EXPECT_TRUE(torch::equal(second, whole));
}

TEST(FusedAdam, IsTheRegisteredAdam) {
  auto p = torch::zeros({4, 2});
  auto optimizer = optimizer_by_name("adam").make({p}, 0.1);
  EXPECT_NE(dynamic_cast<FusedAdam*>(optimizer.get()), nullptr);
}
