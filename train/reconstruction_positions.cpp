// Position refinement: positions as parameters, their bounds, the pixel search, patterns changing tile.
#include "train/reconstruction.h"
#include "train/tile_state.h"

namespace tessera {

void Reconstruction::update_tile_positions(TileState& wk) const {
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
  for (auto& wk : tile_states_) {
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
    update_tile_positions(*wk);
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
  for (auto& wk : tile_states_) {
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

}  // namespace tessera
