#include "train/reconstruction.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>

#include "models/probe_init.h"
#include "models/propagation.h"
#include "src/comm/communicator.h"
#include "src/error.h"
#include "src/ops/patches.h"

namespace tessera {

struct Reconstruction::TileWorker {
  Tile tile;
  PtychoModel model{nullptr};
  torch::Tensor positions;  // (n, 2) window corners relative to the tile's extent
  torch::Tensor frames;     // (n, h, w) measured intensities, FFT order
  std::vector<bool> touches_halo;  // per local pattern: its window reaches beyond the owned region
  std::unique_ptr<torch::optim::Optimizer> object_optimizer, probe_optimizer;
};

namespace {

void zero_or_create_grad(torch::Tensor& p) {
  if (p.grad().defined()) {
    p.grad().detach_();
    p.grad().zero_();
  } else {
    p.mutable_grad() = torch::zeros_like(p);
  }
}

std::string serialise(const torch::optim::Optimizer& opt) {
  torch::serialize::OutputArchive archive;
  opt.save(archive);
  std::ostringstream s;
  archive.save_to(s);
  return s.str();
}

void deserialise(torch::optim::Optimizer& opt, const std::string& bytes) {
  torch::serialize::InputArchive archive;
  std::istringstream s(bytes);
  archive.load_from(s);
  opt.load(archive);
}

// Tag space for gathering the object on rank 0, above every halo tag.
constexpr int kGatherTagBase = 1 << 28;

}  // namespace

Reconstruction::Reconstruction(ScanProblem problem, ReconstructionSettings settings,
                               std::shared_ptr<comm::Communicator> comm)
    : problem_(std::move(problem)), settings_(std::move(settings)), comm_(std::move(comm)) {
  const auto& s = settings_;
  loss_ = &loss_by_name(s.loss);
  optimizer_ = &optimizer_by_name(s.optimizer);
  TESSERA_REQUIRE(SettingsError, s.iterations >= 0, "iterations must be >= 0, got ", s.iterations);
  TESSERA_REQUIRE(SettingsError, s.chunk_size >= 1, "chunk size must be >= 1, got ", s.chunk_size);
  TESSERA_REQUIRE(SettingsError, s.probe_modes >= 1, "probe modes must be >= 1, got ", s.probe_modes);
  TESSERA_REQUIRE(SettingsError, s.precision == "float" || s.precision == "double",
                  "precision must be 'float' or 'double', got '", s.precision, "'");
  TESSERA_REQUIRE(SettingsError, s.device == "cpu" || torch::cuda::is_available(),
                  "device '", s.device, "' requested but this build or machine has no CUDA device");
  real_dtype_ = s.precision == "double" ? torch::kFloat64 : torch::kFloat32;
  const torch::Device device(s.device);
  const int world = comm_ ? comm_->size() : 1;
  const int me = comm_ ? comm_->rank() : 0;

  // Tiling: an explicit grid, else the requested count (default: one per rank).
  const auto& scan = problem_.scan;
  if (s.tiles_y > 0 && s.tiles_x > 0) {
    tiling_ = std::make_unique<Tiling>(Tiling::grid(scan, s.tiles_y, s.tiles_x));
  } else {
    tiling_ = std::make_unique<Tiling>(Tiling::automatic(scan, std::max(s.tiles, world)));
  }
  const int K = tiling_->num_tiles();
  TESSERA_REQUIRE(SettingsError, K >= world, "there are ", world, " ranks but only ", K,
                  " tiles: every rank needs at least one tile");
  TESSERA_REQUIRE(SettingsError, optimizer_->scaling != StepScaling::LineSearch || K == 1,
                  "optimizer '", s.optimizer, "' takes global steps (line search) and cannot run on ", K,
                  " tiles; use adam, sgd, rmsprop or adagrad with tiles");
  for (int k = 0; k < K; ++k) {
    rank_of_tile_.push_back(static_cast<int>(static_cast<int64_t>(k) * world / K));
    if (rank_of_tile_.back() == me) local_tiles_.push_back(k);
  }

  const int64_t h = scan.frame_h, w = scan.frame_w;
  TESSERA_REQUIRE(DataError, problem_.valid_mask.sizes() == torch::IntArrayRef({h, w}),
                  problem_.source, ": mask shape ", problem_.valid_mask.sizes(), " does not match frames ", h, " x ", w);
  valid_fft_ = to_fft_order(problem_.valid_mask.to(torch::kBool)).to(device);

  // Each tile reads only its own patterns.
  for (int k : local_tiles_) {
    auto wk = std::make_unique<TileWorker>();
    wk->tile = tiling_->tile(k);
    const auto& t = wk->tile;
    auto idx = torch::tensor(t.positions, torch::kInt64);
    auto pos = t.positions.empty() ? torch::zeros({0, 2}, torch::kFloat64) : scan.positions_px.index_select(0, idx);
    pos = pos - torch::tensor({static_cast<double>(t.extent.y0), static_cast<double>(t.extent.x0)}, torch::kFloat64);
    wk->positions = pos.to(real_dtype_).to(device);
    if (!t.positions.empty()) {
      auto frames = problem_.read_frames(t.positions);
      TESSERA_REQUIRE(DataError, frames.dim() == 3 && frames.size(1) == h && frames.size(2) == w,
                      problem_.source, ": frames have shape ", frames.sizes(), ", expected (n, ", h, ", ", w, ")");
      wk->frames = to_fft_order(frames).to(real_dtype_).to(device).contiguous();
    } else {
      wk->frames = torch::zeros({0, h, w}, torch::TensorOptions().dtype(real_dtype_).device(device));
    }
    for (int64_t j : t.positions) wk->touches_halo.push_back(!t.owned.contains(scan.footprint(j)));
    workers_.push_back(std::move(wk));
  }

  const int64_t N = scan.num_positions();
  batch_size_ = s.batch_size > 0 ? std::min(s.batch_size, N) : std::max<int64_t>(std::min<int64_t>(N, 32), (N + 7) / 8);
  if (optimizer_->scaling == StepScaling::LineSearch) batch_size_ = N;

  initialise_probe_and_object();
  derive_learning_rates();
  for (auto& wk : workers_) {
    wk->object_optimizer = optimizer_->make({wk->model->object_real}, object_rate_);
    wk->probe_optimizer = optimizer_->make({wk->model->probe_real}, probe_rate_);
  }
  exchange_ = std::make_unique<comm::HaloExchange>(*tiling_, local_tiles_, rank_of_tile_, comm_);
}

Reconstruction::~Reconstruction() = default;

int Reconstruction::rank() const { return comm_ ? comm_->rank() : 0; }

void Reconstruction::wait_collective(comm::Request& request) const {
  const auto t0 = std::chrono::steady_clock::now();
  request.wait();
  collective_wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double Reconstruction::reduce_scalar(double v) const {
  if (!comm_ || comm_->size() == 1) return v;
  auto t = torch::tensor({v}, torch::kFloat64);
  auto r = comm_->allreduce_sum(t);
  wait_collective(r);
  return t.item<double>();
}

double Reconstruction::reduce_max(double v) const {
  if (!comm_ || comm_->size() == 1) return v;
  // Each rank fills its own slot; the sum then holds every rank's value.
  auto t = torch::zeros({comm_->size()}, torch::kFloat64);
  t[comm_->rank()] = v;
  auto r = comm_->allreduce_sum(t);
  wait_collective(r);
  return t.max().item<double>();
}

void Reconstruction::initialise_probe_and_object() {
  const auto& s = settings_;
  const auto& scan = problem_.scan;
  const torch::Device device(s.device);
  const auto complex_dtype = real_dtype_ == torch::kFloat64 ? torch::kComplexDouble : torch::kComplexFloat;
  torch::Tensor probe;
  if (s.use_file_probe && problem_.probe_guess) {
    probe = problem_.probe_guess->to(torch::kComplexDouble);
    TESSERA_REQUIRE(DataError, probe.size(-2) == scan.frame_h && probe.size(-1) == scan.frame_w, problem_.source,
                    ": probe guess is ", probe.size(-2), " x ", probe.size(-1), " but frames are ", scan.frame_h,
                    " x ", scan.frame_w);
    if (probe.size(0) < s.probe_modes) {  // extra modes as small perturbations of the first
      auto extra = probe_from_mean_pattern(
          to_fft_order(torch::view_as_real(far_field(probe[0])).pow(2).sum(-1)).to(torch::kFloat32), s.probe_modes);
      probe = torch::cat({probe, extra.slice(0, probe.size(0)).to(probe.dtype())});
    }
    probe = probe.slice(0, 0, s.probe_modes);
  } else {
    // Mean measured pattern over every frame of every rank.
    auto sum = torch::zeros({scan.frame_h, scan.frame_w}, torch::kFloat64);
    for (auto& wk : workers_) sum += wk->frames.sum(0).to(torch::kFloat64).cpu();
    if (comm_ && comm_->size() > 1) comm_->allreduce_sum(sum).wait();
    auto mean = sum / static_cast<double>(scan.num_positions());
    mean = torch::where(valid_fft_.cpu(), mean, torch::zeros_like(mean));
    probe = probe_from_mean_pattern(mean, s.probe_modes);
  }
  probe = probe.to(complex_dtype).to(device);
  for (auto& wk : workers_) {
    const auto& e = wk->tile.extent;
    auto object = torch::ones({1, e.h, e.w}, torch::TensorOptions().dtype(complex_dtype).device(device));
    wk->model = PtychoModel(object, probe.clone());
  }
}

void Reconstruction::derive_learning_rates() {
  const auto& s = settings_;
  const double base = optimizer_->default_rate * s.rate_scale;
  // Same probe on every rank, so these are identical everywhere.
  auto probe = workers_.empty() ? torch::Tensor() : workers_.front()->model->probe().detach();
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
      std::map<int, torch::Tensor> illum;
      double meas_max = 0;
      for (auto& wk : workers_) {
        auto p = wk->model->probe();
        auto power = torch::view_as_real(p).pow(2).sum(std::vector<int64_t>{0, -1}).unsqueeze(0).unsqueeze(0);  // (1,1,h,w)
        const int64_t n = wk->positions.size(0);
        const auto& e = wk->tile.extent;
        auto patches = power.expand({n, 1, p.size(1), p.size(2)}).contiguous();
        illum[wk->tile.index] = n ? ops::overlap_add(patches, wk->positions, e.h, e.w)
                                  : torch::zeros({1, e.h, e.w}, power.options());
        if (n) meas_max = std::max(meas_max, wk->frames.max().item<double>());
      }
      comm::HaloExchange ex(*tiling_, local_tiles_, rank_of_tile_, comm_);
      ex.reduce(illum);
      double illum_max = 0;
      for (auto& wk : workers_) {
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

double Reconstruction::compute_batch(const std::vector<int64_t>& batch, int64_t global_batch_size) {
  // Local patterns of this batch, per worker, split into halo-touching and interior.
  std::vector<std::vector<int64_t>> boundary(workers_.size()), interior(workers_.size());
  {
    std::vector<int64_t> local_index(problem_.scan.num_positions(), -1);
    std::vector<int> local_worker(problem_.scan.num_positions(), -1);
    for (size_t w = 0; w < workers_.size(); ++w)
      for (size_t i = 0; i < workers_[w]->tile.positions.size(); ++i) {
        local_index[workers_[w]->tile.positions[i]] = static_cast<int64_t>(i);
        local_worker[workers_[w]->tile.positions[i]] = static_cast<int>(w);
      }
    for (int64_t j : batch) {
      const int w = local_worker[j];
      if (w < 0) continue;
      const int64_t i = local_index[j];
      (workers_[w]->touches_halo[i] ? boundary : interior)[w].push_back(i);
    }
  }
  const bool refine_probe = settings_.probe_from >= 0 && iteration_ >= settings_.probe_from;
  for (auto& wk : workers_) {
    wk->model->probe_real.requires_grad_(refine_probe);
    zero_or_create_grad(wk->model->object_real);
    if (refine_probe) zero_or_create_grad(wk->model->probe_real);
  }
  double loss_sum = 0;
  const double scale = 1.0 / static_cast<double>(global_batch_size);
  auto run = [&](TileWorker& wk, const std::vector<int64_t>& idx) {
    for (size_t b = 0; b < idx.size(); b += settings_.chunk_size) {
      const size_t e = std::min(idx.size(), b + static_cast<size_t>(settings_.chunk_size));
      auto sel = torch::tensor(std::vector<int64_t>(idx.begin() + b, idx.begin() + e), torch::kInt64)
                     .to(wk.positions.device());
      auto predicted = wk.model->forward(wk.positions.index_select(0, sel));
      auto loss = loss_->function(predicted, wk.frames.index_select(0, sel), valid_fft_);
      (loss * scale).backward();
      loss_sum += loss.item<double>();
    }
  };
  // Pipeline: halo-touching patterns first, so their halo gradients can be on
  // the wire while the interior patterns are computed.
  for (size_t w = 0; w < workers_.size(); ++w) run(*workers_[w], boundary[w]);
  // Regularisers: each tile sums the terms of the pixels it owns, once per
  // step, so the penalty's gradient also adds up to the undecomposed one. Its
  // gradient reaches the halo (terms of owned pixels read their neighbours),
  // so it must be in place before start_reduction packs the halo parts.
  for (auto& [prior, ps] : priors_) {
    if (!prior->is_regulariser() || ps.weight == 0) continue;
    for (auto& wk : workers_) {
      const Rect owned = wk->tile.owned.relative_to(wk->tile.extent);
      auto penalty = prior->penalty(wk->model->object(), owned) * ps.weight;
      penalty.backward();
      loss_sum += penalty.item<double>() * static_cast<double>(global_batch_size);
    }
  }
  std::map<int, torch::Tensor> grads;
  for (auto& wk : workers_) grads[wk->tile.index] = wk->model->object_real.grad();
  exchange_->start_reduction(grads);
  for (size_t w = 0; w < workers_.size(); ++w) run(*workers_[w], interior[w]);
  // The probe is shared by every pattern: its gradient is the sum over tiles,
  // complete once every local pattern ran. One allreduce per step carries it
  // and the loss (in the working precision; the loss alone in double), in
  // flight while the halo reduction finishes: the only synchronisation point
  // of a step besides the halos.
  torch::Tensor probe_total;
  if (refine_probe) {
    probe_total = torch::zeros_like(workers_.front()->model->probe_real);
    for (auto& wk : workers_) probe_total += wk->model->probe_real.grad();
  }
  const bool multi = comm_ && comm_->size() > 1;
  torch::Tensor packed;
  comm::Request sum;
  if (multi) {
    const auto opts = refine_probe ? probe_total.options()
                                   : torch::TensorOptions().dtype(torch::kFloat64).device(workers_.front()->positions.device());
    auto loss_t = torch::full({1}, loss_sum, opts);
    packed = refine_probe ? torch::cat({probe_total.flatten(), loss_t}) : loss_t;
    sum = comm_->allreduce_sum(packed);
  }
  exchange_->finish_reduction(grads);
  if (multi) {
    wait_collective(sum);
    loss_sum = packed[-1].item<double>();
    if (refine_probe) probe_total = packed.slice(0, 0, probe_total.numel()).view(probe_total.sizes());
  }
  if (refine_probe)
    for (auto& wk : workers_) wk->model->probe_real.mutable_grad().copy_(probe_total);
  return loss_sum;  // over every rank
}

IterationStats Reconstruction::iterate() {
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
    const int64_t b1 = std::min(N, b0 + batch_size_);
    std::vector<int64_t> batch(order.begin() + b0, order.begin() + b1);
    double batch_loss = 0;
    if (optimizer_->scaling == StepScaling::LineSearch) {
      auto& wk = *workers_.front();
      // L-BFGS re-evaluates the loss in its line search: the closure recomputes
      // every gradient for the parameter it steps.
      auto closure = [&]() {
        batch_loss = compute_batch(batch, b1 - b0);
        return torch::tensor(batch_loss / static_cast<double>(b1 - b0), real_dtype_);
      };
      wk.object_optimizer->step(closure);
      if (refine_probe) wk.probe_optimizer->step(closure);
      batch_loss = compute_batch(batch, b1 - b0);  // loss at the new point, for the record
    } else {
      batch_loss = compute_batch(batch, b1 - b0);  // already summed over ranks
      if (!std::isfinite(batch_loss))
        throw Error("the reconstruction diverged at iteration " + std::to_string(iteration_ + 1) +
                    ": the loss is not finite. Lower the learning rates (--object-rate, --probe-rate, "
                    "--rate-scale) or try another optimizer; the last good result is kept.");
      for (auto& wk : workers_) {
        wk->object_optimizer->step();
        if (refine_probe) wk->probe_optimizer->step();
      }
    }
    std::map<int, torch::Tensor> objects;
    for (auto& wk : workers_) objects[wk->tile.index] = wk->model->object_real;
    exchange_->refresh(objects);
    total_loss += batch_loss;
  }
  apply_denoisers();
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

void Reconstruction::add_prior(std::shared_ptr<Prior> prior, PriorSettings ps) {
  TESSERA_REQUIRE(SettingsError, prior, "add_prior needs a prior");
  TESSERA_REQUIRE(SettingsError, ps.every >= 1, "a denoiser runs every N >= 1 iterations, got ", ps.every);
  TESSERA_REQUIRE(SettingsError, ps.blend >= 0 && ps.blend <= 1, "denoiser blend must be in [0, 1], got ", ps.blend);
  priors_.emplace_back(std::move(prior), ps);
}

void Reconstruction::apply_denoisers() {
  // Plug-and-play: each tile denoises its whole array (the halo gives the
  // denoiser context across the border), keeps its owned region, and the
  // refresh then makes every halo equal to its owner again.
  bool changed = false;
  for (auto& [prior, ps] : priors_) {
    if (!prior->is_denoiser() || (iteration_ + 1) % ps.every != 0) continue;
    torch::NoGradGuard no_grad;
    for (auto& wk : workers_) {
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
    for (auto& wk : workers_) objects[wk->tile.index] = wk->model->object_real;
    exchange_->refresh(objects);
  }
}

torch::Tensor Reconstruction::probe() const {
  return workers_.front()->model->probe().detach().clone();
}

torch::Tensor Reconstruction::object() const {
  torch::NoGradGuard no_grad;
  const auto& scan = problem_.scan;
  const auto& first = workers_.front()->model;
  const int64_t L = first->object_real.size(0);
  const bool root = rank() == 0;
  torch::Tensor full;
  if (root) full = torch::zeros({L, scan.object_h, scan.object_w}, first->object().options());
  std::vector<comm::Request> requests;
  std::vector<std::pair<Rect, torch::Tensor>> received;
  for (int k = 0; k < tiling_->num_tiles(); ++k) {
    const Tile& t = tiling_->tile(k);
    if (t.owned.empty()) continue;
    const bool local = rank_of_tile_[k] == rank();
    if (local) {
      auto it = std::find(local_tiles_.begin(), local_tiles_.end(), k);
      const auto& wk = workers_[it - local_tiles_.begin()];
      const Rect o = t.owned.relative_to(t.extent);
      auto part = wk->model->object().slice(1, o.y0, o.y1()).slice(2, o.x0, o.x1()).contiguous();
      if (root)
        full.slice(1, t.owned.y0, t.owned.y1()).slice(2, t.owned.x0, t.owned.x1()).copy_(part);
      else
        requests.push_back(comm_->isend(part, 0, kGatherTagBase + k));
    } else if (root) {
      auto buf = torch::empty({L, t.owned.h, t.owned.w}, full.options());
      requests.push_back(comm_->irecv(buf, rank_of_tile_[k], kGatherTagBase + k));
      received.emplace_back(t.owned, buf);
    }
  }
  for (auto& r : requests) r.wait();
  for (auto& [o, buf] : received) full.slice(1, o.y0, o.y1()).slice(2, o.x0, o.x1()).copy_(buf);
  return full;
}

int64_t Reconstruction::local_pattern_count() const {
  int64_t n = 0;
  for (auto& wk : workers_) n += wk->positions.size(0);
  return n;
}

int64_t Reconstruction::remote_elements_per_step() const {
  const int64_t L = workers_.front()->model->object_real.size(0);
  const int64_t probe = workers_.front()->model->probe().numel();
  const bool multi = comm_ && comm_->size() > 1;
  return exchange_->remote_elements_per_exchange(L) + exchange_->remote_elements_per_refresh(L) +
         (multi ? probe : 0);
}

OptimizerStates Reconstruction::optimizer_states() const {
  OptimizerStates s;
  for (auto& wk : workers_) {
    const std::string key = "tile_" + std::to_string(wk->tile.index);
    s[key + "/object"] = serialise(*wk->object_optimizer);
    s[key + "/probe"] = serialise(*wk->probe_optimizer);
  }
  return s;
}

void Reconstruction::restore(const torch::Tensor& object, const torch::Tensor& probe, int iteration,
                             const OptimizerStates& states) {
  torch::NoGradGuard no_grad;
  const auto& scan = problem_.scan;
  TESSERA_REQUIRE(DataError, object.dim() == 3 && object.size(1) == scan.object_h && object.size(2) == scan.object_w,
                  "the result to resume holds an object of shape ", object.sizes(), " but this data set needs (L, ",
                  scan.object_h, ", ", scan.object_w, ")");
  TESSERA_REQUIRE(DataError, probe.sizes() == workers_.front()->model->probe().sizes(),
                  "the result to resume holds a probe of shape ", probe.sizes(), " but the run uses ",
                  workers_.front()->model->probe().sizes());
  for (auto& wk : workers_) {
    const Rect& e = wk->tile.extent;
    auto part = object.slice(1, e.y0, e.y1()).slice(2, e.x0, e.x1());
    wk->model->object_real.copy_(torch::view_as_real(part.to(wk->model->object().dtype()).contiguous()));
    wk->model->probe_real.copy_(torch::view_as_real(probe.to(wk->model->probe().dtype()).contiguous()));
    const std::string key = "tile_" + std::to_string(wk->tile.index);
    auto o = states.find(key + "/object"), p = states.find(key + "/probe");
    TESSERA_REQUIRE(DataError, o != states.end() && p != states.end(), "the result to resume has no optimizer state for ",
                    key, ": resume with the same tiling and optimizer as the original run");
    deserialise(*wk->object_optimizer, o->second);
    deserialise(*wk->probe_optimizer, p->second);
  }
  iteration_ = iteration;
}

}  // namespace tessera
