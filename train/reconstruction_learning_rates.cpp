// Learning rates derived from the data: illumination and loss curvature.
#include <cmath>

#include "train/optimizers.h"
#include "train/reconstruction.h"
#include "train/tile_state.h"

namespace tessera {

std::map<int, torch::Tensor> Reconstruction::illumination() const {
  torch::NoGradGuard no_grad;
  std::map<int, torch::Tensor> illum;
  for (auto& wk : tile_states_) {
    auto p = wk->model->probe();
    auto power = torch::view_as_real(p).pow(2).sum(std::vector<int64_t>{0, -1}).unsqueeze(0).unsqueeze(0);  // (1,1,h,w)
    const int64_t n = wk->positions.size(0);
    const auto& e = wk->tile.extent;
    auto patches = power.expand({n, 1, p.size(1), p.size(2)}).contiguous();
    illum[wk->tile.index] = n ? ops::overlap_add(patches, wk->positions.detach(), e.h, e.w)
                              : torch::zeros({1, e.h, e.w}, power.options());
  }
  comm::HaloExchange ex(*tiling_, local_tiles_, rank_of_tile_, comm_);
  ex.reduce(illum);
  return illum;
}

void Reconstruction::derive_learning_rates() {
  const auto& s = settings_;
  const double base = optimizer_->default_rate * s.rate_scale;
  // Same probe on every rank, so these are identical everywhere.
  auto probe = tile_states_.empty() ? torch::Tensor() : tile_states_.front()->model->probe().detach();
  double probe_max = 0;
  if (probe.defined()) probe_max = torch::abs(probe).max().item<double>();
  probe_max = reduce_scalar(probe_max) / (comm_ ? comm_->size() : 1);
  switch (optimizer_->scaling) {
    case StepScaling::ParameterUnits:
      // Steps are in parameter units: a fraction of the object's magnitude (1)
      // and of the probe's peak amplitude.
      object_rate_ = base;
      probe_rate_ = base * probe_max;
      break;
    case StepScaling::InverseCurvature: {
      // Step = 1 / (Gauss-Newton curvature). On the object that is
      // curvature * illumination / N (loss per pattern), largest where the
      // probe windows overlap most; on the probe, curvature * |O|^2 ~ curvature.
      torch::NoGradGuard no_grad;
      auto illum = illumination();
      double meas_max = 0;
      for (auto& wk : tile_states_)
        if (wk->positions.size(0)) meas_max = std::max(meas_max, wk->frames.max().item<double>());
      double illum_max = 0;
      for (auto& wk : tile_states_) {
        const auto& o = wk->tile.owned.relative_to(wk->tile.extent);
        auto region = illum[wk->tile.index].slice(1, o.y0, o.y1()).slice(2, o.x0, o.x1());
        if (region.numel()) illum_max = std::max(illum_max, region.max().item<double>());
      }
      illum_max = reduce_max(illum_max);
      meas_max = reduce_max(meas_max);
      const double curvature = loss_->curvature * (loss_->curvature_scales_with_intensity ? meas_max : 1.0);
      const double N = static_cast<double>(problem_.scan.num_positions());
      object_rate_ = base * N / (curvature * std::max(illum_max, 1e-30));
      probe_rate_ = base / curvature;
      break;
    }
    case StepScaling::LineSearch:
      object_rate_ = probe_rate_ = base;
      break;
  }
  if (s.object_rate > 0) object_rate_ = s.object_rate;
  if (s.probe_rate > 0) probe_rate_ = s.probe_rate;
}

namespace {

// Sum of squares of a real array, in double, in element order.
double sum_of_squares(const torch::Tensor& t) {
  const auto c = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const double* p = c.data_ptr<double>();
  double s = 0;
  for (int64_t i = 0; i < c.numel(); ++i) s += p[i] * p[i];
  return s;
}

// x to 8 significant bits: sums over different tilings differ in their last
// bits, the rounded value does not (unless x lies within ~1e-15 of a
// rounding boundary), so K tiles keep stepping as one does.
double round_to_8_bits(double x) {
  int e = 0;
  const double m = std::frexp(x, &e);
  return std::ldexp(std::round(m * 256.0) / 256.0, e);
}

}  // namespace

// Adam divides each step by the RMS of recent gradients, so its steps stay
// near the learning rate however small the gradient gets: once the fit
// reaches the noise it keeps walking through it. On independent simulations
// at 1e4 photons the image was best after 10-20 iterations and 0.004-0.008
// worse (correlation with the truth) after 100 (scripts/sim/baseline_tables.md).
// An epsilon of the order of the parameter's first gradient RMS leaves the
// first steps Adam's and makes later ones shrink with the gradient, as
// gradient descent's do: with a scale of 1 every one of the 30 simulated
// cases ended better. Not the default: on tessera's own noise-free and
// 32 x 32 test scans it slows the last stages (phase-only, position
// correction), and at 1e3 photons it helps some probes and hurts others.
// Set once, at a parameter's first step, from the whole object
// (every tile and rank, owned pixels only) or the probe, and kept in the
// optimiser's options, so that a resumed run keeps it.
void Reconstruction::set_adam_epsilons(bool refine_probe) {
  const double scale = settings_.adam_epsilon_scale;
  // The settings allow a scale with Adam only (set_up_local_tiles).
  if (scale <= 0 || tile_states_.empty()) return;
  auto fresh = [](torch::optim::Optimizer& opt) { return opt.state().empty(); };
  if (fresh(*tile_states_.front()->object_optimizer)) {
    double squares = 0, count = 0;
    for (auto& wk : tile_states_) {
      const auto& grad = wk->model->object_real.grad();
      if (!grad.defined()) continue;
      const auto o = wk->tile.owned.relative_to(wk->tile.extent);
      const auto owned = grad.slice(1, o.y0, o.y1()).slice(2, o.x0, o.x1());
      squares += sum_of_squares(owned);
      count += static_cast<double>(owned.numel());
    }
    squares = reduce_scalar(squares);
    count = reduce_scalar(count);
    const double eps = count > 0 ? round_to_8_bits(scale * std::sqrt(squares / count)) : 0;
    if (eps > 0)  // a zero gradient (nothing measured) leaves Adam's own
      for (auto& wk : tile_states_) set_adam_epsilon(*wk->object_optimizer, eps);
  }
  if (refine_probe && fresh(*tile_states_.front()->probe_optimizer)) {
    // The probe's gradient is the same on every tile and rank (shared).
    const auto& grad = tile_states_.front()->model->probe_real.grad();
    if (!grad.defined() || grad.numel() == 0) return;
    const double eps = round_to_8_bits(scale * std::sqrt(sum_of_squares(grad) / static_cast<double>(grad.numel())));
    if (eps > 0)
      for (auto& wk : tile_states_) set_adam_epsilon(*wk->probe_optimizer, eps);
  }
}

}  // namespace tessera
