// Learning rates derived from the data: illumination and loss curvature.
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

}  // namespace tessera
