#include "train/reconstruction.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <unistd.h>

#include "models/object_constraints.h"
#include "models/phase_ramp.h"
#include "models/probe_init.h"
#include "models/propagation.h"
#include "models/zero_order.h"
#include "src/comm/communicator.h"
#include "src/comm/setup_agreement.h"
#include "src/error.h"
#include "src/ops/patches.h"
#include "train/frame_chunks.h"

namespace tessera {

struct Reconstruction::TileWorker {
  Tile tile;
  PtychoModel model{nullptr};
  // (n, 2) window corners relative to the tile's extent. With position
  // correction a leaf that collects each pattern's position gradient; the
  // positions themselves live in Reconstruction::positions_ (every rank holds
  // all of them, so a pattern can change tile without moving any state).
  torch::Tensor positions;
  torch::Tensor frames;     // (n, h, w) measured intensities, FFT order
  std::vector<bool> touches_halo;  // per local pattern: its window reaches beyond the owned region
  std::unique_ptr<torch::optim::Optimizer> object_optimizer, probe_optimizer;
  // Object gauge (models/phase_ramp.h): the neighbour pairs this tile counts.
  torch::Tensor ramp_weight_y, ramp_weight_x;
};

namespace {

// Gradients start each step undefined, so that the first backward of the
// step hands its gradient tensor over (autograd's AccumulateGrad steals it)
// instead of a zero-fill and an add pass over the whole array; ensure_grad
// then makes them defined wherever the step must read them.
void clear_grad(torch::Tensor& p) { p.mutable_grad() = torch::Tensor(); }

void ensure_grad(torch::Tensor& p) {
  if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
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
  // The set-up is local to each rank (settings, tiling, its frames); after it
  // ranks meet in collectives, so a rank that failed must say so to all
  // before they start (src/comm/setup_agreement.h).
  comm::agree_on_setup(comm_.get(), [this] { set_up_local_tiles(); });
  const auto& s = settings_;
  initialise_probe_and_object();
  derive_learning_rates();
  make_optimizers();
  exchange_ = std::make_unique<comm::HaloExchange>(*tiling_, local_tiles_, rank_of_tile_, comm_);
  const bool guessed = s.use_file_probe && problem_.probe_guess;
  if (guessed || s.defocus_start == "focused") return;
  // The focused probe from the data, and the aperture any defocus refers to
  // (about the zero order).
  const ProbeStart start{workers_.front()->model->probe().detach().clone(), zero_order_rest(zero_order_)};
  const double radius = aperture_radius_px(start.probe, start.centre);
  if (s.defocus_start == "parallax" && start_from_estimated_defocus(start, radius)) return;
  if (!s.defocus_candidates.empty() && s.defocus_search_iterations > 0 && s.probe_from == 0 &&
      optimizer_->scaling != StepScaling::LineSearch)
    search_probe_defocus(start, radius);
}

bool Reconstruction::start_from_estimated_defocus(const ProbeStart& start, double radius) {
  // Every rank reads the same central block of the scan, but only rank 0's
  // answer is used, so that no rounding difference can split the ranks.
  const auto& positions = problem_.scan.positions_px;
  const auto idx = central_positions(positions);
  auto frames = read_frames(idx).to(torch::kFloat64).cpu();
  auto block = positions.to(torch::kFloat64).cpu().index_select(0, torch::tensor(idx, torch::kInt64));
  defocus_estimate_ = estimate_defocus(frames, valid_fft_.cpu(), block, start.centre, radius);
  auto answer = torch::tensor({defocus_estimate_->reliable ? 1.0 : 0.0, defocus_estimate_->edge_phase_rad},
                              torch::kFloat64);
  if (comm_ && comm_->size() > 1) {
    if (comm_->rank() != 0) answer.zero_();
    comm_->allreduce_sum(answer).wait();
  }
  if (answer[0].item<double>() == 0) return false;
  defocus_estimate_->reliable = true;
  defocus_estimate_->edge_phase_rad = answer[1].item<double>();
  reset(add_defocus(start.probe, defocus_estimate_->edge_phase_rad, radius, start.centre));
  return true;
}

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
  TESSERA_REQUIRE(SettingsError, s.defocus_search_iterations >= 0, "defocus-search-iterations must be >= 0, got ",
                  s.defocus_search_iterations);
  TESSERA_REQUIRE(SettingsError, s.defocus_start == "parallax" || s.defocus_start == "search" ||
                                     s.defocus_start == "focused",
                  "defocus-start must be parallax, search or focused, got '", s.defocus_start, "'");
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
    auto wk = std::make_unique<TileWorker>();
    wk->tile = tiling_->tile(k);
    wk->frames = read_frames(wk->tile.positions);
    update_worker_positions(*wk);
    workers_.push_back(std::move(wk));
  }

  const int64_t N = scan.num_positions();
  batch_size_ = s.batch_size > 0 ? std::min(s.batch_size, N) : std::max<int64_t>(std::min<int64_t>(N, 32), (N + 7) / 8);
  if (optimizer_->scaling == StepScaling::LineSearch) batch_size_ = N;
  if (gauge_ == Gauge::object) {
    // Pairs (r, r + e) inside the scan's interior whose r this tile owns.
    const Rect in = scan.interior();
    for (auto& wk : workers_) {
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
  for (auto& wk : workers_) {
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

void Reconstruction::reset(const torch::Tensor& probe) {
  torch::NoGradGuard no_grad;
  for (auto& wk : workers_) {
    const auto& e = wk->tile.extent;
    auto object = torch::ones({settings_.slices, e.h, e.w}, probe.options());
    wk->model = PtychoModel(object, probe.clone(), slice_transfer_);
  }
  if (position_optimizer_info_) {
    positions_.copy_(measured_positions_);
    problem_.scan.positions_px = positions_.detach().to(torch::kFloat64).cpu().contiguous();
    *tiling_ = tiling_->reassigned(problem_.scan);
    for (auto& wk : workers_) {
      // Back to the patterns (and frames) each tile started with.
      const auto& now = tiling_->tile(wk->tile.index).positions;
      if (now != wk->tile.positions) wk->frames = read_frames(now);
      wk->tile = tiling_->tile(wk->tile.index);
      update_worker_positions(*wk);
    }
    patterns_moved_ = 0;
  }
  iteration_ = 0;
  collective_wait_seconds_ = 0;
  derive_learning_rates();
  make_optimizers();
}

void Reconstruction::search_probe_defocus(const ProbeStart& start, double radius) {
  // The mean pattern fixes the probe's aperture but not its phase. A few
  // iterations from each candidate defocus tell them apart by the data loss
  // (a flat object alone cannot: every candidate fits it equally); every rank
  // sees the same summed losses and so picks the same candidate.
  const auto& [base, centre] = start;
  double best = 0, best_loss = std::numeric_limits<double>::infinity();
  defocus_losses_.clear();
  for (double c : settings_.defocus_candidates) {
    reset(add_defocus(base, c, radius, centre));
    double loss = std::numeric_limits<double>::infinity();
    try {
      for (int i = 0; i < settings_.defocus_search_iterations; ++i) loss = iterate().loss;
    } catch (const Error&) {  // a candidate that diverges is simply not chosen
    }
    if (!std::isfinite(loss)) loss = std::numeric_limits<double>::infinity();
    defocus_losses_.emplace_back(c, loss);
    if (loss < best_loss) best_loss = loss, best = c;
  }
  reset(add_defocus(base, best, radius, centre));
}

Reconstruction::~Reconstruction() = default;

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

void Reconstruction::update_worker_positions(TileWorker& wk) const {
  torch::NoGradGuard no_grad;
  const auto& t = wk.tile;
  auto idx = torch::tensor(t.positions, torch::kInt64).to(positions_.device());
  auto origin = torch::tensor({static_cast<double>(t.extent.y0), static_cast<double>(t.extent.x0)},
                              positions_.options().requires_grad(false));
  wk.positions = (positions_.detach().index_select(0, idx) - origin).contiguous();
  wk.touches_halo.clear();
  for (int64_t j : t.positions) wk.touches_halo.push_back(!t.owned.contains(problem_.scan.footprint(j)));
}

void Reconstruction::reassign_moved_patterns() {
  // A safe point (between iterations, identical on every rank since every rank
  // holds every position): patterns whose window centre left their tile go to
  // the tile that now owns it. The new owner reads the frame from the data
  // file; nothing else belongs to a pattern (its position and that position's
  // optimiser state are global).
  torch::NoGradGuard no_grad;
  problem_.scan.positions_px = positions_.detach().to(torch::kFloat64).cpu().contiguous();
  Tiling moved = tiling_->reassigned(problem_.scan);
  for (auto& wk : workers_) {
    const auto& now = moved.tile(wk->tile.index).positions;
    if (now != wk->tile.positions) {
      std::map<int64_t, int64_t> row;  // global index -> row of the frames held now
      for (size_t i = 0; i < wk->tile.positions.size(); ++i) row[wk->tile.positions[i]] = static_cast<int64_t>(i);
      std::vector<int64_t> arriving;
      for (int64_t j : now)
        if (!row.count(j)) arriving.push_back(j);
      auto fresh = read_frames(arriving);
      std::vector<torch::Tensor> frames;
      size_t a = 0;
      for (int64_t j : now) {
        auto it = row.find(j);
        frames.push_back(it != row.end() ? wk->frames[it->second] : fresh[static_cast<int64_t>(a++)]);
      }
      const auto& e = wk->frames;
      wk->frames = frames.empty() ? torch::zeros({0, e.size(1), e.size(2)}, e.options()) : torch::stack(frames);
      patterns_moved_ += static_cast<int64_t>(arriving.size());
    }
    wk->tile = moved.tile(wk->tile.index);
    update_worker_positions(*wk);
  }
  // Same extents and links: the halo exchange (which refers to *tiling_) is unchanged.
  *tiling_ = std::move(moved);
  update_position_bounds();
}

void Reconstruction::update_position_bounds() {
  // Window corners that keep each footprint (floor(p) .. floor(p) + h + 1)
  // inside its owner's array.
  const auto& scan = problem_.scan;
  const int64_t N = scan.num_positions();
  // Runs at every safe point: filled through accessors, not one tensor op per element.
  auto lo = torch::empty({N, 2}, torch::kFloat64), hi = torch::empty({N, 2}, torch::kFloat64);
  auto l = lo.accessor<double, 2>(), u = hi.accessor<double, 2>();
  for (int64_t j = 0; j < N; ++j) {
    const Rect& e = tiling_->tile(tiling_->owner_of_position(j)).extent;
    l[j][0] = static_cast<double>(e.y0);
    l[j][1] = static_cast<double>(e.x0);
    u[j][0] = static_cast<double>(e.y1() - scan.frame_h - 1);
    u[j][1] = static_cast<double>(e.x1() - scan.frame_w - 1);
  }
  position_lo_ = lo.to(positions_.options().requires_grad(false));
  position_hi_ = hi.to(positions_.options().requires_grad(false));
}

void Reconstruction::constrain_positions() {
  // Position errors common to every pattern (a global shift) are a translation
  // of the object, which the data cannot see: remove it, so that only relative
  // errors are corrected. Then keep each move within the limit.
  torch::NoGradGuard no_grad;
  const auto& scan = problem_.scan;
  auto moved = positions_ - measured_positions_;
  moved -= moved.mean(0, /*keepdim=*/true);
  const double limit = settings_.position_limit_px > 0 ? settings_.position_limit_px
                                                       : 0.25 * static_cast<double>(std::min(scan.frame_h, scan.frame_w));
  moved.clamp_(-limit, limit);
  // Until the next safe point a pattern stays with its tile: its window must
  // stay inside that tile's array (which lies inside the object).
  auto p = torch::max(torch::min(measured_positions_ + moved, position_hi_), position_lo_);
  positions_.copy_(p);
}

void Reconstruction::search_positions() {
  // Each pattern's data loss at its position and at the 8 neighbours one
  // pixel away, under the current object and probe; the best one wins (the
  // current position on ties). Patterns are independent, so each owner
  // searches its own and one sum over ranks tells every rank every move.
  torch::NoGradGuard no_grad;
  std::vector<std::pair<double, double>> offsets{{0, 0}};
  for (int dy = -1; dy <= 1; ++dy)
    for (int dx = -1; dx <= 1; ++dx)
      if (dy || dx) offsets.emplace_back(dy, dx);
  const int64_t C = static_cast<int64_t>(offsets.size());
  auto offs = torch::empty({1, C, 2}, torch::kFloat64);
  for (int64_t c = 0; c < C; ++c) {
    offs[0][c][0] = offsets[c].first;
    offs[0][c][1] = offsets[c].second;
  }
  offs = offs.to(positions_.options().requires_grad(false));
  auto moves = torch::zeros_like(positions_, positions_.options().requires_grad(false));
  const int64_t h = problem_.scan.frame_h, w = problem_.scan.frame_w;
  const int64_t chunk = std::max<int64_t>(1, settings_.chunk_size / C);
  for (auto& wk : workers_) {
    const int64_t n = wk->positions.size(0);
    const auto& e = wk->tile.extent;
    for (int64_t b = 0; b < n; b += chunk) {
      const int64_t m = std::min(n, b + chunk) - b;
      auto current = wk->positions.detach().slice(0, b, b + m);
      auto candidates = (current.unsqueeze(1) + offs).reshape({m * C, 2});
      // Candidates stay inside the tile's array (a clamped one repeats a position).
      candidates.select(1, 0).clamp_(0, static_cast<double>(e.h - h - 1));
      candidates.select(1, 1).clamp_(0, static_cast<double>(e.w - w - 1));
      auto predicted = wk->model->forward(candidates);
      auto measured = wk->frames.slice(0, b, b + m);
      std::vector<int64_t> chosen(m), owners(m);
      for (int64_t i = 0; i < m; ++i) {
        double best = 0;
        int64_t best_c = 0;
        for (int64_t c = 0; c < C; ++c) {
          const double l = loss_->function(predicted.slice(0, i * C + c, i * C + c + 1), measured.slice(0, i, i + 1),
                                           valid_fft_).item<double>();
          if (c == 0 || l < best) best = l, best_c = c;
        }
        chosen[i] = i * C + best_c;
        owners[i] = wk->tile.positions[b + i];
      }
      auto rows = torch::tensor(chosen, torch::kInt64).to(candidates.device());
      moves.index_copy_(0, torch::tensor(owners, torch::kInt64).to(moves.device()),
                        candidates.index_select(0, rows) - current);
    }
  }
  if (comm_ && comm_->size() > 1) {
    auto r = comm_->allreduce_sum(moves);
    wait_collective(r);
  }
  positions_.add_(moves);
  constrain_positions();
}

torch::Tensor Reconstruction::positions() const { return positions_.detach().to(torch::kFloat64).cpu().clone(); }

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
  // Mean measured pattern (FFT order) over every frame of every rank: the
  // probe estimate, and the direct beam's region for the gauge.
  auto sum = torch::zeros({scan.frame_h, scan.frame_w}, torch::kFloat64);
  for (auto& wk : workers_) sum += wk->frames.sum(0).to(torch::kFloat64).cpu();
  if (comm_ && comm_->size() > 1) comm_->allreduce_sum(sum).wait();
  auto mean = sum / static_cast<double>(scan.num_positions());
  mean = torch::where(valid_fft_.cpu(), mean, torch::zeros_like(mean));
  const auto rest = zero_order_rest(zero_order_);
  gauge_rest_ = rest;
  torch::Tensor probe;
  if (s.use_file_probe && problem_.probe_guess) {
    probe = problem_.probe_guess->to(torch::kComplexDouble);
    TESSERA_REQUIRE(DataError, probe.size(-2) == scan.frame_h && probe.size(-1) == scan.frame_w, problem_.source,
                    ": probe guess is ", probe.size(-2), " x ", probe.size(-1), " but frames are ", scan.frame_h,
                    " x ", scan.frame_w);
    if (probe.size(0) < s.probe_modes) {  // extra modes as small perturbations of the first
      // (the far field is in FFT order already, as probe_from_mean_pattern takes it)
      auto extra = probe_from_mean_pattern(torch::view_as_real(far_field(probe[0])).pow(2).sum(-1).to(torch::kFloat32),
                                           s.probe_modes);
      probe = torch::cat({probe, extra.slice(0, probe.size(0)).to(probe.dtype())});
    }
    probe = probe.slice(0, 0, s.probe_modes);
    // A probe guess, from the file or the electron optics, is centred on its
    // own far field; the data's zero order is rarely there. Tilt it onto the
    // zero order (sub-pixel rest; the whole pixels are in the frames' shift).
    const auto now = far_field_centre(probe);
    probe_tilt_px_ = {rest.first - now.first, rest.second - now.second};
    probe = tilt_probe(probe, probe_tilt_px_);
  } else {
    probe = probe_from_mean_pattern(mean, s.probe_modes);
  }
  probe = probe.to(complex_dtype).to(device);
  if (s.slices > 1) {
    const auto& g = problem_.experiment;
    slice_transfer_ = fresnel_transfer_function(scan.frame_h, scan.frame_w, g.pixel_y_m(), g.pixel_x_m(),
                                                g.wavelength_m, s.slice_thickness_m, complex_dtype);
  }
  for (auto& wk : workers_) {
    const auto& e = wk->tile.extent;
    auto object = torch::ones({s.slices, e.h, e.w}, torch::TensorOptions().dtype(complex_dtype).device(device));
    wk->model = PtychoModel(object, probe.clone(), slice_transfer_);
  }
}

std::map<int, torch::Tensor> Reconstruction::illumination() const {
  torch::NoGradGuard no_grad;
  std::map<int, torch::Tensor> illum;
  for (auto& wk : workers_) {
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
      auto illum = illumination();
      double meas_max = 0;
      for (auto& wk : workers_)
        if (wk->positions.size(0)) meas_max = std::max(meas_max, wk->frames.max().item<double>());
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
  const bool refine_positions = refining_positions();
  for (auto& wk : workers_) {
    wk->model->probe_real.requires_grad_(refine_probe);
    wk->positions.requires_grad_(refine_positions);
    clear_grad(wk->model->object_real);
    clear_grad(wk->model->probe_real);
    clear_grad(wk->positions);
  }
  double loss_sum = 0;
  const double scale = 1.0 / static_cast<double>(global_batch_size);
  auto run = [&](TileWorker& wk, const std::vector<int64_t>& idx) {
    for (size_t b = 0; b < idx.size(); b += settings_.chunk_size) {
      const size_t e = std::min(idx.size(), b + static_cast<size_t>(settings_.chunk_size));
      auto sel = torch::tensor(std::vector<int64_t>(idx.begin() + b, idx.begin() + e), torch::kInt64)
                     .to(wk.positions.device());
      auto loss = wk.model->data_loss(wk.positions.index_select(0, sel), wk.frames, loss_mask_, *loss_, sel, scale);
      loss.backward();
      loss_sum += loss.item<double>() / scale;
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
  // Only tiles with neighbours need their gradient array now; the others
  // (a run's only tile) let the interior patterns' first backward hand its
  // gradient over.
  std::map<int, torch::Tensor> grads;
  for (auto& wk : workers_) {
    if (!exchange_->exchanges(wk->tile.index)) continue;
    ensure_grad(wk->model->object_real);
    grads[wk->tile.index] = wk->model->object_real.grad();
  }
  exchange_->start_reduction(grads);
  for (size_t w = 0; w < workers_.size(); ++w) run(*workers_[w], interior[w]);
  for (auto& wk : workers_) ensure_grad(wk->model->object_real);
  // The probe is shared by every pattern: its gradient is the sum over tiles,
  // complete once every local pattern ran. One allreduce per step carries it
  // and the loss (in the working precision; the loss alone in double), in
  // flight while the halo reduction finishes: the only synchronisation point
  // of a step besides the halos.
  const bool multi = comm_ && comm_->size() > 1;
  // A lone tile on a lone rank already holds the probe's total gradient.
  const bool sum_probe = refine_probe && (multi || workers_.size() > 1);
  if (refine_probe)
    for (auto& wk : workers_) ensure_grad(wk->model->probe_real);
  torch::Tensor probe_total;
  if (sum_probe) {
    for (auto& wk : workers_) {
      if (!probe_total.defined())
        probe_total = wk->model->probe_real.grad().clone();
      else
        probe_total += wk->model->probe_real.grad();
    }
  }
  // Each position's gradient comes from its own pattern, on the one tile that
  // owns it; the batch's rows, summed over ranks, give every rank all of them.
  torch::Tensor batch_rows, position_grads;
  if (refine_positions) {
    position_grads = torch::zeros({static_cast<int64_t>(batch.size()), 2}, positions_.options().requires_grad(false));
    std::map<int64_t, int64_t> slot;
    for (size_t i = 0; i < batch.size(); ++i) slot[batch[i]] = static_cast<int64_t>(i);
    for (auto& wk : workers_) {
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
      position_grads.index_copy_(0, sl, wk->positions.grad().index_select(0, r));
    }
    batch_rows = torch::tensor(batch, torch::kInt64).to(positions_.device());
  }
  torch::Tensor packed;
  comm::Request sum;
  if (multi) {
    const auto opts = refine_probe || refine_positions ? positions_.options().requires_grad(false)
                                   : torch::TensorOptions().dtype(torch::kFloat64).device(workers_.front()->positions.device());
    std::vector<torch::Tensor> parts;
    if (refine_probe) parts.push_back(probe_total.flatten());
    if (refine_positions) parts.push_back(position_grads.flatten());
    parts.push_back(torch::full({1}, loss_sum, opts));
    packed = torch::cat(parts);
    sum = comm_->allreduce_sum(packed);
  }
  exchange_->finish_reduction(grads);
  if (multi) {
    wait_collective(sum);
    loss_sum = packed[-1].item<double>();
    int64_t at = 0;
    if (refine_probe) {
      probe_total = packed.slice(0, 0, probe_total.numel()).view(probe_total.sizes());
      at = probe_total.numel();
    }
    if (refine_positions) position_grads = packed.slice(0, at, at + position_grads.numel()).view(position_grads.sizes());
  }
  if (sum_probe)
    for (auto& wk : workers_) wk->model->probe_real.mutable_grad().copy_(probe_total);
  if (refine_positions) {
    positions_.mutable_grad().zero_();
    positions_.mutable_grad().index_copy_(0, batch_rows, position_grads);
  }
  return loss_sum;  // over every rank
}

void Reconstruction::release_frames() {
  for (auto& wk : workers_) wk->frames = torch::Tensor();
  frames_released_ = true;
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
      if (refining_positions()) {
        position_optimizer_->step();
        constrain_positions();
        for (auto& wk : workers_) update_worker_positions(*wk);
      }
    }
    for (auto& wk : workers_) apply_object_constraints(wk->model->object_real, settings_.object_constraints);
    std::map<int, torch::Tensor> objects;
    for (auto& wk : workers_) objects[wk->tile.index] = wk->model->object_real;
    exchange_->refresh(objects);
    total_loss += batch_loss;
  }
  apply_denoisers();
  // The phase ramp the data cannot fix leaves the object for the probe, optimiser state along (models/phase_ramp.h).
  if (refine_probe && gauge_ == Gauge::object && optimizer_->scaling != StepScaling::LineSearch) {
    PhaseStepSums sums;
    for (auto& wk : workers_) {
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
    for (auto& wk : workers_) {  // -k "to the object" takes k off it, onto the probe
      const auto u = move_phase_ramp_to_object(wk->model->probe_real, wk->model->object_real, wk->tile.extent,
                                               {-k.first, -k.second});
      rotate_optimizer_state(*wk->probe_optimizer, wk->model->probe_real, u.probe);
      rotate_optimizer_state(*wk->object_optimizer, wk->model->object_real, u.object);
    }
  }
  if (refine_probe && gauge_ == Gauge::beam && optimizer_->scaling != StepScaling::LineSearch) {
    // The probe untilted by the zero order's rest is centred when right: for
    // the true probe exactly (its pupil is symmetric), even where it does not
    // fade before the window's edge and a tilt is not a whole-pixel shift.
    auto probe = torch::view_as_complex(workers_.front()->model->probe_real.detach());
    const auto off = probe_phase_ramp(tilt_probe(probe, {-gauge_rest_.first, -gauge_rest_.second}));
    for (auto& wk : workers_) {
      const auto u = move_phase_ramp_to_object(wk->model->probe_real, wk->model->object_real, wk->tile.extent, off);
      rotate_optimizer_state(*wk->probe_optimizer, wk->model->probe_real, u.probe);
      rotate_optimizer_state(*wk->object_optimizer, wk->model->object_real, u.object);
    }
  }
  const int64_t modes = workers_.front()->model->probe_real.size(0);
  if (refine_probe && modes > 1 && settings_.orthogonalise_every > 0 &&
      (iteration_ + 1) % settings_.orthogonalise_every == 0) {
    // Keep the incoherent modes orthogonal: otherwise they drift towards one
    // another and the mixed state collapses. Every tile holds the same probe,
    // so every tile computes the same rotation.
    torch::NoGradGuard no_grad;
    for (auto& wk : workers_) {
      auto& p = wk->model->probe_real;
      p.copy_(torch::view_as_real(orthogonalise_modes(torch::view_as_complex(p)).contiguous()));
    }
  }
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
    // L-BFGS keeps tensors that its early exits leave undefined, which
    // torch::optim cannot serialise; its history is rebuilt within a few
    // steps after a resume (so an L-BFGS resume is not bit for bit).
    const bool keep = optimizer_->scaling != StepScaling::LineSearch;
    s[key + "/object"] = keep ? serialise(*wk->object_optimizer) : std::string();
    s[key + "/probe"] = keep ? serialise(*wk->probe_optimizer) : std::string();
  }
  if (position_optimizer_) s["scan/positions"] = serialise(*position_optimizer_);
  return s;
}

bool Reconstruction::restore(const torch::Tensor& object, const torch::Tensor& probe, int iteration,
                             const OptimizerStates& states, const torch::Tensor& positions) {
  torch::NoGradGuard no_grad;
  const auto& scan = problem_.scan;
  TESSERA_REQUIRE(DataError, object.dim() == 3 && object.size(1) == scan.object_h && object.size(2) == scan.object_w,
                  "the result to resume holds an object of shape ", object.sizes(), " but this data set needs (L, ",
                  scan.object_h, ", ", scan.object_w, ")");
  TESSERA_REQUIRE(SettingsError, object.size(0) == settings_.slices, "the result to resume holds ", object.size(0),
                  " object slice(s) but this run has --slices ", settings_.slices, "; resume with --slices ",
                  object.size(0));
  const auto run_probe = workers_.front()->model->probe().sizes();
  TESSERA_REQUIRE(SettingsError, probe.dim() != 3 || probe.size(0) == run_probe[0],
                  "the result to resume holds ", probe.size(0), " probe mode(s) but this run has --modes ",
                  run_probe[0], "; resume with --modes ", probe.size(0));
  TESSERA_REQUIRE(DataError, probe.sizes() == run_probe, "the result to resume holds a probe of shape ",
                  probe.sizes(), " but the run uses ", run_probe);
  TESSERA_REQUIRE(DataError, iteration >= 0, "the result to resume has a negative iteration count ", iteration);
  // Everything is checked before any state is taken over: the optimisers'
  // steps read their state through raw pointers, sized by the parameter.
  bool states_fit = true;
  for (auto& wk : workers_) {
    const std::string key = "tile_" + std::to_string(wk->tile.index);
    auto o = states.find(key + "/object"), p = states.find(key + "/probe");
    if (o == states.end() || p == states.end()) {
      states_fit = false;
      continue;
    }
    try {
      if (!o->second.empty()) deserialise(*wk->object_optimizer, o->second);
      if (!p->second.empty()) deserialise(*wk->probe_optimizer, p->second);
      states_fit = states_fit && optimizer_state_mismatch(*wk->object_optimizer).empty() &&
                   optimizer_state_mismatch(*wk->probe_optimizer).empty();
    } catch (const std::exception&) {
      states_fit = false;
    }
  }
  // One answer for all ranks: a re-tiled resume starts every tile's optimiser afresh.
  states_fit = reduce_max(states_fit ? 0.0 : 1.0) == 0.0;
  if (!states_fit)
    for (auto& wk : workers_) {
      wk->object_optimizer = optimizer_->make({wk->model->object_real}, object_rate_);
      wk->probe_optimizer = optimizer_->make({wk->model->probe_real}, probe_rate_);
    }
  if (position_optimizer_) {
    TESSERA_REQUIRE(DataError, positions.defined() && positions.sizes() == positions_.sizes(),
                    "the result to resume holds no refined positions for the ", positions_.size(0), " patterns");
    TESSERA_REQUIRE(DataError, torch::isfinite(positions).all().item<bool>(),
                    "the result to resume holds refined positions that are not finite numbers");
    auto it = states.find("scan/positions");
    TESSERA_REQUIRE(DataError, it != states.end(),
                    "the result to resume has no position optimizer state: it was not run with position correction");
    try {
      deserialise(*position_optimizer_, it->second);
    } catch (const std::exception& e) {
      throw DataError(std::string("the result to resume has a damaged position optimizer state: ") + e.what());
    }
    TESSERA_REQUIRE(DataError, optimizer_state_mismatch(*position_optimizer_).empty(),
                    "the result to resume has a position optimizer state that does not fit this run: ",
                    optimizer_state_mismatch(*position_optimizer_));
    positions_.copy_(positions.to(positions_.options().requires_grad(false)));
  }
  for (auto& wk : workers_) {
    const Rect& e = wk->tile.extent;
    auto part = object.slice(1, e.y0, e.y1()).slice(2, e.x0, e.x1());
    wk->model->object_real.copy_(torch::view_as_real(part.to(wk->model->object().dtype()).contiguous()));
    wk->model->probe_real.copy_(torch::view_as_real(probe.to(wk->model->probe().dtype()).contiguous()));
  }
  if (position_optimizer_) reassign_moved_patterns();
  iteration_ = iteration;
  return states_fit;
}

}  // namespace tessera
