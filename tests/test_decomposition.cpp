// The paper's claim, checked: the gradient stitched from tiles (own patterns
// on owned region + halo, then the overlap reduction) equals the gradient of
// the undecomposed problem, and so does a whole reconstruction.
#include <gtest/gtest.h>

#include <numeric>

#include "data/simulate.h"
#include "models/losses.h"
#include "models/ptycho_model.h"
#include "src/comm/halo_exchange.h"
#include "src/threads.h"
#include "src/tiling.h"
#include "train/reconstruction.h"

using namespace tessera;

namespace {

struct Problem {
  ScanGeometry geometry;
  torch::Tensor object, probe, measured;
};

Problem random_problem(torch::Dtype complex_dtype, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t frame = 12, n = 49;
  auto real = complex_dtype == torch::kComplexDouble ? torch::kFloat64 : torch::kFloat32;
  // Scattered sub-pixel positions, not on any grid.
  auto pos = torch::rand({n, 2}, torch::kFloat64) * 30.0;
  Problem p;
  p.geometry = ScanGeometry::from_pixels(pos, frame, frame);
  const auto& g = p.geometry;
  p.object = torch::polar(torch::rand({1, g.object_h, g.object_w}, real) * 0.5 + 0.5,
                          torch::randn({1, g.object_h, g.object_w}, real));
  p.probe = torch::randn({2, frame, frame}, complex_dtype);
  p.measured = torch::rand({n, frame, frame}, real) * 4;
  return p;
}

struct Gradients {
  torch::Tensor object, probe;
};

Gradients undecomposed(const Problem& p) {
  PtychoModel m(p.object, p.probe);
  auto pos = p.geometry.positions_px.to(torch::view_as_real(p.object).scalar_type());
  auto loss = loss_by_name("amplitude").function(m->forward(pos), p.measured, {});
  loss.backward();
  return {torch::view_as_complex(m->object_real.grad()), torch::view_as_complex(m->probe_real.grad())};
}

Gradients decomposed(const Problem& p, const Tiling& t) {
  const auto& g = p.geometry;
  std::map<int, torch::Tensor> grads;
  std::vector<PtychoModel> models;
  auto probe_grad = torch::zeros_like(p.probe);
  for (const Tile& tile : t.tiles()) {
    const Rect& e = tile.extent;
    PtychoModel m(p.object.slice(1, e.y0, e.y1()).slice(2, e.x0, e.x1()).contiguous(), p.probe);
    if (!tile.positions.empty()) {
      auto idx = torch::tensor(tile.positions, torch::kInt64);
      auto pos = g.positions_px.index_select(0, idx) -
                 torch::tensor({static_cast<double>(e.y0), static_cast<double>(e.x0)}, torch::kFloat64);
      pos = pos.to(torch::view_as_real(p.object).scalar_type());
      auto loss = loss_by_name("amplitude").function(m->forward(pos), p.measured.index_select(0, idx), {});
      loss.backward();
    }
    auto og = m->object_real.grad();
    grads[tile.index] = og.defined() ? og : torch::zeros_like(m->object_real);
    if (m->probe_real.grad().defined()) probe_grad += torch::view_as_complex(m->probe_real.grad());
    models.push_back(m);
  }
  std::vector<int> all(t.num_tiles()), ranks(t.num_tiles(), 0);
  std::iota(all.begin(), all.end(), 0);
  comm::HaloExchange(t, all, ranks, nullptr).reduce(grads);
  auto stitched = torch::zeros_like(p.object);
  for (const Tile& tile : t.tiles()) {
    const Rect o = tile.owned.relative_to(tile.extent);
    stitched.slice(1, tile.owned.y0, tile.owned.y1()).slice(2, tile.owned.x0, tile.owned.x1()) =
        torch::view_as_complex(grads[tile.index]).slice(1, o.y0, o.y1()).slice(2, o.x0, o.x1());
  }
  return {stitched, probe_grad};
}

double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  return (torch::abs(a - b).pow(2).sum() / torch::abs(b).pow(2).sum()).sqrt().item<double>();
}

void check_tilings(torch::Dtype dtype, double tolerance) {
  auto p = random_problem(dtype, 11);
  const auto full = undecomposed(p);
  const auto& g = p.geometry;
  std::vector<std::pair<std::string, Tiling>> tilings = {
      {"1x1", Tiling::grid(g, 1, 1)},
      {"1x2", Tiling::grid(g, 1, 2)},
      {"2x2", Tiling::grid(g, 2, 2)},
      {"3x2 uneven", Tiling::from_boundaries(g, {0, 7, 20, g.object_h}, {0, 25, g.object_w})},
      {"empty tile", Tiling::from_boundaries(g, {0, 1, g.object_h}, {0, 10, g.object_w})},
      {"fan-out 5x5", Tiling::grid(g, 5, 5)},
  };
  for (auto& [name, t] : tilings) {
    const auto d = decomposed(p, t);
    const double eo = relative_error(d.object, full.object), ep = relative_error(d.probe, full.probe);
    std::printf("  %-12s object gradient rel. error %.2e, probe %.2e\n", name.c_str(), eo, ep);
    EXPECT_LE(eo, tolerance) << name;
    EXPECT_LE(ep, tolerance) << name;
  }
}

}  // namespace

TEST(Decomposition, StitchedGradientIsExactInDouble) { check_tilings(torch::kComplexDouble, 1e-10); }

TEST(Decomposition, StitchedGradientIsExactInFloat) { check_tilings(torch::kComplexFloat, 1e-5); }

TEST(Decomposition, MissingReductionIsDetected) {
  // Without the overlap reduction the owned regions lack the neighbours' halo
  // contributions: the comparison above must be able to fail.
  auto p = random_problem(torch::kComplexDouble, 5);
  const auto full = undecomposed(p);
  auto t = Tiling::grid(p.geometry, 2, 2);
  auto stitched = torch::zeros_like(p.object);
  for (const Tile& tile : t.tiles()) {
    const Rect& e = tile.extent;
    PtychoModel m(p.object.slice(1, e.y0, e.y1()).slice(2, e.x0, e.x1()).contiguous(), p.probe);
    auto idx = torch::tensor(tile.positions, torch::kInt64);
    auto pos = p.geometry.positions_px.index_select(0, idx) -
               torch::tensor({static_cast<double>(e.y0), static_cast<double>(e.x0)}, torch::kFloat64);
    loss_by_name("amplitude").function(m->forward(pos), p.measured.index_select(0, idx), {}).backward();
    const Rect o = tile.owned.relative_to(e);
    stitched.slice(1, tile.owned.y0, tile.owned.y1()).slice(2, tile.owned.x0, tile.owned.x1()) =
        torch::view_as_complex(m->object_real.grad()).slice(1, o.y0, o.y1()).slice(2, o.x0, o.x1());
  }
  EXPECT_GT(relative_error(stitched, full.object), 1e-3);
}

TEST(Decomposition, FourTileReconstructionEqualsUndecomposed) {
  configure_threads(0);
  SimulationSettings sim;
  sim.frame = 32;
  sim.scan_y = sim.scan_x = 10;
  sim.step_px = 3;
  sim.photons = 1e6;
  auto content = simulate(sim);
  auto run = [&](int tiles, const std::string& precision) {
    ReconstructionSettings s;
    s.precision = precision;
    s.iterations = 20;
    s.tiles = tiles;
    s.quiet = true;
    Reconstruction rec(ScanProblem::from_content(content), s);
    for (int i = 0; i < s.iterations; ++i) rec.iterate();
    return std::make_pair(rec.object(), rec.probe());
  };
  // Double: the tiled run is the undecomposed one up to summation order.
  // Float: Adam divides by sqrt(v), which amplifies float rounding
  // differences over 20 iterations (measured ~5e-5), so it gets a looser bound.
  for (auto [precision, bound] : {std::pair<std::string, double>{"double", 1e-10}, {"float", 2e-4}}) {
    auto [o1, p1] = run(1, precision);
    auto [o4, p4] = run(4, precision);
    const double eo = relative_error(o4, o1), ep = relative_error(p4, p1);
    std::printf("  20 iterations (%s), 4 tiles vs 1: object rel. difference %.2e, probe %.2e\n", precision.c_str(),
                eo, ep);
    EXPECT_LE(eo, bound) << precision;
    EXPECT_LE(ep, bound) << precision;
  }
}
