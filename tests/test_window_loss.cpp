// tessera::window_far_field_loss, the fused loss of the GPU path: its CPU
// kernel (which runs the same element steps as the CUDA kernel) against the
// CPU production operator object_far_field_loss for every loss, modes, masks
// and pattern rows; gradcheck in double; the same bits for any thread count;
// errors; and CUDA against CPU where a GPU exists.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>

#include "models/far_field_loss.h"
#include "models/losses.h"
#include "models/ptycho_model.h"
#include "src/ops/patches.h"
#include "src/ops/window_loss.h"
#include "tests/error_text.h"
#include "tests/fused_loss_problem.h"
#include "tests/gradcheck.h"
#include "tests/require_cuda.h"

namespace tessera {
namespace {

using testing::make_problem;
using testing::Problem;
using testing::relative_difference;

struct Result {
  double loss = 0;
  torch::Tensor object, probe, positions;
};

// Mask and rows of a case: none, one shared mask, or a mask per frame with
// the patterns read from a larger stack through rows.
enum class Masking { none, shared, per_frame_rows };

struct Inputs {
  torch::Tensor measured, valid, rows;
};

Inputs inputs_for(const Problem& p, Masking masking) {
  Inputs in;
  const int64_t B = p.positions.size(0), h = p.probe.size(1), w = p.probe.size(2);
  if (masking == Masking::none) {
    in.measured = p.measured;
  } else if (masking == Masking::shared) {
    in.measured = p.measured;
    in.valid = torch::rand({h, w}) > 0.25;
  } else {
    // Pattern b is frame rows[b] of a stack of B + 3 frames, in shuffled order.
    const int64_t N = B + 3;
    in.rows = torch::randperm(N, torch::kInt64).slice(0, 0, B);
    in.measured = torch::rand({N, h, w}, p.measured.options()) * 4 + 0.1;
    in.valid = torch::rand({N, h, w}) > 0.25;
  }
  return in;
}

Problem in_precision(const Problem& p, bool single) {
  if (!single) return p;
  Problem q = p;
  q.object = p.object.to(torch::kComplexFloat);
  q.probe = p.probe.to(torch::kComplexFloat);
  q.positions = p.positions.to(torch::kFloat32);
  q.measured = p.measured.to(torch::kFloat32);
  return q;
}

constexpr double kWeight = 0.37;

// The loss and its gradients (object, probe, positions) through the CPU
// fused operator or through extract_patches + the window op, on `device`.
Result run(const Problem& p, const Inputs& in, const LossInfo& loss, bool window_op,
           const torch::Device& device = torch::kCPU) {
  auto leaf = [&](const torch::Tensor& t) { return t.to(device).clone().requires_grad_(); };
  auto object = leaf(p.object), probe = leaf(p.probe), positions = leaf(p.positions);
  auto to = [&](const torch::Tensor& t) { return t.defined() ? t.to(device) : t; };
  const auto measured = in.rows.defined() ? in.measured.to(p.measured.scalar_type()) : p.measured;
  torch::Tensor value;
  if (window_op)
    value = ops::window_far_field_loss(ops::extract_patches(object, positions, p.probe.size(1), p.probe.size(2)),
                                       probe, to(measured), to(in.valid), to(in.rows), loss.pixelwise.window_form,
                                       kWeight);
  else
    value = object_far_field_loss(object, positions, probe, to(measured), to(in.valid), loss.pixelwise, to(in.rows),
                                  kWeight);
  value.backward();
  return {value.item<double>(), object.grad().cpu(), probe.grad().cpu(), positions.grad().cpu()};
}

// Largest relative difference of loss and the three gradients.
double worst(const Result& a, const Result& b) {
  double d = std::abs(a.loss - b.loss) / std::abs(b.loss);
  for (const auto& [x, y] : std::initializer_list<std::pair<torch::Tensor, torch::Tensor>>{
           {a.object, b.object}, {a.probe, b.probe}, {a.positions, b.positions}})
    d = std::max(d, relative_difference(x, y));
  return d;
}

TEST(WindowLoss, EveryBuiltInLossHasAForm) {
  for (const auto& name : {"amplitude", "intensity", "poisson"})
    EXPECT_EQ(loss_by_name(name).pixelwise.window_form, name);
  EXPECT_EQ(ops::window_loss_forms(), (std::vector<std::string>{"amplitude", "intensity", "poisson"}));
}

// The CPU kernel against the CPU production operator: every loss, 1 and 2
// modes, no mask, a shared mask, a per-frame mask with pattern rows; double
// to 1e-12, float to 1e-5.
TEST(WindowLoss, CpuKernelEqualsTheFusedCpuOperator) {
  torch::manual_seed(5);
  for (int64_t modes : {1, 2})
    for (Masking masking : {Masking::none, Masking::shared, Masking::per_frame_rows}) {
      const auto base = make_problem(1, modes, false, 7, 8);
      const auto in = inputs_for(base, masking);
      for (bool single : {false, true}) {
        const auto p = in_precision(base, single);
        for (const auto& name : loss_names()) {
          const auto& loss = loss_by_name(name);
          if (loss.pixelwise.window_form.empty()) continue;
          const double d = worst(run(p, in, loss, true), run(p, in, loss, false));
          EXPECT_LE(d, single ? 1e-5 : 1e-12)
              << name << ", " << modes << " mode(s), masking " << static_cast<int>(masking)
              << (single ? ", float" : ", double");
        }
      }
    }
}

// The check above can fail: a loss evaluated with another loss's form is caught.
TEST(WindowLoss, TheComparisonDetectsAWrongLoss) {
  torch::manual_seed(6);
  const auto p = make_problem(1, 2, false, 7, 8);
  const auto in = inputs_for(p, Masking::shared);
  auto wrong = loss_by_name("amplitude");
  wrong.pixelwise.window_form = "poisson";
  EXPECT_GT(worst(run(p, in, wrong, true), run(p, in, loss_by_name("amplitude"), false)), 1e-3);
}

// Analytic gradients against central differences, in double, through the op
// alone (windows and probe), with a mask and 2 modes, for every form.
TEST(WindowLoss, GradcheckInDouble) {
  torch::manual_seed(7);
  const int64_t B = 3, M = 2, h = 6, w = 5;
  auto windows = torch::polar(1 + 0.2 * torch::rand({B, 1, h, w}, torch::kFloat64),
                              torch::randn({B, 1, h, w}, torch::kFloat64))
                     .requires_grad_();
  auto probe = torch::randn({M, h, w}, torch::kComplexDouble).requires_grad_();
  const auto measured = torch::rand({B, h, w}, torch::kFloat64) * 2 + 0.1;
  const auto valid = torch::rand({h, w}) > 0.2;
  for (const auto& form : ops::window_loss_forms()) {
    auto r = testing::gradcheck(
        [&](const std::vector<torch::Tensor>& x) {
          return ops::window_far_field_loss(x[0], x[1], measured, valid, {}, form, 0.7);
        },
        {windows, probe});
    EXPECT_TRUE(r.passed) << form << ": " << r.message;
  }
}

// Every element is written by one call and every sum runs in a fixed order.
TEST(WindowLoss, SameBitsForAnyThreadCount) {
  torch::manual_seed(8);
  const auto p = in_precision(make_problem(1, 2, false, 40, 16), true);
  const auto in = inputs_for(p, Masking::per_frame_rows);
  const auto& loss = loss_by_name("amplitude");
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const auto one = run(p, in, loss, true);
  at::set_num_threads(2);
  const auto two = run(p, in, loss, true);
  at::set_num_threads(threads);
  EXPECT_EQ(one.loss, two.loss);
  EXPECT_TRUE(torch::equal(one.object, two.object));
  EXPECT_TRUE(torch::equal(one.probe, two.probe));
  EXPECT_TRUE(torch::equal(one.positions, two.positions));
}

TEST(WindowLoss, BadInputsAreNamed) {
  const int64_t B = 2, h = 4, w = 4;
  const auto windows = torch::ones({B, 1, h, w}, torch::kComplexFloat);
  const auto probe = torch::ones({1, h, w}, torch::kComplexFloat);
  const auto measured = torch::ones({B, h, w});
  auto call = [&](const torch::Tensor& win, const torch::Tensor& pr, const torch::Tensor& meas,
                  const torch::Tensor& valid, const torch::Tensor& rows, const std::string& form) {
    return error_of([&] { ops::window_far_field_loss(win, pr, meas, valid, rows, form); });
  };
  EXPECT_NE(call(windows, probe, measured, {}, {}, "huber").find("no per-pixel form of the loss 'huber'"),
            std::string::npos);
  EXPECT_NE(call(torch::ones({B, 2, h, w}, torch::kComplexFloat), probe, measured, {}, {}, "amplitude")
                .find("single-slice windows"),
            std::string::npos);
  EXPECT_NE(call(windows, probe.to(torch::kComplexDouble), measured, {}, {}, "amplitude").find("do not match the probe"),
            std::string::npos);
  EXPECT_NE(call(windows, probe, measured.to(torch::kFloat64), {}, {}, "amplitude").find("same precision"),
            std::string::npos);
  EXPECT_NE(call(windows, probe, torch::ones({B, h, w + 1}), {}, {}, "amplitude").find("measured intensities have shape"),
            std::string::npos);
  EXPECT_NE(call(windows, probe, measured, torch::ones({h, w + 1}, torch::kBool), {}, "amplitude").find("mask has shape"),
            std::string::npos);
  EXPECT_NE(call(windows, probe, measured, {}, torch::tensor({0, 5}), "amplitude").find("pattern row 5 is outside"),
            std::string::npos);
}

// ----------------------------------------------------------------------------
// CUDA against CPU (scripts/gpu/check_all.sh collects the printed lines).


// The whole GPU path as the engine runs it (PtychoModel::data_loss on CUDA:
// extract_patches, the window op, cuFFT, the overlap-add of the autograd)
// against the CPU fused operator: every loss, 2 modes, a shared mask and a
// per-frame mask with rows, both precisions.
TEST(WindowLoss, CudaMatchesTheCpuFusedOperator) {
  REQUIRE_CUDA();
  torch::manual_seed(9);
  for (Masking masking : {Masking::shared, Masking::per_frame_rows}) {
    const auto base = make_problem(1, 2, false, 40, 16);
    const auto in = inputs_for(base, masking);
    for (bool single : {false, true}) {
      const auto p = in_precision(base, single);
      for (const auto& name : ops::window_loss_forms()) {
        const auto& loss = loss_by_name(name);
        const torch::Device cuda(torch::kCUDA);
        PtychoModel model(p.object.to(cuda), p.probe.to(cuda), torch::Tensor());
        auto positions = p.positions.to(cuda).requires_grad_();
        auto to = [&](const torch::Tensor& t) { return t.defined() ? t.to(cuda) : t; };
        const auto measured = in.rows.defined() ? in.measured.to(p.measured.scalar_type()) : p.measured;
        auto value = model->data_loss(positions, to(measured), to(in.valid), loss, to(in.rows), kWeight);
        value.backward();
        const Result gpu{value.item<double>(), torch::view_as_complex(model->object_real.grad()).cpu(),
                         torch::view_as_complex(model->probe_real.grad()).cpu(), positions.grad().cpu()};
        const double d = worst(gpu, run(p, in, loss, false));
        std::printf("CUDA vs CPU max relative error: window_far_field_loss/%s %s mask %d %.3e\n", name.c_str(),
                    single ? "float" : "double", static_cast<int>(masking), d);
        EXPECT_LE(d, single ? 1e-4 : 1e-10) << name;
      }
    }
  }
}

// Run to run on the GPU: no atomics in the op (the overlap-add of the object
// gradient uses atomicAdd, so only the op's own outputs are compared).
TEST(WindowLoss, CudaGivesTheSameBitsRunToRun) {
  REQUIRE_CUDA();
  torch::manual_seed(10);
  const torch::Device cuda(torch::kCUDA);
  const auto windows = torch::randn({64, 1, 32, 32}, torch::kComplexFloat).to(cuda);
  const auto probe = torch::randn({2, 32, 32}, torch::kComplexFloat).to(cuda);
  const auto measured = (torch::rand({64, 32, 32}) * 3).to(cuda);
  auto a = ops::window_far_field_loss_with_gradients(windows, probe, measured, {}, {}, "poisson", 0.5, true);
  auto b = ops::window_far_field_loss_with_gradients(windows, probe, measured, {}, {}, "poisson", 0.5, true);
  EXPECT_TRUE(torch::equal(std::get<0>(a), std::get<0>(b)));
  EXPECT_TRUE(torch::equal(std::get<1>(a), std::get<1>(b)));
  EXPECT_TRUE(torch::equal(std::get<2>(a), std::get<2>(b)));
}

}  // namespace
}  // namespace tessera
