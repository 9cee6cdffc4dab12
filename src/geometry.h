#pragma once
// Object-plane geometry: rectangles of object pixels and where each probe
// window sits. All coordinates are in object pixels, [y, x], row-major.
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace tessera {

struct Rect {
  int64_t y0 = 0, x0 = 0, h = 0, w = 0;

  int64_t y1() const { return y0 + h; }
  int64_t x1() const { return x0 + w; }
  int64_t area() const { return h > 0 && w > 0 ? h * w : 0; }
  bool empty() const { return area() == 0; }
  bool contains(const Rect& r) const {
    return r.y0 >= y0 && r.x0 >= x0 && r.y1() <= y1() && r.x1() <= x1();
  }
  Rect intersect(const Rect& r) const;
  Rect bounding_union(const Rect& r) const;  // smallest rect holding both (empty ones ignored)
  Rect relative_to(const Rect& origin) const { return {y0 - origin.y0, x0 - origin.x0, h, w}; }
  bool operator==(const Rect& r) const { return y0 == r.y0 && x0 == r.x0 && h == r.h && w == r.w; }
  std::string str() const;
};

// Where the windows of a scan sit on the object, in pixels.
struct ScanGeometry {
  int64_t frame_h = 0, frame_w = 0;    // probe window (= frame) size
  int64_t object_h = 0, object_w = 0;  // whole object array
  torch::Tensor positions_px;          // (N, 2) float64 holding float32 values, [y, x] of each window's top-left corner

  int64_t num_positions() const { return positions_px.size(0); }

  // Window footprint of position j: the pixels the bilinear window reads,
  // floor(p) .. floor(p) + frame (one extra row and column for the sub-pixel part).
  Rect footprint(int64_t j) const;
  // Centre of window j, which decides the tile that owns the pattern.
  std::pair<double, double> centre(int64_t j) const;

  // Scan positions in metres (probe centres, [y, x]) to window corners in
  // pixels, with `margin` free pixels around the outermost windows.
  static ScanGeometry from_metres(const torch::Tensor& positions_m, double pixel_y_m, double pixel_x_m,
                                  int64_t frame_h, int64_t frame_w, int64_t margin = 2);
  // Window corners already in pixels; the object is sized to hold every footprint plus margin.
  static ScanGeometry from_pixels(const torch::Tensor& positions_px, int64_t frame_h, int64_t frame_w,
                                  int64_t margin = 2);
  // Rect covering every window footprint.
  Rect scanned_region() const;
  // The well-lit interior: the scanned region less a quarter window on each
  // side, where every pixel is seen by several probe positions (empty when
  // that leaves less than 2 x 2 pixels).
  Rect interior() const;
};

}  // namespace tessera
