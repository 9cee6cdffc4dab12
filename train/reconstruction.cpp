#include "train/reconstruction.h"

#include <unistd.h>  // sysconf: the memory a set-up may ask for

#include "src/comm/gather.h"
#include "train/probe_starts.h"
#include "train/tile_state.h"

namespace tessera {

Reconstruction::Reconstruction(ScanProblem problem, ReconstructionSettings settings,
                               std::shared_ptr<comm::Communicator> comm)
    : problem_(std::move(problem)), settings_(std::move(settings)), comm_(std::move(comm)) {
  // The set-up is local to each rank (settings, tiling, its frames); after it
  // ranks meet in collectives, so a rank that failed must say so to all
  // before they start (src/comm/setup_agreement.h).
  comm::agree_on_setup(comm_.get(), [this] { set_up_local_tiles(); });
  const auto& s = settings_;
  initialise_probe_and_object();
  derive_learning_rates();
  make_optimizers();
  exchange_ = std::make_unique<comm::HaloExchange>(*tiling_, local_tiles_, rank_of_tile_, comm_);
  if (s.use_file_probe && problem_.probe_guess) return;
  // The focused probe from the data, and the aperture any defocus refers to
  // (about the zero order); the strategy (train/probe_starts.h) chooses the defocus.
  ProbeStartContext start;
  start.focused_probe = tile_states_.front()->model->probe().detach().clone();
  start.centre = zero_order_rest(zero_order_);
  start.aperture_radius_px = aperture_radius_px(start.focused_probe, start.centre);
  start.parallax_defocus = [&] { return start_from_estimated_defocus(start); };
  start.search_defocus = [&] {
    if (!s.defocus_candidates.empty() && s.defocus_search_iterations > 0 && s.probe_from == 0 &&
        optimizer_->scaling != StepScaling::LineSearch)
      search_probe_defocus(start);
  };
  start.restart_from = [&](const torch::Tensor& probe) {
    const auto& focused = start.focused_probe;
    TESSERA_REQUIRE(SettingsError, probe.sizes() == focused.sizes(), "probe start '", s.defocus_start,
                    "' gave a probe of shape ", probe.sizes(), " where the reconstruction's is ", focused.sizes());
    reset(probe.to(focused.options()));
  };
  probe_start_by_name(s.defocus_start).start(start);
}

Reconstruction::~Reconstruction() = default;

void Reconstruction::set_up_local_tiles() {
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

  TESSERA_REQUIRE(SettingsError, s.slices >= 1, "slices must be >= 1, got ", s.slices);
  TESSERA_REQUIRE(SettingsError, s.slices == 1 || (s.slice_thickness_m > 0 && std::isfinite(s.slice_thickness_m)),
                  "a multislice object (", s.slices, " slices) needs a positive slice thickness, got ",
                  s.slice_thickness_m, " m");
  TESSERA_REQUIRE(SettingsError, !s.adam_epsilon_scale || (std::isfinite(*s.adam_epsilon_scale) && *s.adam_epsilon_scale >= 0),
                  "adam-epsilon-scale must be a number >= 0, got ", s.adam_epsilon_scale.value_or(0));
  TESSERA_REQUIRE(SettingsError, !s.adam_epsilon_scale || s.optimizer == "adam",
                  "adam-epsilon-scale sets Adam's epsilon; it does nothing with --optimizer ", s.optimizer,
                  ": leave it out or use --optimizer adam");
  TESSERA_REQUIRE(SettingsError, s.defocus_search_iterations >= 0, "defocus-search-iterations must be >= 0, got ",
                  s.defocus_search_iterations);
  probe_start_by_name(s.defocus_start);  // an unknown name is refused before any work
  for (double c : s.defocus_candidates)
    TESSERA_REQUIRE(SettingsError, std::isfinite(c), "defocus candidates must be finite numbers, got ", c);
  TESSERA_REQUIRE(SettingsError, s.orthogonalise_every >= 0, "orthogonalise-every must be >= 0, got ",
                  s.orthogonalise_every);
  TESSERA_REQUIRE(SettingsError, s.position_rate >= 0 && s.position_limit_px >= 0,
                  "position rate and limit must be >= 0");
  if (s.positions_from >= 0) {
    position_optimizer_info_ = &optimizer_by_name(s.position_optimizer);
    TESSERA_REQUIRE(SettingsError, position_optimizer_info_->scaling == StepScaling::ParameterUnits,
                    "position optimizer '", s.position_optimizer,
                    "' does not take steps in pixels; use adam, rmsprop or adagrad for positions");
    TESSERA_REQUIRE(SettingsError, optimizer_->scaling != StepScaling::LineSearch,
                    "position correction needs a mini-batch optimizer, not '", s.optimizer, "'");
  }

  {
    const auto& p = problem_.scan.positions_px;
    TESSERA_REQUIRE(DataError, p.size(0) < 2 || (std::get<0>(p.max(0)) > std::get<0>(p.min(0))).any().item<bool>(),
                    problem_.source, ": all ", p.size(0), " scan positions are identical; ptychography needs "
                    "overlapping but different probe positions");
  }
  // Tiling: an explicit grid, else the requested count (default: one per rank).
  // With position correction the halos are sized for any pattern a tile can
  // come to own, so that patterns change owner without new arrays or links.
  const auto& scan = problem_.scan;
  const auto halo = s.positions_from >= 0 ? HaloPolicy::MovablePositions : HaloPolicy::FitFootprints;
  if (s.tiles_y > 0 && s.tiles_x > 0) {
    tiling_ = std::make_unique<Tiling>(Tiling::grid(scan, s.tiles_y, s.tiles_x, halo));
  } else {
    tiling_ = std::make_unique<Tiling>(Tiling::automatic(scan, std::max(s.tiles, world), halo));
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
  zero_order_ = problem_.experiment.zero_order_px.value_or(centred_zero_order(h, w));
  // The gauge needs a zero order known without the specimen (models/phase_ramp.h).
  const auto& gauge = s.phase_ramp_gauge;
  TESSERA_REQUIRE(SettingsError, gauge == "auto" || gauge == "beam" || gauge == "object" || gauge == "off",
                  "the phase-ramp gauge must be auto, beam, object or off, got '", gauge, "'");
  const bool stated = problem_.experiment.zero_order_source != "data";
  gauge_ = gauge == "beam" || (gauge == "auto" && stated)    ? Gauge::beam
           : gauge == "object" || (gauge == "auto" && !stated) ? Gauge::object
                                                               : Gauge::none;
  // The gauge moves a phase ramp between object and probe after each
  // iteration; an optimiser whose moments cannot turn with them would step
  // with a state that no longer fits its parameters. L-BFGS runs without the
  // gauge (its line search rebuilds its curvature pairs anyway).
  TESSERA_REQUIRE(SettingsError,
                  gauge_ == Gauge::none || optimizer_->scaling == StepScaling::LineSearch ||
                      optimizer_state_follows_gauge(*optimizer_),
                  "optimizer '", optimizer_->name, "' keeps a state that the phase-ramp gauge cannot carry when it ",
                  "moves a ramp between object and probe; choose --phase-ramp-gauge off (the object may then keep a ",
                  "ramp the data do not fix) or teach rotate_optimizer_state (train/optimizers.h) its state");
  valid_fft_ = to_fft_order(problem_.valid_mask.to(torch::kBool), zero_order_).to(device);
  // Without excluded pixels the loss needs no mask (its loops skip the select).
  if (!valid_fft_.all().item<bool>()) loss_mask_ = valid_fft_;

  positions_ = scan.positions_px.to(real_dtype_).to(device).clone();
  measured_positions_ = positions_.clone();
  {
    // Said in GiB before anything large is allocated: the allocator's own
    // failure names neither the array nor the option that made it large.
    const double real_bytes = real_dtype_ == torch::kFloat64 ? 8 : 4;
    double object_px = 0, frames_px = 0;
    for (int k : local_tiles_) {
      const Tile& t = tiling_->tile(k);
      object_px += static_cast<double>(t.extent.h) * static_cast<double>(t.extent.w);
      frames_px += static_cast<double>(t.positions.size()) * static_cast<double>(h) * static_cast<double>(w);
    }
    // Object and probe: value, gradient and two optimiser moments, complex.
    const double object_gib = 4 * 2 * real_bytes * static_cast<double>(s.slices) * object_px / (1u << 30);
    const double probe_gib = 4 * 2 * real_bytes * static_cast<double>(s.probe_modes) * h * w / (1u << 30);
    const double frames_gib = 4 * frames_px / (1u << 30);
    const double total_gib = object_gib + probe_gib + frames_gib;
    const double memory_gib = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * ::sysconf(_SC_PAGESIZE) / (1u << 30);
    TESSERA_REQUIRE(SettingsError, !(memory_gib > 0) || total_gib < memory_gib, problem_.source,
                    ": this rank's share of the reconstruction needs at least ", total_gib, " GiB (object of ",
                    s.slices, " slice(s) over ", object_px, " pixels: ", object_gib, " GiB; ", s.probe_modes,
                    " probe mode(s): ", probe_gib, " GiB; frames: ", frames_gib, " GiB) but this machine has ",
                    memory_gib, " GiB; use fewer --slices or --modes, more ranks, or --crop/--bin");
  }
  // Each tile reads only its own patterns.
  for (int k : local_tiles_) {
    auto wk = std::make_unique<TileState>();
    wk->tile = tiling_->tile(k);
    wk->frames = read_frames(wk->tile.positions);
    update_tile_positions(*wk);
    tile_states_.push_back(std::move(wk));
  }

  const int64_t N = scan.num_positions();
  batch_size_ = s.batch_size > 0 ? std::min(s.batch_size, N) : std::max<int64_t>(std::min<int64_t>(N, 32), (N + 7) / 8);
  if (optimizer_->scaling == StepScaling::LineSearch) batch_size_ = N;
  if (gauge_ == Gauge::object) {
    // Pairs (r, r + e) inside the scan's interior whose r this tile owns.
    const Rect in = scan.interior();
    for (auto& wk : tile_states_) {
      const Rect& e = wk->tile.extent;
      auto inside = torch::zeros({e.h, e.w}, torch::TensorOptions().dtype(real_dtype_));
      auto owned = torch::zeros({e.h, e.w}, torch::TensorOptions().dtype(real_dtype_));
      const Rect a = in.intersect(e).relative_to(e), b = in.intersect(wk->tile.owned).relative_to(e);
      if (!a.empty()) inside.slice(0, a.y0, a.y1()).slice(1, a.x0, a.x1()).fill_(1);
      if (!b.empty()) owned.slice(0, b.y0, b.y1()).slice(1, b.x0, b.x1()).fill_(1);
      wk->ramp_weight_y = (owned.slice(0, 0, e.h - 1) * inside.slice(0, 1)).to(device);
      wk->ramp_weight_x = (owned.slice(1, 0, e.w - 1) * inside.slice(1, 1)).to(device);
    }
  }
}

void Reconstruction::make_optimizers() {
  const auto& s = settings_;
  for (auto& wk : tile_states_) {
    wk->object_optimizer = optimizer_->make({wk->model->object_real}, object_rate_);
    wk->probe_optimizer = optimizer_->make({wk->model->probe_real}, probe_rate_);
  }
  if (position_optimizer_info_) {
    update_position_bounds();
    // Adam-type steps are in pixels: a fiftieth of a pixel per step settles
    // below 0.1 pixel yet crosses a few pixels within tens of iterations.
    position_rate_ = s.position_rate > 0 ? s.position_rate : 0.02;
    positions_.requires_grad_(true);
    positions_.mutable_grad() = torch::zeros_like(positions_);
    position_optimizer_ = position_optimizer_info_->make({positions_}, position_rate_);
  }
}

torch::Tensor Reconstruction::read_frames(const std::vector<int64_t>& indices) const {
  const int64_t h = problem_.scan.frame_h, w = problem_.scan.frame_w;
  const auto options = torch::TensorOptions().dtype(real_dtype_).device(settings_.device);
  if (indices.empty()) return torch::zeros({0, h, w}, options);
  auto out = torch::empty({static_cast<int64_t>(indices.size()), h, w}, options);
  for_each_frame_chunk(indices, h * w * 4, [&](int64_t row, const std::vector<int64_t>& piece) {
    auto frames = problem_.read_frames(piece);
    TESSERA_REQUIRE(DataError, frames.dim() == 3 && frames.size(0) == static_cast<int64_t>(piece.size()) &&
                                   frames.size(1) == h && frames.size(2) == w,
                    problem_.source, ": frames have shape ", frames.sizes(), ", expected (", piece.size(), ", ", h,
                    ", ", w, ")");
    to_fft_order_into(frames, zero_order_, out.narrow(0, row, frames.size(0)));
  });
  return out;
}

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

void Reconstruction::release_frames() {
  for (auto& wk : tile_states_) wk->frames = torch::Tensor();
  frames_released_ = true;
}

void Reconstruction::add_prior(std::shared_ptr<Prior> prior, PriorSettings ps) {
  TESSERA_REQUIRE(SettingsError, prior, "add_prior needs a prior");
  TESSERA_REQUIRE(SettingsError, ps.every >= 1, "a denoiser runs every N >= 1 iterations, got ", ps.every);
  TESSERA_REQUIRE(SettingsError, ps.blend >= 0 && ps.blend <= 1, "denoiser blend must be in [0, 1], got ", ps.blend);
  priors_.emplace_back(std::move(prior), ps);
}

torch::Tensor Reconstruction::probe() const {
  return tile_states_.front()->model->probe().detach().clone();
}

torch::Tensor Reconstruction::object() const {
  torch::NoGradGuard no_grad;
  const auto& first = tile_states_.front()->model;
  std::map<int, torch::Tensor> owned;
  for (size_t i = 0; i < tile_states_.size(); ++i) {
    const Tile& t = tiling_->tile(local_tiles_[i]);
    if (t.owned.empty()) continue;
    const Rect o = t.owned.relative_to(t.extent);
    owned[local_tiles_[i]] = tile_states_[i]->model->object().slice(1, o.y0, o.y1()).slice(2, o.x0, o.x1());
  }
  auto object = comm::gather_owned_regions(comm_.get(), *tiling_, rank_of_tile_, owned, first->object_real.size(0),
                                           first->object().options());
  // A phase-only state is pulled towards |O| = 1, the object reported is on it.
  return settings_.object_constraints.phase_only && object.defined() ? unit_modulus(object) : object;
}

int64_t Reconstruction::local_pattern_count() const {
  int64_t n = 0;
  for (auto& wk : tile_states_) n += wk->positions.size(0);
  return n;
}

int64_t Reconstruction::remote_elements_per_step() const {
  const int64_t L = tile_states_.front()->model->object_real.size(0);
  const int64_t probe = tile_states_.front()->model->probe().numel();
  const bool multi = comm_ && comm_->size() > 1;
  return exchange_->remote_elements_per_exchange(L) + exchange_->remote_elements_per_refresh(L) +
         (multi ? probe : 0);
}

}  // namespace tessera
