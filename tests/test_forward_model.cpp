// The fused data loss (models/far_field_loss.h, PtychoModel::data_loss)
// against the unfused autograd path loss.function(forward(positions)), in
// double precision: same value and same gradients with respect to object,
// probe and positions, for every registered loss.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "models/far_field_loss.h"
#include "models/losses.h"
#include "models/propagation.h"
#include "models/ptycho_model.h"
#include "src/error.h"
#include "src/memory_model.h"
#include "tests/fused_loss_problem.h"

using namespace tessera;

using namespace tessera::testing;

namespace {

void expect_same(const Gradients& fused, const Gradients& reference, const std::string& what) {
  EXPECT_LE(std::abs(fused.loss - reference.loss), 1e-12 * std::abs(reference.loss)) << what;
  ASSERT_TRUE(fused.object.defined()) << what;
  EXPECT_LE(relative_difference(fused.object, reference.object), 1e-12) << what << ": object gradient";
  EXPECT_LE(relative_difference(fused.positions, reference.positions), 1e-12) << what << ": positions gradient";
  ASSERT_EQ(fused.probe.defined(), reference.probe.defined()) << what;
  if (reference.probe.defined()) {
    EXPECT_LE(relative_difference(fused.probe, reference.probe), 1e-12) << what << ": probe gradient";
  }
}

}  // namespace

TEST(FusedDataLoss, MatchesAutogradForEveryLossWithMaskAndTwoModes) {
  torch::manual_seed(11);
  const auto p = make_problem(1, 2, false);
  for (const auto& name : loss_names()) {
    const auto& loss = loss_by_name(name);
    ASSERT_TRUE(loss.pixelwise.available()) << name;
    expect_same(run(p, loss, true), run(p, loss, false), name);
  }
}

TEST(FusedDataLoss, PerPatternMaskAndFixedProbe) {
  torch::manual_seed(12);
  const auto p = make_problem(1, 2, true);
  for (const auto& name : loss_names()) {
    const auto& loss = loss_by_name(name);
    const auto fused = run(p, loss, true, false), reference = run(p, loss, false, false);
    EXPECT_FALSE(fused.probe.defined()) << name;
    expect_same(fused, reference, name + " (per-pattern mask, probe fixed)");
  }
}

// 40 patterns of 32 x 32 with 2 modes go through the fused loss in 10
// blocks: the per-block probe gradients and losses must add up exactly.
TEST(FusedDataLoss, ManyBlocks) {
  torch::manual_seed(16);
  const auto p = make_problem(1, 2, false, 40, 32);
  ASSERT_GE(40 / fused_loss_block(2, 32, 32, torch::kComplexDouble), 4) << "the test needs several blocks";
  for (const auto& name : loss_names()) {
    const auto& loss = loss_by_name(name);
    expect_same(run(p, loss, true), run(p, loss, false), name + " (40 patterns in blocks)");
  }
}

// A probe of 3 modes of 64 x 64 is 24576 reals: the sum of the per-block
// probe gradients is shared out between threads in pieces of 16384 reals,
// here two. The pieces must join into autograd's gradient, and
// give the same bits for any thread count.
TEST(FusedDataLoss, ProbeGradientSummedInPieces) {
  torch::manual_seed(29);
  const auto p = make_problem(1, 3, false, 12, 64);
  ASSERT_GE(12 / fused_loss_block(3, 64, 64, torch::kComplexDouble), 3) << "the test needs several blocks";
  const auto& loss = loss_by_name("amplitude");
  const auto reference = run(p, loss, false);
  const int saved = at::get_num_threads();
  std::vector<Gradients> results;
  for (int threads : {1, 2, 3}) {
    at::set_num_threads(threads);
    results.push_back(run(p, loss, true));
  }
  at::set_num_threads(saved);
  expect_same(results[0], reference, "3 modes of 64 x 64");
  for (size_t k = 1; k < results.size(); ++k) EXPECT_TRUE(torch::equal(results[k].probe, results[0].probe)) << k;
}

// The window gradients and the per-block probe gradients are arrays kept
// from call to call (src/reusable_buffer.h): a call after a larger or a
// smaller one, or after one that refined the positions, gives the same bits.
TEST(FusedDataLoss, KeptBuffersGiveTheSameResultCallAfterCall) {
  torch::manual_seed(23);
  const auto big = make_problem(1, 2, false, 40, 32), small = make_problem(1, 2, false, 3, 32);
  const auto& loss = loss_by_name("amplitude");
  auto fixed_positions = [&](const Problem& p) {
    PtychoModel model(p.object, p.probe, p.transfer);
    auto value = model->data_loss(p.positions, p.measured, p.valid, loss);
    (value * kScale).backward();
    return std::make_tuple(value.item<double>(), model->object_real.grad().clone(), model->probe_real.grad().clone());
  };
  const auto first = fixed_positions(big);
  fixed_positions(small);
  run(big, loss, true);  // positions refined: its window gradients are not the kept ones
  const auto again = fixed_positions(big);
  EXPECT_EQ(std::get<0>(again), std::get<0>(first));
  EXPECT_TRUE(torch::equal(std::get<1>(again), std::get<1>(first)));
  EXPECT_TRUE(torch::equal(std::get<2>(again), std::get<2>(first)));
}

// The memory model (src/memory_model.h) sizes the fused loss's arrays by its blocks.
TEST(FusedDataLoss, MemoryModelKnowsItsBlocks) {
  for (int64_t modes : {1, 2, 3})
    for (int64_t side : {16, 64, 100, 128, 256})
      for (auto type : {torch::kComplexFloat, torch::kComplexDouble})
        EXPECT_EQ(fused_loss_block_patterns(modes, side, side, static_cast<int64_t>(c10::elementSize(type))),
                  fused_loss_block(modes, side, side, type))
            << modes << " modes, " << side << "², " << type;
}

// Threads claim blocks and bands as they come free: the loss and every
// gradient must still be the same, bit for bit, for any thread count.
TEST(FusedDataLoss, SameResultForAnyThreadCount) {
  torch::manual_seed(19);
  const auto p = make_problem(1, 2, false, 40, 32);
  const int saved = at::get_num_threads();
  std::vector<Gradients> results;
  for (int threads : {1, 3, 2}) {
    at::set_num_threads(threads);
    results.push_back(run(p, loss_by_name("poisson"), true));
  }
  at::set_num_threads(saved);
  for (size_t k = 1; k < results.size(); ++k) {
    EXPECT_EQ(results[k].loss, results[0].loss);
    EXPECT_TRUE(torch::equal(results[k].object, results[0].object));
    EXPECT_TRUE(torch::equal(results[k].probe, results[0].probe));
    EXPECT_TRUE(torch::equal(results[k].positions, results[0].positions));
  }
}

// Patterns read in place from a larger stack of frames (and of per-frame
// masks) by row index: the same as handing over the copied batch.
TEST(FusedDataLoss, FramesReadByRow) {
  torch::manual_seed(17);
  for (int64_t slices : {1, 2}) {
    const auto p = make_problem(slices, 1, true);
    const int64_t N = 9;
    auto rows = torch::tensor(std::vector<int64_t>{7, 2, 5, 0, 3});
    auto stack = torch::rand({N, 8, 8}, torch::kFloat64);
    auto stack_valid = torch::rand({N, 8, 8}) > 0.5;
    stack.index_copy_(0, rows, p.measured);
    stack_valid.index_copy_(0, rows, p.valid);
    for (const auto& name : loss_names()) {
      const auto& loss = loss_by_name(name);
      expect_same(run(p, loss, true, true, rows, stack, stack_valid), run(p, loss, false),
                  name + " (frames by row, " + std::to_string(slices) + " slices)");
    }
    LossInfo plain = loss_by_name("intensity");
    plain.pixelwise = {};
    expect_same(run(p, plain, true, true, rows, stack, stack_valid), run(p, plain, false), "autograd path by row");
  }
  const auto p = make_problem(1, 1, false);
  PtychoModel model(p.object, p.probe);
  EXPECT_THROW(model->data_loss(p.positions, p.measured, p.valid, loss_by_name("amplitude"),
                                torch::tensor(std::vector<int64_t>{0, 1, 2, 3, 5})),
               Error);  // row 5 of 5 frames
}

// The engine hands the fused loss its 1 / batch size as a weight, applied
// to the gradients inside the operator: the same as scaling the loss.
TEST(FusedDataLoss, WeightScalesValueAndGradients) {
  torch::manual_seed(18);
  for (int64_t slices : {1, 2}) {
    const auto p = make_problem(slices, 2, false);
    for (const auto& name : loss_names()) {
      const auto& loss = loss_by_name(name);
      PtychoModel model(p.object, p.probe, p.transfer);
      model->probe_real.requires_grad_(true);
      auto positions = p.positions.clone().requires_grad_();
      auto value = model->data_loss(positions, p.measured, p.valid, loss, {}, kScale);
      value.backward();
      Gradients weighted{value.item<double>() / kScale, model->object_real.grad(), model->probe_real.grad(),
                         positions.grad()};
      expect_same(weighted, run(p, loss, false), name + " (weighted, " + std::to_string(slices) + " slices)");
    }
  }
}

TEST(FusedDataLoss, MultisliceExitWaves) {
  torch::manual_seed(13);
  const auto p = make_problem(2, 2, false);
  for (const auto& name : loss_names()) {
    const auto& loss = loss_by_name(name);
    expect_same(run(p, loss, true), run(p, loss, false), name + " (2 slices)");
  }
}

TEST(FusedDataLoss, LossWithoutPixelFormUsesAutograd) {
  torch::manual_seed(14);
  auto p = make_problem(1, 1, false);
  LossInfo plain = loss_by_name("intensity");
  plain.pixelwise = {};
  expect_same(run(p, plain, true), run(p, loss_by_name("intensity"), false), "no per-pixel form");
}

TEST(FusedDataLoss, FloatAgreesWithDouble) {
  torch::manual_seed(15);
  auto p = make_problem(1, 2, false);
  const auto& loss = loss_by_name("amplitude");
  const auto reference = run(p, loss, true);
  Problem f = p;
  f.object = p.object.to(torch::kComplexFloat);
  f.probe = p.probe.to(torch::kComplexFloat);
  f.positions = p.positions.to(torch::kFloat32);
  f.measured = p.measured.to(torch::kFloat32);
  const auto single = run(f, loss, true);
  EXPECT_NEAR(single.loss, reference.loss, 1e-5 * reference.loss);
  EXPECT_LE(relative_difference(single.object.to(torch::kFloat64), reference.object), 1e-4);
  EXPECT_LE(relative_difference(single.probe.to(torch::kFloat64), reference.probe), 1e-4);
}

TEST(FusedDataLoss, BadShapesNameTheProblem) {
  auto psi = torch::randn({3, 1, 8, 8}, torch::kComplexDouble);
  const auto& loss = loss_by_name("amplitude").pixelwise;
  try {
    far_field_loss(psi, torch::rand({3, 8, 9}, torch::kFloat64), {}, loss);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("measured intensities have shape"), std::string::npos) << e.what();
  }
  EXPECT_THROW(far_field_loss(psi, torch::rand({3, 8, 8}, torch::kFloat32), {}, loss), Error);
  EXPECT_THROW(far_field_loss(psi, torch::rand({3, 8, 8}, torch::kFloat64), torch::ones({4, 4}, torch::kBool), loss),
               Error);
  const auto object = torch::randn({1, 24, 24}, torch::kComplexDouble);
  const auto positions = torch::full({3, 2}, 2.5, torch::kFloat64);
  const auto probe = torch::randn({1, 8, 8}, torch::kComplexDouble);
  const auto measured = torch::rand({3, 8, 8}, torch::kFloat64);
  EXPECT_NO_THROW(object_far_field_loss(object, positions, probe, measured, {}, loss));
  EXPECT_THROW(object_far_field_loss(object, positions, probe.to(torch::kComplexFloat), measured, {}, loss), Error);
  EXPECT_THROW(object_far_field_loss(torch::randn({2, 24, 24}, torch::kComplexDouble), positions, probe, measured, {},
                                     loss),
               Error);  // two slices: far_field_loss on the exit waves instead
  EXPECT_THROW(object_far_field_loss(object, torch::full({3, 2}, 20.0, torch::kFloat64), probe, measured, {}, loss),
               DataError);  // windows outside the object
}

// A diverging run's loss, summed in double, can pass float's range while each
// pattern's stays inside it: the float result is then infinite (which the
// optimiser loop reports as divergence), not a conversion error.
TEST(FusedDataLoss, ALossBeyondFloatRangeIsInfiniteNotAnError) {
  const auto& loss = loss_by_name("amplitude").pixelwise;
  const auto object = torch::ones({1, 8, 8}, torch::kComplexFloat);
  const auto positions = torch::zeros({2, 2}, torch::kFloat32);
  const auto measured = torch::zeros({2, 4, 4}, torch::kFloat32);
  auto loss_for = [&](double amplitude) {
    const auto probe = torch::full({1, 4, 4}, c10::complex<float>(static_cast<float>(amplitude), 0));
    return object_far_field_loss(object, positions, probe, measured, {}, loss, {}, 1.0).item<double>();
  };
  const double unit = loss_for(1);
  ASSERT_GT(unit, 0);
  // Each pattern 2e38 (float's largest is 3.4e38), the two together 4e38.
  const double amplitude = std::sqrt(4e38 / unit);
  double value = 0;
  ASSERT_NO_THROW(value = loss_for(amplitude));
  EXPECT_TRUE(std::isinf(value)) << value;
}
