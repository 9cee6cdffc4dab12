// Learning rates derived from the data: illumination and loss curvature.
#include <cmath>
#include <vector>

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

// Sum of squares of a real array (any strides), in double, in element order
// with 8 running partial sums (vectorised): the same value for any thread
// count. The trailing dimensions that are contiguous in memory are summed as
// one row (an owned region's rows); the others are walked by their strides.
template <typename T>
double sum_of_squares_cpu(const torch::Tensor& t) {
  if (t.numel() == 0) return 0;
  const auto sizes = t.sizes();
  const auto strides = t.strides();
  int64_t inner = t.dim(), row = 1;
  while (inner > 0 && (sizes[inner - 1] == 1 || strides[inner - 1] == row)) row *= sizes[--inner];
  std::vector<int64_t> index(static_cast<size_t>(inner), 0);
  const T* base = t.data_ptr<T>();
  double lanes[8] = {};
  for (int64_t r = 0, rows = t.numel() / row; r < rows; ++r) {
    int64_t offset = 0;
    for (int64_t d = 0; d < inner; ++d) offset += index[d] * strides[d];
    const T* p = base + offset;
    int64_t k = 0;
    for (; k + 8 <= row; k += 8)
      for (int q = 0; q < 8; ++q) lanes[q] += static_cast<double>(p[k + q]) * p[k + q];
    for (; k < row; ++k) lanes[0] += static_cast<double>(p[k]) * p[k];
    for (int64_t d = inner - 1; d >= 0; --d) {
      if (++index[d] < sizes[d]) break;
      index[d] = 0;
    }
  }
  double total = 0;
  for (double v : lanes) total += v;
  return total;
}

double sum_of_squares(const torch::Tensor& t) {
  const auto d = t.detach();
  if (!d.is_cpu()) return d.to(torch::kFloat64).square().sum().item<double>();
  if (d.scalar_type() == torch::kFloat) return sum_of_squares_cpu<float>(d);
  return sum_of_squares_cpu<double>(d.to(torch::kFloat64));
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

double Reconstruction::owned_object_gradient_squares() const {
  double squares = 0;
  for (auto& wk : tile_states_) {
    const auto& grad = wk->model->object_real.grad();
    if (!grad.defined()) continue;
    const auto o = wk->tile.owned.relative_to(wk->tile.extent);
    squares += sum_of_squares(grad.slice(1, o.y0, o.y1()).slice(2, o.x0, o.x1()));
  }
  return squares;
}

double Reconstruction::adam_epsilon_scale() const {
  if (settings_.adam_epsilon_scale) return *settings_.adam_epsilon_scale;
  return settings_.optimizer == "adam" ? kDefaultAdamEpsilonScale : 0;
}

// Adam divides each pixel's step by the RMS of that pixel's recent gradients,
// so every pixel steps by about the learning rate, however weakly the data
// constrain it. Once the fit reaches the noise, the gradient of a dimly lit
// or poorly determined pixel is mostly noise, and Adam enlarges exactly those
// steps: on independent simulations at 1e4 photons the image was best after
// 10-20 iterations and 0.004-0.008 worse (correlation with the truth) after
// 100 (scripts/sim/baseline_tables.md). An epsilon of F times the RMS of the
// parameter's whole current gradient bounds that enlargement: a pixel whose
// gradient is well below the average steps in proportion to its gradient, as
// in gradient descent, while the others keep Adam's steps. Being relative to
// the current gradient, it does not slow the last stages of a noise-free fit
// (an epsilon fixed from the first gradient did: session 11). F = 3 was above
// Adam's own epsilon in all 30 cases at 1e4 and 1e6 photons and on seed 2 of
// the 1e4 ones (F = 1 lost 0.0008 on the 3-mode probe at 1e4); at 1e3 photons
// it gained up to 0.018 (aperture) and lost up to 0.003 (3 modes, tilted).
// Computed at every step from the whole object (every tile and rank, owned
// pixels only) or the probe, so that K tiles step as one does, and a resumed
// run as an uninterrupted one.
void Reconstruction::set_adam_epsilons(bool refine_probe) {
  const double scale = adam_epsilon_scale();
  // The settings allow a scale with Adam only (the constructor checks).
  if (scale <= 0 || tile_states_.empty()) return;
  // The owned regions tile the whole object (src/tiling.h), so the object's
  // reals are the owned ones of every tile and rank. The sum of squares came
  // with the step's allreduce (sum_over_ranks).
  const auto& scan = problem_.scan;
  const double count = static_cast<double>(scan.object_h * scan.object_w * 2 *
                                           tile_states_.front()->model->object_real.size(0));
  const double eps = round_to_8_bits(scale * std::sqrt(object_gradient_squares_ / count));
  if (eps > 0)  // a zero gradient (nothing measured in this batch) leaves the last one
    for (auto& wk : tile_states_) set_adam_epsilon(*wk->object_optimizer, eps);
  if (refine_probe) {
    // The probe's gradient is the same on every tile and rank (shared).
    const auto& grad = tile_states_.front()->model->probe_real.grad();
    if (!grad.defined() || grad.numel() == 0) return;
    const double eps = round_to_8_bits(scale * std::sqrt(sum_of_squares(grad) / static_cast<double>(grad.numel())));
    if (eps > 0)
      for (auto& wk : tile_states_) set_adam_epsilon(*wk->probe_optimizer, eps);
  }
}

}  // namespace tessera
