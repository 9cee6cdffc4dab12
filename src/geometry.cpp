#include "src/geometry.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "src/error.h"

namespace tessera {

Rect Rect::intersect(const Rect& r) const {
  const int64_t ya = std::max(y0, r.y0), xa = std::max(x0, r.x0);
  const int64_t yb = std::min(y1(), r.y1()), xb = std::min(x1(), r.x1());
  if (yb <= ya || xb <= xa) return {ya, xa, 0, 0};
  return {ya, xa, yb - ya, xb - xa};
}

Rect Rect::bounding_union(const Rect& r) const {
  if (empty()) return r;
  if (r.empty()) return *this;
  const int64_t ya = std::min(y0, r.y0), xa = std::min(x0, r.x0);
  return {ya, xa, std::max(y1(), r.y1()) - ya, std::max(x1(), r.x1()) - xa};
}

std::string Rect::str() const {
  std::ostringstream s;
  s << "[y " << y0 << ":" << y1() << ", x " << x0 << ":" << x1() << "]";
  return s.str();
}

Rect ScanGeometry::footprint(int64_t j) const {
  auto p = positions_px.accessor<double, 2>();
  return {static_cast<int64_t>(std::floor(p[j][0])), static_cast<int64_t>(std::floor(p[j][1])),
          frame_h + 1, frame_w + 1};
}

std::pair<double, double> ScanGeometry::centre(int64_t j) const {
  auto p = positions_px.accessor<double, 2>();
  return {p[j][0] + 0.5 * frame_h, p[j][1] + 0.5 * frame_w};
}

Rect ScanGeometry::scanned_region() const {
  Rect r;
  for (int64_t j = 0; j < num_positions(); ++j) r = r.bounding_union(footprint(j));
  return r;
}

Rect ScanGeometry::interior() const {
  const Rect r = scanned_region();
  const Rect in{r.y0 + frame_h / 4, r.x0 + frame_w / 4, r.h - frame_h / 2, r.w - frame_w / 2};
  return in.h >= 2 && in.w >= 2 ? in : Rect{};
}

ScanGeometry ScanGeometry::from_pixels(const torch::Tensor& positions_px, int64_t frame_h,
                                       int64_t frame_w, int64_t margin) {
  TESSERA_REQUIRE(Error, positions_px.dim() == 2 && positions_px.size(1) == 2,
                  "scan positions must be an (N, 2) array of [y, x], got ", positions_px.sizes());
  TESSERA_REQUIRE(Error, positions_px.size(0) > 0, "the scan has no positions");
  TESSERA_REQUIRE(Error, frame_h > 0 && frame_w > 0, "frame size must be positive");
  auto pos = positions_px.to(torch::kFloat64).contiguous().clone();
  TESSERA_REQUIRE(Error, torch::isfinite(pos).all().item<bool>(), "scan positions contain NaN or Inf");
  // Shift so that the outermost windows start `margin` pixels inside the object.
  auto lo = std::get<0>(pos.min(0));
  pos -= lo.floor() - static_cast<double>(margin);
  // The kernels read positions in float32 at single precision: round them to
  // float32 here, so that footprints (computed from these values in double)
  // and kernels see the same numbers. Otherwise a corner just below an
  // integer rounds up in float32 and the window leaves the footprint and its tile.
  pos = pos.to(torch::kFloat32).to(torch::kFloat64);
  ScanGeometry g;
  g.frame_h = frame_h;
  g.frame_w = frame_w;
  g.positions_px = pos;
  auto hi = std::get<0>(pos.max(0));
  g.object_h = static_cast<int64_t>(std::floor(hi[0].item<double>())) + frame_h + 1 + margin;
  g.object_w = static_cast<int64_t>(std::floor(hi[1].item<double>())) + frame_w + 1 + margin;
  return g;
}

ScanGeometry ScanGeometry::from_metres(const torch::Tensor& positions_m, double pixel_y_m,
                                       double pixel_x_m, int64_t frame_h, int64_t frame_w,
                                       int64_t margin) {
  TESSERA_REQUIRE(Error, pixel_y_m > 0 && pixel_x_m > 0 && std::isfinite(pixel_y_m) && std::isfinite(pixel_x_m),
                  "sample-plane pixel size must be positive and finite, got ", pixel_y_m, " x ", pixel_x_m, " m");
  auto pos = positions_m.to(torch::kFloat64);
  auto px = torch::stack({pos.select(1, 0) / pixel_y_m - 0.5 * frame_h,
                          pos.select(1, 1) / pixel_x_m - 0.5 * frame_w}, 1);
  return from_pixels(px, frame_h, frame_w, margin);
}

}  // namespace tessera
