#include "src/tiling.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "src/error.h"

namespace tessera {
namespace {

// Boundaries [0, b1, ..., size] that split the sorted centres into `parts`
// groups of (nearly) equal count; a boundary sits between two neighbouring
// centres so that the split does not depend on floating-point ties.
std::vector<int64_t> balanced_bounds(std::vector<double> centres, int parts, int64_t size) {
  std::sort(centres.begin(), centres.end());
  std::vector<int64_t> b{0};
  const int64_t n = static_cast<int64_t>(centres.size());
  for (int i = 1; i < parts; ++i) {
    int64_t cut;
    if (n == 0) {
      cut = size * i / parts;
    } else {
      const int64_t k = std::clamp<int64_t>(n * i / parts, 0, n - 1);
      const double lo = k > 0 ? centres[k - 1] : centres[k];
      cut = static_cast<int64_t>(std::ceil(0.5 * (lo + centres[k])));
      if (k > 0 && cut <= lo) cut = static_cast<int64_t>(std::floor(lo)) + 1;
    }
    b.push_back(std::clamp<int64_t>(std::max(cut, b.back()), 0, size));
  }
  b.push_back(size);
  return b;
}

// Index i with bounds[i] <= v < bounds[i+1] (the last part takes v == size).
int part_of(const std::vector<int64_t>& bounds, double v) {
  auto it = std::upper_bound(bounds.begin(), bounds.end(), v);
  int i = static_cast<int>(it - bounds.begin()) - 1;
  return std::clamp(i, 0, static_cast<int>(bounds.size()) - 2);
}

}  // namespace

std::pair<int, int> Tiling::grid_shape(int num_tiles, double height, double width) {
  TESSERA_REQUIRE(SettingsError, num_tiles >= 1, "number of tiles must be at least 1, got ", num_tiles);
  std::pair<int, int> best{1, num_tiles};
  double best_cost = 1e300;
  for (int ty = 1; ty <= num_tiles; ++ty) {
    if (num_tiles % ty) continue;
    const int tx = num_tiles / ty;
    // Square tiles keep halos (perimeter) smallest for a given area.
    const double cost = std::abs(std::log((height / ty) / (width / tx)));
    if (cost < best_cost - 1e-12) best_cost = cost, best = {ty, tx};
  }
  return best;
}

Tiling Tiling::automatic(const ScanGeometry& g, int num_tiles, HaloPolicy halo) {
  const Rect r = g.scanned_region();
  auto [ty, tx] = grid_shape(num_tiles, static_cast<double>(r.h), static_cast<double>(r.w));
  return grid(g, ty, tx, halo);
}

Tiling Tiling::grid(const ScanGeometry& g, int tiles_y, int tiles_x, HaloPolicy halo) {
  TESSERA_REQUIRE(SettingsError, tiles_y >= 1 && tiles_x >= 1, "tile grid must be at least 1 x 1, got ",
                  tiles_y, " x ", tiles_x);
  TESSERA_REQUIRE(SettingsError, tiles_y <= g.object_h && tiles_x <= g.object_w, "tile grid ", tiles_y,
                  " x ", tiles_x, " is finer than the object (", g.object_h, " x ", g.object_w, " pixels)");
  std::vector<double> cy, cx;
  for (int64_t j = 0; j < g.num_positions(); ++j) {
    auto c = g.centre(j);
    cy.push_back(c.first);
    cx.push_back(c.second);
  }
  return from_boundaries(g, balanced_bounds(cy, tiles_y, g.object_h),
                         balanced_bounds(cx, tiles_x, g.object_w), halo);
}

Tiling Tiling::reassigned(const ScanGeometry& moved) const {
  TESSERA_REQUIRE(Error, halo_ == HaloPolicy::MovablePositions,
                  "patterns can change tile only with a tiling made for movable positions");
  Tiling t = from_boundaries(moved, y_bounds_, x_bounds_, halo_);
  for (int k = 0; k < num_tiles(); ++k)
    TESSERA_REQUIRE(Error, t.tiles_[k].extent == tiles_[k].extent, "tile ", k, " changed its extent from ",
                    tiles_[k].extent.str(), " to ", t.tiles_[k].extent.str(), " when patterns moved");
  return t;
}

Tiling Tiling::from_boundaries(const ScanGeometry& g, std::vector<int64_t> yb, std::vector<int64_t> xb,
                               HaloPolicy halo) {
  auto check = [](const std::vector<int64_t>& b, int64_t size, const char* axis) {
    TESSERA_REQUIRE(SettingsError, b.size() >= 2 && b.front() == 0 && b.back() == size,
                    "tile boundaries along ", axis, " must run from 0 to ", size);
    TESSERA_REQUIRE(SettingsError, std::is_sorted(b.begin(), b.end()), "tile boundaries along ", axis,
                    " must not decrease");
  };
  check(yb, g.object_h, "y");
  check(xb, g.object_w, "x");
  Tiling t;
  t.halo_ = halo;
  t.y_bounds_ = std::move(yb);
  t.x_bounds_ = std::move(xb);
  const int ty = t.tiles_y(), tx = t.tiles_x();
  for (int r = 0; r < ty; ++r)
    for (int c = 0; c < tx; ++c) {
      Tile tile;
      tile.index = r * tx + c;
      tile.row = r;
      tile.col = c;
      tile.owned = {t.y_bounds_[r], t.x_bounds_[c], t.y_bounds_[r + 1] - t.y_bounds_[r],
                    t.x_bounds_[c + 1] - t.x_bounds_[c]};
      tile.extent = tile.owned;
      t.tiles_.push_back(tile);
    }
  const Rect object{0, 0, g.object_h, g.object_w};
  if (halo == HaloPolicy::MovablePositions) {
    // A centre c in [y0, y1) puts the window corner at c - h/2, so its
    // footprint floor(corner) .. floor(corner) + h + 1 lies within
    // [y0 - ceil(h/2), y1 + ceil(h/2) + 1): that halo holds any pattern the
    // tile can come to own, whatever its positions do. A few pixels more let
    // a position step past the border between two safe points (where owners
    // change) without leaving its owner's array.
    const int64_t hy = (g.frame_h + 1) / 2 + kMovableMargin, hx = (g.frame_w + 1) / 2 + kMovableMargin;
    for (Tile& tile : t.tiles_) {
      if (tile.owned.empty()) continue;
      const Rect& o = tile.owned;
      tile.extent = Rect{o.y0 - hy, o.x0 - hx, o.h + 2 * hy + 1, o.w + 2 * hx + 1}.intersect(object);
    }
  }
  t.position_owner_.resize(g.num_positions());
  for (int64_t j = 0; j < g.num_positions(); ++j) {
    auto [cy, cx] = g.centre(j);
    const int k = part_of(t.y_bounds_, cy) * tx + part_of(t.x_bounds_, cx);
    const Rect fp = g.footprint(j);
    TESSERA_REQUIRE(Error, object.contains(fp), "window ", j, " at ", fp.str(),
                    " lies outside the object (", g.object_h, " x ", g.object_w, ")");
    t.position_owner_[j] = k;
    t.tiles_[k].positions.push_back(j);
    // Empty owned regions stay empty extents only if they own nothing.
    if (halo == HaloPolicy::FitFootprints) t.tiles_[k].extent = t.tiles_[k].extent.bounding_union(fp);
    TESSERA_REQUIRE(Error, t.tiles_[k].extent.contains(fp), "window ", j, " at ", fp.str(),
                    " does not fit the working array ", t.tiles_[k].extent.str(), " of tile ", k);
  }
  // Links: the parts of each extent owned by other tiles. Only grid cells that
  // the extent overlaps are visited, so this is linear in the number of links
  // whatever the fan-out.
  for (const Tile& k : t.tiles_) {
    if (k.extent.empty()) continue;
    const int r0 = part_of(t.y_bounds_, static_cast<double>(k.extent.y0));
    const int r1 = part_of(t.y_bounds_, static_cast<double>(k.extent.y1() - 1));
    const int c0 = part_of(t.x_bounds_, static_cast<double>(k.extent.x0));
    const int c1 = part_of(t.x_bounds_, static_cast<double>(k.extent.x1() - 1));
    for (int r = r0; r <= r1; ++r)
      for (int c = c0; c <= c1; ++c) {
        const int m = r * tx + c;
        if (m == k.index) continue;
        const Rect region = k.extent.intersect(t.tiles_[m].owned);
        if (!region.empty()) t.links_.push_back({k.index, m, region});
      }
  }
  return t;
}

std::vector<HaloLink> Tiling::outgoing(int k) const {
  std::vector<HaloLink> out;
  for (const auto& l : links_)
    if (l.from == k) out.push_back(l);
  return out;
}

std::vector<HaloLink> Tiling::incoming(int k) const {
  std::vector<HaloLink> out;
  for (const auto& l : links_)
    if (l.to == k) out.push_back(l);
  return out;
}

std::vector<int> Tiling::neighbours(int k) const {
  std::set<int> s;
  for (const auto& l : links_) {
    if (l.from == k) s.insert(l.to);
    if (l.to == k) s.insert(l.from);
  }
  return {s.begin(), s.end()};
}

}  // namespace tessera
