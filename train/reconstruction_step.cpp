// The optimiser step: forward/backward over a batch, the overlap reduction, the gauge, priors.
#include "train/reconstruction.h"
#include "train/tile_state.h"

namespace tessera {

namespace {

// Gradients start each step undefined, so that the first backward of the
// step hands its gradient tensor over (autograd's AccumulateGrad steals it)
// instead of a zero-fill and an add pass over the whole array; ensure_grad
// then makes them defined wherever the step must read them.
void clear_grad(torch::Tensor& p) { p.mutable_grad() = torch::Tensor(); }

void ensure_grad(torch::Tensor& p) {
  if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
}

}  // namespace

// This rank's patterns of a batch, per local tile (rows of the tile's own
// pattern list): those whose windows reach the halo, and the others.
struct Reconstruction::PatternSplit {
  std::vector<int64_t> boundary, interior;
};

// The gradients every tile shares: the probe's (summed over the tiles and
// ranks) and the batch's positions' (each from the one tile that owns it),
// one allreduce with the loss.
struct Reconstruction::SharedGradients {
  bool probe = false, positions = false;
  torch::Tensor probe_total;     // the probe's gradient summed over tiles (undefined: a lone tile has it)
  torch::Tensor position_grads;  // (batch, 2)
  torch::Tensor batch_rows;      // the batch's pattern indices
};

double Reconstruction::compute_batch(const std::vector<int64_t>& batch, int64_t global_batch_size) {
  const auto split = split_batch(batch);
  const bool refine_probe = settings_.probe_from >= 0 && iteration_ >= settings_.probe_from;
  const bool refine_positions = refining_positions();
  for (auto& wk : tile_states_) {
    wk->model->probe_real.requires_grad_(refine_probe);
    wk->positions.requires_grad_(refine_positions);
    clear_grad(wk->model->object_real);
    clear_grad(wk->model->probe_real);
    clear_grad(wk->positions);
  }
  double loss_sum = 0;
  const double scale = 1.0 / static_cast<double>(global_batch_size);
  // Pipeline: halo-touching patterns first, so their halo gradients can be on
  // the wire while the interior patterns are computed.
  for (size_t t = 0; t < tile_states_.size(); ++t) run_patterns(*tile_states_[t], split[t].boundary, scale, loss_sum);
  add_regulariser_gradients(global_batch_size, loss_sum);
  // Only tiles with neighbours need their gradient array now; the others
  // (a run's only tile) let the interior patterns' first backward hand its
  // gradient over.
  std::map<int, torch::Tensor> grads;
  for (auto& wk : tile_states_) {
    if (!exchange_->exchanges(wk->tile.index)) continue;
    ensure_grad(wk->model->object_real);
    grads[wk->tile.index] = wk->model->object_real.grad();
  }
  exchange_->start_reduction(grads);
  for (size_t t = 0; t < tile_states_.size(); ++t) run_patterns(*tile_states_[t], split[t].interior, scale, loss_sum);
  for (auto& wk : tile_states_) ensure_grad(wk->model->object_real);
  // The probe's gradient is complete once every local pattern ran. One
  // allreduce per step carries it, the positions' and the loss, in flight
  // while the halo reduction finishes: the only synchronisation point of a
  // step besides the halos.
  auto shared = shared_gradients(batch, refine_probe, refine_positions);
  sum_over_ranks(shared, loss_sum, [&] { exchange_->finish_reduction(grads); }, adam_epsilon_scale() > 0);
  install_shared_gradients(shared);
  return loss_sum;  // over every rank
}

std::vector<Reconstruction::PatternSplit> Reconstruction::split_batch(const std::vector<int64_t>& batch) const {
  std::vector<PatternSplit> split(tile_states_.size());
  std::vector<int64_t> local_index(problem_.scan.num_positions(), -1);
  std::vector<int> local_tile(problem_.scan.num_positions(), -1);
  for (size_t t = 0; t < tile_states_.size(); ++t)
    for (size_t i = 0; i < tile_states_[t]->tile.positions.size(); ++i) {
      local_index[tile_states_[t]->tile.positions[i]] = static_cast<int64_t>(i);
      local_tile[tile_states_[t]->tile.positions[i]] = static_cast<int>(t);
    }
  for (int64_t j : batch) {
    const int t = local_tile[j];
    if (t < 0) continue;
    const int64_t i = local_index[j];
    (tile_states_[t]->touches_halo[i] ? split[t].boundary : split[t].interior).push_back(i);
  }
  return split;
}

void Reconstruction::run_patterns(TileState& wk, const std::vector<int64_t>& rows, double scale, double& loss_sum) {
  for (size_t b = 0; b < rows.size(); b += settings_.chunk_size) {
    const size_t e = std::min(rows.size(), b + static_cast<size_t>(settings_.chunk_size));
    auto sel = torch::tensor(std::vector<int64_t>(rows.begin() + b, rows.begin() + e), torch::kInt64)
                   .to(wk.positions.device());
    auto loss = wk.model->data_loss(wk.positions.index_select(0, sel), wk.frames, loss_mask_, *loss_, sel, scale);
    loss.backward();
    loss_sum += loss.item<double>() / scale;
  }
}

void Reconstruction::add_regulariser_gradients(int64_t global_batch_size, double& loss_sum) {
  // Each tile sums the terms of the pixels it owns, once per step, so the
  // penalty's gradient also adds up to the undecomposed one. Its gradient
  // reaches the halo (terms of owned pixels read their neighbours), so it
  // must be in place before start_reduction packs the halo parts.
  for (auto& [prior, ps] : priors_) {
    if (!prior->is_regulariser() || ps.weight == 0) continue;
    for (auto& wk : tile_states_) {
      const Rect owned = wk->tile.owned.relative_to(wk->tile.extent);
      auto penalty = prior->penalty(wk->model->object(), owned) * ps.weight;
      penalty.backward();
      loss_sum += penalty.item<double>() * static_cast<double>(global_batch_size);
    }
  }
}

Reconstruction::SharedGradients Reconstruction::shared_gradients(const std::vector<int64_t>& batch,
                                                                 bool refine_probe, bool refine_positions) {
  SharedGradients shared;
  shared.probe = refine_probe;
  shared.positions = refine_positions;
  if (refine_probe)
    for (auto& wk : tile_states_) ensure_grad(wk->model->probe_real);
  // A lone tile on a lone rank already holds the probe's total gradient.
  const bool multi = comm_ && comm_->size() > 1;
  if (refine_probe && (multi || tile_states_.size() > 1))
    for (auto& wk : tile_states_) {
      if (!shared.probe_total.defined())
        shared.probe_total = wk->model->probe_real.grad().clone();
      else
        shared.probe_total += wk->model->probe_real.grad();
    }
  if (!refine_positions) return shared;
  // Each position's gradient comes from its own pattern, on the one tile that
  // owns it; the batch's rows, summed over ranks, give every rank all of them.
  shared.position_grads =
      torch::zeros({static_cast<int64_t>(batch.size()), 2}, positions_.options().requires_grad(false));
  std::map<int64_t, int64_t> slot;
  for (size_t i = 0; i < batch.size(); ++i) slot[batch[i]] = static_cast<int64_t>(i);
  for (auto& wk : tile_states_) {
    ensure_grad(wk->positions);
    std::vector<int64_t> rows, slots;
    for (size_t i = 0; i < wk->tile.positions.size(); ++i) {
      auto it = slot.find(wk->tile.positions[i]);
      if (it == slot.end()) continue;
      rows.push_back(static_cast<int64_t>(i));
      slots.push_back(it->second);
    }
    if (rows.empty()) continue;
    auto r = torch::tensor(rows, torch::kInt64).to(positions_.device());
    auto sl = torch::tensor(slots, torch::kInt64).to(positions_.device());
    shared.position_grads.index_copy_(0, sl, wk->positions.grad().index_select(0, r));
  }
  shared.batch_rows = torch::tensor(batch, torch::kInt64).to(positions_.device());
  return shared;
}

void Reconstruction::sum_over_ranks(SharedGradients& shared, double& loss_sum, const std::function<void()>& meanwhile,
                                    bool object_squares) {
  if (!comm_ || comm_->size() <= 1) {
    meanwhile();
    if (object_squares) object_gradient_squares_ = owned_object_gradient_squares();
    return;
  }
  // Adam's epsilon needs the object gradient's sum of squares, which only
  // the finished halo reduction gives: it rides in the same allreduce, after
  // the halos (one synchronisation per step rather than two), in double so
  // that K ranks round it as one process does.
  if (object_squares) meanwhile();
  // In the working precision; the loss alone in double (everything in double
  // when the sum of squares goes along).
  const auto opts = (shared.probe || shared.positions) && !object_squares
                        ? positions_.options().requires_grad(false)
                        : torch::TensorOptions().dtype(torch::kFloat64).device(tile_states_.front()->positions.device());
  std::vector<torch::Tensor> parts;
  if (shared.probe) parts.push_back(shared.probe_total.flatten().to(opts.dtype()));
  if (shared.positions) parts.push_back(shared.position_grads.flatten().to(opts.dtype()));
  parts.push_back(torch::full({1}, loss_sum, opts));
  if (object_squares) parts.push_back(torch::full({1}, owned_object_gradient_squares(), opts));
  auto packed = torch::cat(parts);
  auto sum = comm_->allreduce_sum(packed);
  if (!object_squares) meanwhile();
  wait_collective(sum);
  const int64_t tail = object_squares ? 2 : 1;
  loss_sum = packed[packed.size(0) - tail].item<double>();
  if (object_squares) object_gradient_squares_ = packed[-1].item<double>();
  int64_t at = 0;
  if (shared.probe) {
    const auto n = shared.probe_total.numel();
    shared.probe_total =
        packed.slice(0, 0, n).view(shared.probe_total.sizes()).to(shared.probe_total.scalar_type());
    at = n;
  }
  if (shared.positions)
    shared.position_grads = packed.slice(0, at, at + shared.position_grads.numel())
                                .view(shared.position_grads.sizes())
                                .to(shared.position_grads.scalar_type());
}

void Reconstruction::install_shared_gradients(const SharedGradients& shared) {
  if (shared.probe_total.defined())
    for (auto& wk : tile_states_) wk->model->probe_real.mutable_grad().copy_(shared.probe_total);
  if (shared.positions) {
    positions_.mutable_grad().zero_();
    positions_.mutable_grad().index_copy_(0, shared.batch_rows, shared.position_grads);
  }
}

IterationStats Reconstruction::iterate() {
  TESSERA_REQUIRE(Error, !frames_released_, "the reconstruction's frames were released: no further iteration");
  const auto t0 = std::chrono::steady_clock::now();
  const double wait0 = exchange_->wait_seconds() + collective_wait_seconds_;
  const int64_t N = problem_.scan.num_positions();
  // The batch order depends only on (seed, iteration): every rank, and a
  // resumed run, draws the same batches.
  auto gen = at::detail::createCPUGenerator(settings_.seed * 1000003ULL + static_cast<uint64_t>(iteration_));
  auto perm = torch::randperm(N, gen, torch::kInt64);
  auto order = std::vector<int64_t>(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + N);
  const bool refine_probe = settings_.probe_from >= 0 && iteration_ >= settings_.probe_from;
  double total_loss = 0;
  for (int64_t b0 = 0; b0 < N; b0 += batch_size_) {
    const std::vector<int64_t> batch(order.begin() + b0, order.begin() + std::min(N, b0 + batch_size_));
    total_loss += step_batch(batch, refine_probe);
    for (auto& wk : tile_states_) apply_object_constraints(wk->model->object_real, settings_.object_constraints);
    std::map<int, torch::Tensor> objects;
    for (auto& wk : tile_states_) objects[wk->tile.index] = wk->model->object_real;
    exchange_->refresh(objects);
  }
  apply_denoisers();
  if (refine_probe && optimizer_->scaling != StepScaling::LineSearch) apply_phase_ramp_gauge();
  const int64_t modes = tile_states_.front()->model->probe_real.size(0);
  if (refine_probe && modes > 1 && settings_.orthogonalise_every > 0 &&
      (iteration_ + 1) % settings_.orthogonalise_every == 0)
    orthogonalise_probe_modes();
  if (refining_positions()) {
    const int every = settings_.position_search_every;
    if (every > 0 && (iteration_ + 1 - settings_.positions_from) % every == 0) search_positions();
    reassign_moved_patterns();
  }
  if (optimizer_->scaling == StepScaling::LineSearch && !std::isfinite(total_loss))
    throw Error("the reconstruction diverged at iteration " + std::to_string(iteration_ + 1) +
                ": the loss is not finite; the last good result is kept.");
  ++iteration_;
  IterationStats st;
  st.iteration = iteration_;
  st.loss = total_loss / static_cast<double>(N);
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  st.wait_seconds = exchange_->wait_seconds() + collective_wait_seconds_ - wait0;
  return st;
}

double Reconstruction::step_batch(const std::vector<int64_t>& batch, bool refine_probe) {
  const auto count = static_cast<int64_t>(batch.size());
  if (optimizer_->scaling == StepScaling::LineSearch) {
    auto& wk = *tile_states_.front();
    // L-BFGS re-evaluates the loss in its line search: the closure recomputes
    // every gradient for the parameter it steps.
    auto closure = [&]() {
      return torch::tensor(compute_batch(batch, count) / static_cast<double>(count), real_dtype_);
    };
    wk.object_optimizer->step(closure);
    if (refine_probe) wk.probe_optimizer->step(closure);
    return compute_batch(batch, count);  // loss at the new point, for the record
  }
  const double loss = compute_batch(batch, count);  // already summed over ranks
  if (!std::isfinite(loss))
    throw Error("the reconstruction diverged at iteration " + std::to_string(iteration_ + 1) +
                ": the loss is not finite. Lower the learning rates (--object-rate, --probe-rate, "
                "--rate-scale) or try another optimizer; the last good result is kept.");
  set_adam_epsilons(refine_probe);
  for (auto& wk : tile_states_) {
    wk->object_optimizer->step();
    if (refine_probe) wk->probe_optimizer->step();
  }
  if (refining_positions()) {
    position_optimizer_->step();
    constrain_positions();
    for (auto& wk : tile_states_) update_tile_positions(*wk);
  }
  return loss;
}

// The phase ramp the data cannot fix leaves the object for the probe (or
// follows the beam), optimiser state along (models/phase_ramp.h).
void Reconstruction::apply_phase_ramp_gauge() {
  if (gauge_ == Gauge::object) {
    PhaseStepSums sums;
    for (auto& wk : tile_states_) {
      const auto t = object_phase_step_sums(wk->model->object_real, wk->ramp_weight_y, wk->ramp_weight_x);
      sums.y += t.y;
      sums.x += t.x;
    }
    if (comm_ && comm_->size() > 1) {
      auto t = torch::tensor({sums.y.real(), sums.y.imag(), sums.x.real(), sums.x.imag()}, torch::kFloat64);
      auto r = comm_->allreduce_sum(t);
      wait_collective(r);
      sums.y = {t[0].item<double>(), t[1].item<double>()};
      sums.x = {t[2].item<double>(), t[3].item<double>()};
    }
    const auto k = sums.ramp();
    for (auto& wk : tile_states_) {  // -k "to the object" takes k off it, onto the probe
      const auto u = move_phase_ramp_to_object(wk->model->probe_real, wk->model->object_real, wk->tile.extent,
                                               {-k.first, -k.second});
      rotate_optimizer_state(*wk->probe_optimizer, wk->model->probe_real, u.probe);
      rotate_optimizer_state(*wk->object_optimizer, wk->model->object_real, u.object);
    }
  }
  if (gauge_ == Gauge::beam) {
    // The probe untilted by the zero order's rest is centred when right: for
    // the true probe exactly (its pupil is symmetric), even where it does not
    // fade before the window's edge and a tilt is not a whole-pixel shift.
    auto probe = torch::view_as_complex(tile_states_.front()->model->probe_real.detach());
    const auto off = probe_phase_ramp(tilt_probe(probe, {-gauge_rest_.first, -gauge_rest_.second}));
    for (auto& wk : tile_states_) {
      const auto u = move_phase_ramp_to_object(wk->model->probe_real, wk->model->object_real, wk->tile.extent, off);
      rotate_optimizer_state(*wk->probe_optimizer, wk->model->probe_real, u.probe);
      rotate_optimizer_state(*wk->object_optimizer, wk->model->object_real, u.object);
    }
  }
}

void Reconstruction::orthogonalise_probe_modes() {
  // Keep the incoherent modes orthogonal: otherwise they drift towards one
  // another and the mixed state collapses. Every tile holds the same probe,
  // so every tile computes the same rotation.
  torch::NoGradGuard no_grad;
  for (auto& wk : tile_states_) {
    auto& p = wk->model->probe_real;
    p.copy_(torch::view_as_real(orthogonalise_modes(torch::view_as_complex(p)).contiguous()));
  }
}

void Reconstruction::apply_denoisers() {
  // Plug-and-play: each tile denoises its whole array (the halo gives the
  // denoiser context across the border), keeps its owned region, and the
  // refresh then makes every halo equal to its owner again.
  bool changed = false;
  for (auto& [prior, ps] : priors_) {
    if (!prior->is_denoiser() || (iteration_ + 1) % ps.every != 0) continue;
    torch::NoGradGuard no_grad;
    for (auto& wk : tile_states_) {
      auto o = wk->model->object();
      auto d = prior->denoise(o.detach().clone());
      TESSERA_REQUIRE(Error, d.sizes() == o.sizes() && d.dtype() == o.dtype(), "prior '", prior->name(),
                      "' returned an array of shape ", d.sizes(), " and type ", d.dtype(), " for an object of shape ",
                      o.sizes(), " and type ", o.dtype());
      const Rect r = wk->tile.owned.relative_to(wk->tile.extent);
      auto target = o.slice(1, r.y0, r.y1()).slice(2, r.x0, r.x1());
      auto denoised = d.slice(1, r.y0, r.y1()).slice(2, r.x0, r.x1());
      target.copy_(target * (1 - ps.blend) + denoised * ps.blend);
    }
    changed = true;
  }
  if (changed) {
    std::map<int, torch::Tensor> objects;
    for (auto& wk : tile_states_) objects[wk->tile.index] = wk->model->object_real;
    exchange_->refresh(objects);
  }
}

}  // namespace tessera
