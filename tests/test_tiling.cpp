// Tiling geometry: ownership, halos and links for any fan-out.
#include <gtest/gtest.h>

#include <set>

#include "src/error.h"
#include "src/memory_model.h"
#include "src/tiling.h"

using namespace tessera;

namespace {

ScanGeometry raster(int64_t ny, int64_t nx, double step, int64_t frame, double jitter = 0.0, uint64_t seed = 3) {
  torch::manual_seed(seed);
  auto iy = torch::arange(ny, torch::kFloat64).view({-1, 1}).expand({ny, nx}).reshape({-1});
  auto ix = torch::arange(nx, torch::kFloat64).view({1, -1}).expand({ny, nx}).reshape({-1});
  auto pos = torch::stack({iy * step, ix * step}, 1) + (torch::rand({ny * nx, 2}, torch::kFloat64) - 0.5) * 2 * jitter;
  return ScanGeometry::from_pixels(pos, frame, frame);
}

// Invariants every tiling must satisfy.
void check_invariants(const ScanGeometry& g, const Tiling& t) {
  // Owned regions partition the object.
  auto cover = torch::zeros({g.object_h, g.object_w}, torch::kInt32);
  for (const Tile& tile : t.tiles())
    cover.slice(0, tile.owned.y0, tile.owned.y1()).slice(1, tile.owned.x0, tile.owned.x1()) += 1;
  EXPECT_TRUE((cover == 1).all().item<bool>()) << "owned regions must cover every pixel exactly once";
  // Every pattern has exactly one owner, whose extent holds its footprint.
  std::vector<int> owners(g.num_positions(), 0);
  for (const Tile& tile : t.tiles())
    for (int64_t j : tile.positions) {
      owners[j]++;
      EXPECT_TRUE(tile.extent.contains(g.footprint(j))) << "tile " << tile.index << " pattern " << j;
      EXPECT_EQ(t.owner_of_position(j), tile.index);
      auto [cy, cx] = g.centre(j);
      EXPECT_GE(cy, tile.owned.y0);
      EXPECT_GE(cx, tile.owned.x0);
    }
  for (int64_t j = 0; j < g.num_positions(); ++j) EXPECT_EQ(owners[j], 1) << "pattern " << j;
  // Links: exactly the parts of each extent owned by others.
  for (const Tile& k : t.tiles()) {
    int64_t halo = k.extent.area() - k.extent.intersect(k.owned).area();
    int64_t linked = 0;
    for (const auto& l : t.outgoing(k.index)) {
      EXPECT_NE(l.to, k.index);
      EXPECT_TRUE(k.extent.contains(l.region));
      EXPECT_TRUE(t.tile(l.to).owned.contains(l.region));
      linked += l.region.area();
    }
    EXPECT_EQ(linked, halo) << "tile " << k.index << ": every halo pixel belongs to exactly one link";
  }
}

}  // namespace

TEST(Tiling, OneTileIsTheWholeObjectWithoutLinks) {
  auto g = raster(6, 7, 5.0, 16, 0.3);
  auto t = Tiling::grid(g, 1, 1);
  ASSERT_EQ(t.num_tiles(), 1);
  EXPECT_EQ(t.tile(0).owned, (Rect{0, 0, g.object_h, g.object_w}));
  EXPECT_TRUE(t.links().empty());
  EXPECT_EQ(t.tile(0).positions.size(), 42u);
  check_invariants(g, t);
}

TEST(Tiling, GridsBalancePatterns) {
  auto g = raster(12, 12, 4.0, 16, 0.4);
  for (auto [ty, tx] : std::vector<std::pair<int, int>>{{1, 2}, {2, 2}, {3, 2}, {4, 4}}) {
    auto t = Tiling::grid(g, ty, tx);
    check_invariants(g, t);
    for (const Tile& tile : t.tiles())
      EXPECT_NEAR(static_cast<double>(tile.positions.size()), 144.0 / (ty * tx), 144.0 / (ty * tx) * 0.35)
          << ty << "x" << tx << " tile " << tile.index;
  }
}

TEST(Tiling, PositionsExactlyOnABorderHaveOneOwner) {
  // Integer positions: with frame 16 centres fall on integer boundaries.
  auto g = raster(4, 4, 8.0, 16, 0.0);
  std::vector<int64_t> yb{0, g.object_h / 2, g.object_h}, xb{0, g.object_w / 2, g.object_w};
  // Put a boundary exactly on a centre: centre of row 2 = 2 + 16 + 8 = 26 (margin 2).
  auto [cy, cx] = g.centre(2 * 4);
  yb[1] = static_cast<int64_t>(cy);
  ASSERT_EQ(static_cast<double>(yb[1]), cy);
  auto t = Tiling::from_boundaries(g, yb, xb);
  check_invariants(g, t);
  EXPECT_EQ(t.owner_of_position(2 * 4) / 2, 1) << "a centre on a border belongs to the tile below it";
}

TEST(Tiling, EmptyTilesAreAllowed) {
  auto g = raster(5, 5, 5.0, 16, 0.2);
  // The first row of tiles is a 1-pixel strip at the top margin: no centres there.
  auto t = Tiling::from_boundaries(g, {0, 1, g.object_h}, {0, g.object_w / 2, g.object_w});
  check_invariants(g, t);
  EXPECT_TRUE(t.tile(0).positions.empty());
  EXPECT_TRUE(t.tile(1).positions.empty());
  EXPECT_EQ(t.tile(0).extent, t.tile(0).owned) << "a tile without patterns needs no halo";
}

TEST(Tiling, TilesSmallerThanTheWindowReachBeyondEightNeighbours) {
  // 4 patterns per tile, step 4 px, window 32 px: a halo spans several tiles.
  auto g = raster(8, 8, 4.0, 32, 0.3);
  auto t = Tiling::grid(g, 4, 4);
  check_invariants(g, t);
  size_t most = 0;
  for (int k = 0; k < t.num_tiles(); ++k) most = std::max(most, t.neighbours(k).size());
  EXPECT_GT(most, 8u) << "fan-out beyond the 8 direct neighbours must be found from geometry";
}

TEST(Tiling, AutomaticShapeFollowsAspectRatio) {
  EXPECT_EQ(Tiling::grid_shape(4, 100, 100), (std::pair<int, int>{2, 2}));
  EXPECT_EQ(Tiling::grid_shape(6, 100, 150), (std::pair<int, int>{2, 3}));
  EXPECT_EQ(Tiling::grid_shape(7, 100, 100).first * Tiling::grid_shape(7, 100, 100).second, 7);
  EXPECT_THROW(Tiling::grid_shape(0, 1, 1), SettingsError);
}

TEST(Tiling, PaperScalePlanIsFast) {
  // 16632 positions on a 126 x 132 grid into 4158 tiles of 4 patterns.
  auto g = raster(126, 132, 4.0, 128, 0.0);
  auto t = Tiling::automatic(g, 4158);
  EXPECT_EQ(t.num_tiles(), 4158);
  size_t most = 0, least = 1 << 30;
  for (const Tile& tile : t.tiles()) {
    most = std::max(most, tile.positions.size());
    least = std::min(least, tile.positions.size());
  }
  EXPECT_EQ(most, 4u);
  EXPECT_EQ(least, 4u);
  MemoryModelInputs in;
  const auto whole = predict_undecomposed_memory(g, in).total();
  const auto one = predict_tile_memory(t, 2000, 128, 128, in).total();
  EXPECT_GT(whole, 100 * one) << "a 4-pattern tile must need far less than the whole problem";
}

TEST(Tiling, MemoryModelTerms) {
  // 400 patterns of 64² on a 20 x 20 raster, one process, Adam, float.
  auto g = raster(20, 20, 5.0, 64, 0.0);
  MemoryModelInputs in;
  in.batch_size = 400;
  const auto m = predict_undecomposed_memory(g, in);
  const int64_t c = 8, frame = 64 * 64, extent = g.object_h * g.object_w;
  EXPECT_EQ(m.baseline, 0);
  EXPECT_EQ(m.patterns, 400 * frame * 4);
  EXPECT_EQ(m.object, extent * c * 4);
  EXPECT_EQ(m.probe, frame * c * 4);
  // Fused loss, blocks of 4 patterns of 64²: the chunk's window gradients,
  // 16 block probe gradients, the chunk's object gradient, one thread's block
  // (windows, exit waves, far fields and adjoints).
  ASSERT_EQ(fused_loss_block_patterns(1, 64, 64, c), 4);
  EXPECT_EQ(m.intermediates, 64 * frame * c + 16 * frame * c + extent * c + 4 * frame * c * 4);
  in.threads = 3;
  EXPECT_EQ(predict_undecomposed_memory(g, in).intermediates - m.intermediates, 2 * 4 * frame * c * 4);
  in.threads = 1;
  // The process baseline is counted once, in the total.
  in.baseline_bytes = 150 << 20;
  const auto b = predict_undecomposed_memory(g, in);
  EXPECT_EQ(b.baseline, 150 << 20);
  EXPECT_EQ(b.total() - m.total(), 150 << 20);
  // Multislice keeps the autograd form: 2 + 4 M complex arrays per pattern and slice.
  in.slices = 2;
  EXPECT_EQ(predict_undecomposed_memory(g, in).intermediates, 64 * frame * c * (2 * 2 + 4 * 2));
}
