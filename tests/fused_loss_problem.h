#pragma once
// A small random ptychography problem and one backward through the model's
// data loss, fused or through autograd: shared by the fused-loss tests and
// the FFT-library tests.
#include <torch/torch.h>

#include <string>

#include "models/losses.h"
#include "models/propagation.h"
#include "models/ptycho_model.h"

namespace tessera::testing {

struct Problem {
  torch::Tensor object, probe, positions, measured, valid, transfer;
};

inline Problem make_problem(int64_t slices, int64_t modes, bool per_pattern_mask, int64_t B = 5, int64_t h = 8) {
  Problem p;
  const int64_t w = h, side = 3 * h;
  p.object = torch::polar(1 + 0.2 * torch::rand({slices, side, side}, torch::kFloat64),
                          0.5 * torch::randn({slices, side, side}, torch::kFloat64));
  p.probe = torch::randn({modes, h, w}, torch::kComplexDouble);
  // Fractional parts away from 0 and 1: the bilinear kink is not under test.
  p.positions = (torch::rand({B, 2}, torch::kFloat64) * (side - h - 4)).floor() + 1.2 +
                0.6 * torch::rand({B, 2}, torch::kFloat64);
  p.measured = torch::rand({B, h, w}, torch::kFloat64) * 4 + 0.1;
  p.valid = per_pattern_mask ? torch::rand({B, h, w}) > 0.25 : torch::rand({h, w}) > 0.25;
  if (slices > 1) p.transfer = fresnel_transfer_function(h, w, 1e-8, 1e-8, 1e-10, 2e-7, torch::kComplexDouble);
  return p;
}

struct Gradients {
  double loss = 0;
  torch::Tensor object, probe, positions;
};

constexpr double kScale = 0.37;

// One backward of scale * loss (the engine's scale is 1 / batch size).
// With `rows`, the fused loss reads pattern b from frame rows[b] of `stack`
// (and of `stack_valid`).
inline Gradients run(const Problem& p, const LossInfo& loss, bool fused, bool refine_probe = true,
              const torch::Tensor& rows = {}, const torch::Tensor& stack = {}, const torch::Tensor& stack_valid = {}) {
  PtychoModel model(p.object, p.probe, p.transfer);
  model->probe_real.requires_grad_(refine_probe);
  auto positions = p.positions.clone().requires_grad_();
  auto value = rows.defined() ? model->data_loss(positions, stack, stack_valid, loss, rows)
               : fused        ? model->data_loss(positions, p.measured, p.valid, loss)
                              : loss.function(model->forward(positions), p.measured, p.valid);
  (value * kScale).backward();
  Gradients g;
  g.loss = value.item<double>();
  g.object = model->object_real.grad();
  g.probe = model->probe_real.grad();
  g.positions = positions.grad();
  return g;
}

// max |a - b| relative to max |b|.
inline double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

}  // namespace tessera::testing
