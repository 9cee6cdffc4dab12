#pragma once
// Cropping and binning of diffraction patterns at load time, for any format.
//
// Crop: a window of crop_h × crop_w pixels centred on the zero order (the
// pixel nearest to it; [h/2, w/2] when it is not known), which lands on
// [crop_h/2, crop_w/2]. Real detectors are not centred on the beam, and a
// crop centred on the frame would cut one side of the pattern. The reciprocal pixel Δk is unchanged, so the sample pixel
// 1 / (N Δk) grows by h / crop_h: cropping trades resolution for speed.
//
// Bin: sums b × b pixels per output pixel, N / b output pixels (rounded
// down), Δk becomes b Δk, so the sample pixel 1 / (N Δk) is unchanged while
// the probe window shrinks to N / b pixels of the same size (it must still
// hold the probe). The bins are centred on the zero order so that it stays
// exactly at the centre pixel [N/(2b)] of the output: for an odd b each bin is
// b whole pixels; for an even b a bin is b - 1 whole pixels plus half of each
// pixel on its two edges (a box of width b centred on a pixel; every pixel
// still contributes a total weight of 1). Plain blocks would put the zero
// order (b - 1) / (2b) of an output pixel off centre, a sub-pixel shift that
// the forward model, whose zero order is a pixel centre, would have to
// explain with a phase ramp on the probe or the object.
//
// Bad pixels under binning: an output pixel is the weighted sum over the good
// pixels of its bin, rescaled by (b² / good weight) so that it estimates the
// full bin; it is bad only when less than half of its weight is good (a single
// good pixel scaled by b² would carry b² times its Poisson noise). Bins that
// reach past the pattern's edge are treated the same way. Bad pixels are 0 in
// the output, like the readers leave them.
//
// Geometry: X-ray (distance + detector pixel) geometry takes the binned
// detector pixel b p; electron (reciprocal) calibration takes b Δk; both then
// give the sample pixel through ExperimentGeometry::pixel_*_m().
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include <torch/torch.h>

#include "data/scan_data.h"

namespace tessera {

class PatternReduction {
 public:
  PatternReduction() = default;
  // Plans the reduction of h × w patterns: crop_h, crop_w = 0 keep the full
  // size; bin >= 1. Throws SettingsError (naming `source`) when the crop is
  // larger than the patterns or leaves fewer than 8 binned pixels. zero_order:
  // [y, x] detector pixels of the zero order (default [h/2, w/2]).
  PatternReduction(int64_t h, int64_t w, int64_t crop_h, int64_t crop_w, int64_t bin, const std::string& source = "",
                   std::optional<std::pair<double, double>> zero_order = std::nullopt);

  bool identity() const { return bin_ == 1 && cy_ == h_ && cx_ == w_ && y0_ == 0 && x0_ == 0; }
  // (out, n) weights of the crop and bin along one axis of n pixels.
  torch::Tensor weights_y() const { return wy_; }
  torch::Tensor weights_x() const { return wx_; }
  int64_t out_h() const { return cy_ / bin_; }
  int64_t out_w() const { return cx_ / bin_; }
  int64_t bin() const { return bin_; }
  // Top-left corner of the crop window (negative, or reaching past the
  // pattern, where the zero order is off centre: those pixels count as bad).
  int64_t y0() const { return y0_; }
  int64_t x0() const { return x0_; }

  // (n, h, w) frames as measured, and (h, w) bool valid pixels -> (n, out_h, out_w) float32.
  torch::Tensor frames(const torch::Tensor& frames, const torch::Tensor& valid) const;
  // (h, w) bool valid pixels -> (out_h, out_w) bool.
  torch::Tensor valid(const torch::Tensor& valid) const;
  // The reduced geometry; the zero order (if g has one) moves with the crop and bin.
  ExperimentGeometry geometry(const ExperimentGeometry& g) const;
  // A real-space probe (M, h, w) of the full patterns resampled for the
  // reduced ones: the crop is a centred crop of its far field (the probe on
  // the coarser sample grid), the bin a centred crop of the probe itself (the
  // window shrinks by b at the same pixel size).
  torch::Tensor probe(const torch::Tensor& probe) const;

 private:
  int64_t h_ = 0, w_ = 0, y0_ = 0, x0_ = 0, cy_ = 0, cx_ = 0, bin_ = 1, zy_ = 0, zx_ = 0;
  std::pair<double, double> zero_order_{0, 0};
  torch::Tensor wy_, wx_;  // float32 (out_h, h) and (out_w, w)
  torch::Tensor reduce(const torch::Tensor& t) const;  // (..., h, w) -> (..., out_h, out_w)
};

}  // namespace tessera
