// Losses and the forward model: values, masks, and gradients against finite
// differences in double precision.
#include <gtest/gtest.h>

#include "models/losses.h"
#include "models/probe_init.h"
#include "models/propagation.h"
#include "models/ptycho_model.h"
#include "src/error.h"
#include "tests/gradcheck.h"

using namespace tessera;

namespace {

torch::Tensor positive(std::vector<int64_t> shape, double scale = 10) {
  return torch::rand(shape, torch::kFloat64) * scale + 0.5;
}

}  // namespace

TEST(Losses, KnownValues) {
  auto pred = torch::full({1, 2, 2}, 4.0, torch::kFloat64);
  auto meas = torch::full({1, 2, 2}, 1.0, torch::kFloat64);
  auto valid = torch::ones({2, 2}, torch::kBool);
  EXPECT_NEAR(loss_by_name("amplitude").function(pred, meas, valid).item<double>(), 4 * 1.0, 1e-6);
  EXPECT_NEAR(loss_by_name("intensity").function(pred, meas, valid).item<double>(), 4 * 9.0, 1e-9);
  EXPECT_NEAR(loss_by_name("poisson").function(pred, meas, valid).item<double>(), 4 * (4 - std::log(4.0)), 1e-6);
}

TEST(Losses, MaskedPixelsAreExcluded) {
  torch::manual_seed(1);
  auto pred = positive({3, 4, 4});
  auto meas = positive({3, 4, 4});
  auto valid = torch::ones({4, 4}, torch::kBool);
  valid[1][2] = false;
  for (const auto& name : loss_names()) {
    const auto& loss = loss_by_name(name).function;
    auto changed = meas.clone();
    changed.select(1, 1).select(1, 2).fill_(1e6);  // only the masked pixel changes
    EXPECT_DOUBLE_EQ(loss(pred, meas, valid).item<double>(), loss(pred, changed, valid).item<double>()) << name;
    EXPECT_NE(loss(pred, meas, valid).item<double>(),
              loss(pred, changed, torch::ones({4, 4}, torch::kBool)).item<double>()) << name;
  }
}

TEST(Losses, UnknownNameListsTheKnownOnes) {
  try {
    loss_by_name("l1");
    FAIL() << "expected SettingsError";
  } catch (const SettingsError& e) {
    EXPECT_NE(std::string(e.what()).find("amplitude"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("poisson"), std::string::npos);
  }
}

TEST(Losses, GradientsMatchFiniteDifferences) {
  torch::manual_seed(2);
  auto meas = positive({2, 5, 5});
  auto valid = torch::rand({5, 5}) > 0.2;
  for (const auto& name : loss_names()) {
    auto pred = positive({2, 5, 5}).requires_grad_();
    const auto& loss = loss_by_name(name).function;
    auto r = tessera::testing::gradcheck([&](const std::vector<torch::Tensor>& in) { return loss(in[0], meas, valid); }, {pred});
    EXPECT_TRUE(r.passed) << name << ": " << r.message;
  }
}

// The per-pixel form (used by the fused far-field loss) is the same loss:
// value and dl/dI agree with the tensor form and its autograd gradient.
TEST(Losses, PixelFormMatchesTensorForm) {
  torch::manual_seed(5);
  const int64_t n = 2 * 5 * 5;
  auto meas = positive({2, 5, 5});
  auto valid = torch::rand({2, 5, 5}) > 0.3;
  for (const auto& name : loss_names()) {
    const auto& loss = loss_by_name(name);
    ASSERT_TRUE(loss.pixelwise.available()) << name;
    auto pred = positive({2, 5, 5}).requires_grad_();
    auto reference = loss.function(pred, meas, valid);
    auto grad = torch::autograd::grad({reference}, {pred})[0];
    for (bool masked : {true, false}) {
      auto slope = torch::empty({n}, torch::kFloat64);
      auto keep = valid.to(torch::kFloat64).contiguous();
      const double value = loss.pixelwise.f64(pred.detach().contiguous().data_ptr<double>(), meas.data_ptr<double>(),
                                              masked ? keep.data_ptr<double>() : nullptr,
                                              slope.data_ptr<double>(), n);
      auto expected = masked ? reference : loss.function(pred, meas, {});
      auto expected_grad = masked ? grad : torch::autograd::grad({expected}, {pred})[0];
      EXPECT_NEAR(value, expected.item<double>(), 1e-12 * std::abs(expected.item<double>())) << name;
      EXPECT_LE((slope.view({2, 5, 5}) - expected_grad).abs().max().item<double>(),
                1e-12 * expected_grad.abs().max().item<double>()) << name << (masked ? " (masked)" : "");
    }
    // Float agrees with double.
    auto pred_f = pred.detach().to(torch::kFloat32).contiguous();
    auto meas_f = meas.to(torch::kFloat32).contiguous();
    auto slope_f = torch::empty({n}, torch::kFloat32);
    const double value_f = loss.pixelwise.f32(pred_f.data_ptr<float>(), meas_f.data_ptr<float>(), nullptr,
                                              slope_f.data_ptr<float>(), n);
    const double value_d = loss.function(pred.detach(), meas, {}).item<double>();
    EXPECT_NEAR(value_f, value_d, 1e-5 * (std::abs(value_d) + n)) << name;
  }
}

// The far-field form: intensities summed over modes, the loss, and the
// residual 2 dl/dI Psi, against the tensor form and autograd.
TEST(Losses, FarFieldFormMatchesTensorForm) {
  torch::manual_seed(6);
  const int64_t M = 2, n = 3 * 300;  // several runs of pixels, the last one partial
  auto meas = positive({n});
  auto valid = torch::rand({n}) > 0.3;
  auto keep = valid.to(torch::kFloat64).contiguous();
  for (const auto& name : loss_names()) {
    const auto& loss = loss_by_name(name);
    auto psi = torch::randn({M, n}, torch::kComplexDouble);
    auto intensity = torch::view_as_real(psi).pow(2).sum({-1, 0}).requires_grad_();
    for (bool masked : {true, false}) {
      auto reference = loss.function(intensity, meas, masked ? valid : torch::Tensor());
      auto slope = torch::autograd::grad({reference}, {intensity})[0];
      auto residual = psi.clone();
      const double value = loss.pixelwise.far_f64(reinterpret_cast<double*>(residual.data_ptr()), M,
                                                  meas.data_ptr<double>(), masked ? keep.data_ptr<double>() : nullptr,
                                                  n, true);
      EXPECT_NEAR(value, reference.item<double>(), 1e-12 * std::abs(reference.item<double>())) << name;
      auto expected = psi * (2 * slope).unsqueeze(0);
      EXPECT_LE((residual - expected).abs().max().item<double>(), 1e-12 * expected.abs().max().item<double>())
          << name << (masked ? " (masked)" : "");
      auto untouched = psi.clone();
      loss.pixelwise.far_f64(reinterpret_cast<double*>(untouched.data_ptr()), M, meas.data_ptr<double>(), nullptr, n,
                             false);
      EXPECT_TRUE(torch::equal(untouched, psi)) << name << ": without residual the far field is left as it is";
    }
  }
}

TEST(ForwardModel, ParsevalAndModes) {
  torch::manual_seed(3);
  auto object = torch::polar(torch::ones({1, 24, 24}, torch::kFloat64), torch::randn({1, 24, 24}, torch::kFloat64));
  auto probe = torch::randn({2, 8, 8}, torch::kComplexDouble);
  PtychoModel model(object, probe);
  // Integer positions: interpolating random phases would lower |O| below 1.
  auto pos = torch::tensor({{3.0, 4.0}, {10.0, 7.0}}, torch::kFloat64);
  auto I = model->forward(pos);
  ASSERT_EQ(I.sizes(), torch::IntArrayRef({2, 8, 8}));
  // |O| = 1 everywhere, so the total intensity is the probe's total power.
  const double power = torch::view_as_real(probe).pow(2).sum().item<double>();
  EXPECT_NEAR(I[0].sum().item<double>(), power, 1e-9 * power);
  // Modes add incoherently.
  auto I0 = PtychoModel(object, probe.slice(0, 0, 1))->forward(pos);
  auto I1 = PtychoModel(object, probe.slice(0, 1, 2))->forward(pos);
  EXPECT_TRUE(torch::allclose(I, I0 + I1, 1e-12, 1e-12));
}

TEST(ForwardModel, LossGradientsThroughTheModel) {
  torch::manual_seed(4);
  for (const auto& name : loss_names()) {
    auto object = torch::polar(torch::ones({1, 14, 14}, torch::kFloat64), 0.3 * torch::randn({1, 14, 14}, torch::kFloat64));
    auto probe = torch::randn({1, 6, 6}, torch::kComplexDouble);
    auto pos = torch::tensor({{1.3, 2.6}, {4.2, 3.7}, {6.6, 6.1}}, torch::kFloat64);
    auto meas = positive({3, 6, 6}, 3);
    auto valid = torch::ones({6, 6}, torch::kBool);
    const auto& loss = loss_by_name(name).function;
    auto f = [&](const std::vector<torch::Tensor>& in) {
      PtychoModel m(torch::view_as_complex(in[0]), torch::view_as_complex(in[1]));
      // Rebuild from the inputs so that autograd sees them.
      m->object_real = in[0];
      m->probe_real = in[1];
      return loss(m->forward(in[2]), meas, valid);
    };
    auto o = torch::view_as_real(object).clone().requires_grad_();
    auto p = torch::view_as_real(probe).clone().requires_grad_();
    auto x = pos.clone().requires_grad_();
    tessera::testing::GradcheckOptions opt;
    opt.rtol = 1e-4;
    opt.atol = 1e-5;
    auto r = tessera::testing::gradcheck(f, {o, p, x}, opt);
    EXPECT_TRUE(r.passed) << name << ": " << r.message;
  }
}

TEST(ProbeInit, FromMeanPatternHasTheMeasuredPower) {
  auto mean = torch::zeros({16, 16}, torch::kFloat32);
  mean.slice(0, 0, 3).slice(1, 0, 3) = 100;  // bright low frequencies, FFT order
  auto probe = probe_from_mean_pattern(mean, 3);
  ASSERT_EQ(probe.sizes(), torch::IntArrayRef({3, 16, 16}));
  const double total = torch::view_as_real(probe).pow(2).sum().item<double>();
  EXPECT_NEAR(total, mean.sum().item<double>(), 1e-3 * total);
  // Modes are orthogonal.
  auto flat = probe.reshape({3, -1}).to(torch::kComplexDouble);
  auto overlap = torch::abs(torch::matmul(flat.conj(), flat.transpose(0, 1)));
  EXPECT_LT((overlap - torch::diag(torch::diagonal(overlap))).abs().max().item<double>(), 1e-6 * total);
  EXPECT_THROW(probe_from_mean_pattern(torch::zeros({8, 8}), 1), DataError);
}
