#pragma once
// Tessellation of the object into tiles (the paper's image gradient decomposition).
//
// The object is cut by horizontal and vertical lines into a Ty x Tx grid of
// disjoint owned regions. Each pattern belongs to the tile holding its window
// centre. A tile works on an extended array, its extent: the owned region plus
// a halo just large enough to hold every window footprint of its own patterns.
//
// Why the stitched gradient is exact. The loss is a sum over patterns,
// L = sum_j l_j(S_j O), so dL/dO = sum_j S_j^T g_j, and each term is non-zero
// only on the footprint of window j. Tile k computes G_k = sum_{j in k} S_j^T g_j
// on its extent, which holds all of those footprints, so G_k is complete for
// its own patterns. Every pattern belongs to exactly one tile, hence
// dL/dO = sum_k G_k. On a pixel p owned by tile m, the only non-zero terms come
// from tiles whose extent contains p: m itself and the tiles k with a link
// (k -> m) whose region holds p. Adding the linked halo parts into the owner
// therefore reproduces dL/dO on every owned pixel, up to the order of the
// floating-point sums. After an elementwise optimiser step on owned pixels,
// copying the owner's values back over each link region makes every halo equal
// to the undecomposed object again, so the next iteration starts from the same
// state.
#include <vector>

#include "src/geometry.h"

namespace tessera {

struct Tile {
  int index = 0;
  int row = 0, col = 0;               // place in the grid
  Rect owned;                         // pixels this tile updates
  Rect extent;                        // owned region plus halo: the tile's working array
  std::vector<int64_t> positions;     // global indices of the patterns it owns (ascending)
};

// Gradient on `region` (global pixels) flows from tile `from` (where it lies in
// the halo) to tile `to` (which owns it); updated values flow back.
struct HaloLink {
  int from = 0, to = 0;
  Rect region;
};

// Extra halo (pixels) under HaloPolicy::MovablePositions for positions that
// move within an iteration, before patterns change owner.
constexpr int64_t kMovableMargin = 2;

enum class HaloPolicy {
  FitFootprints,     // smallest halo: the footprints of the tile's own patterns
  MovablePositions,  // fixed halo that holds any window centred in the owned region
};

class Tiling {
 public:
  // Grid with row and column boundaries chosen to balance patterns per tile.
  static Tiling grid(const ScanGeometry& geometry, int tiles_y, int tiles_x,
                     HaloPolicy halo = HaloPolicy::FitFootprints);
  // Grid shape chosen for `num_tiles` tiles (closest to the scan's aspect ratio).
  static Tiling automatic(const ScanGeometry& geometry, int num_tiles,
                          HaloPolicy halo = HaloPolicy::FitFootprints);
  // Explicit boundaries: y_bounds from 0 to object_h, x_bounds from 0 to object_w, non-decreasing.
  static Tiling from_boundaries(const ScanGeometry& geometry, std::vector<int64_t> y_bounds,
                                std::vector<int64_t> x_bounds, HaloPolicy halo = HaloPolicy::FitFootprints);

  // The same tiles with patterns re-assigned to the owners of their moved
  // centres (MovablePositions only, so that extents and links stay the same).
  Tiling reassigned(const ScanGeometry& moved) const;
  HaloPolicy halo_policy() const { return halo_; }

  int num_tiles() const { return static_cast<int>(tiles_.size()); }
  int tiles_y() const { return static_cast<int>(y_bounds_.size()) - 1; }
  int tiles_x() const { return static_cast<int>(x_bounds_.size()) - 1; }
  const std::vector<Tile>& tiles() const { return tiles_; }
  const Tile& tile(int k) const { return tiles_.at(k); }
  const std::vector<HaloLink>& links() const { return links_; }
  // Links whose gradient leaves tile k (its halo) / arrives at tile k (its owned region).
  std::vector<HaloLink> outgoing(int k) const;
  std::vector<HaloLink> incoming(int k) const;
  // Tiles that exchange anything with tile k, ascending.
  std::vector<int> neighbours(int k) const;
  // Owner tile of pattern j.
  int owner_of_position(int64_t j) const { return position_owner_.at(j); }
  const std::vector<int64_t>& y_bounds() const { return y_bounds_; }
  const std::vector<int64_t>& x_bounds() const { return x_bounds_; }

  // Choose a grid shape for n tiles over a region of the given aspect.
  static std::pair<int, int> grid_shape(int num_tiles, double height, double width);

 private:
  std::vector<int64_t> y_bounds_, x_bounds_;
  std::vector<Tile> tiles_;
  std::vector<HaloLink> links_;
  std::vector<int> position_owner_;
  HaloPolicy halo_ = HaloPolicy::FitFootprints;
};

}  // namespace tessera
