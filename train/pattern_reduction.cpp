#include "train/pattern_reduction.h"

#include <algorithm>
#include <cmath>

#include "models/propagation.h"
#include "src/error.h"

namespace tessera {

namespace {

// Weights (out, n) of a crop of `crop` pixels centred on the zero-order pixel
// `zero` (kept at crop/2) followed by bins of b pixels centred on it. Pixels
// of the window that lie past the pattern's edge get no weight.
torch::Tensor axis_weights(int64_t n, int64_t crop, int64_t b, int64_t out, int64_t zero) {
  auto w = torch::zeros({out, n}, torch::kFloat);
  auto a = w.accessor<float, 2>();
  const int64_t y0 = zero - crop / 2;
  for (int64_t k = 0; k < out; ++k) {
    const int64_t c = zero + b * (k - out / 2);
    const int64_t half = b / 2;
    for (int64_t j = c - half; j <= c + half; ++j) {
      if (j < y0 || j >= y0 + crop || j < 0 || j >= n) continue;  // outside the crop or the pattern
      const bool edge = b % 2 == 0 && (j == c - half || j == c + half);
      a[k][j] = edge ? 0.5f : 1.0f;
    }
  }
  return w;
}

}  // namespace

PatternReduction::PatternReduction(int64_t h, int64_t w, int64_t crop_h, int64_t crop_w, int64_t bin,
                                   const std::string& source, std::optional<std::pair<double, double>> zero_order)
    : h_(h), w_(w), bin_(bin) {
  const std::string where = source.empty() ? "" : source + ": ";
  TESSERA_REQUIRE(SettingsError, bin >= 1, where, "the binning factor must be >= 1, got ", bin);
  TESSERA_REQUIRE(SettingsError, crop_h >= 0 && crop_w >= 0, where, "the crop size must be positive, got ", crop_h, " x ",
                  crop_w);
  cy_ = crop_h > 0 ? crop_h : h;
  cx_ = crop_w > 0 ? crop_w : w;
  TESSERA_REQUIRE(SettingsError, cy_ <= h && cx_ <= w, where, "cannot crop ", h, " x ", w, " patterns to ", cy_, " x ", cx_,
                  ": the crop must be at most the pattern size");
  TESSERA_REQUIRE(DataError, frame_size_problem(h, w).empty(), where, frame_size_problem(h, w));
  TESSERA_REQUIRE(SettingsError, frame_size_problem(cy_ / bin, cx_ / bin).empty(), where, "cropping ", h, " x ", w, " patterns to ", cy_,
                  " x ", cx_, " and binning by ", bin, " leaves ", cy_ / bin, " x ", cx_ / bin,
                  " pixels; at least ", kMinFramePixels, " x ", kMinFramePixels, " are needed");
  zero_order_ = zero_order.value_or(std::make_pair(static_cast<double>(h / 2), static_cast<double>(w / 2)));
  zy_ = std::llround(zero_order_.first);
  zx_ = std::llround(zero_order_.second);
  // No crop and no bin: the patterns stay as they are (the engine's own shift
  // to FFT order takes the zero order to the frequency origin).
  if (bin == 1 && cy_ == h && cx_ == w) zy_ = h / 2, zx_ = w / 2;
  y0_ = zy_ - cy_ / 2;
  x0_ = zx_ - cx_ / 2;
  wy_ = axis_weights(h, cy_, bin, out_h(), zy_);
  wx_ = axis_weights(w, cx_, bin, out_w(), zx_);
}

torch::Tensor PatternReduction::reduce(const torch::Tensor& t) const {
  return wy_.matmul(t.to(torch::kFloat)).matmul(wx_.t());
}

torch::Tensor PatternReduction::valid(const torch::Tensor& valid) const {
  const double full = static_cast<double>(bin_ * bin_);
  return (reduce(valid.to(torch::kFloat)) >= 0.5 * full - 1e-3).contiguous();
}

torch::Tensor PatternReduction::frames(const torch::Tensor& frames, const torch::Tensor& valid) const {
  auto v = valid.to(torch::kBool);
  auto good_counts = reduce(frames.to(torch::kFloat).masked_fill(v.logical_not().unsqueeze(0), 0.0f));
  auto good_weight = reduce(v.to(torch::kFloat));
  const float full = static_cast<float>(bin_ * bin_);
  auto usable = good_weight >= 0.5f * full - 1e-3f;
  auto scale = torch::where(usable, full / good_weight.clamp_min(1e-3f), torch::zeros_like(good_weight));
  return (good_counts * scale.unsqueeze(0)).contiguous();
}

ExperimentGeometry PatternReduction::geometry(const ExperimentGeometry& g) const {
  ExperimentGeometry out = g;
  out.frame_h = out_h();
  out.frame_w = out_w();
  const double b = static_cast<double>(bin_);
  out.detector_pixel_y_m *= b;
  out.detector_pixel_x_m *= b;
  out.reciprocal_pixel_y_per_m *= b;
  out.reciprocal_pixel_x_per_m *= b;
  // The zero-order pixel lands on the output's centre pixel; its sub-pixel
  // rest shrinks with the bin.
  if (g.zero_order_px)
    out.zero_order_px = std::make_pair(static_cast<double>(out_h() / 2) + (zero_order_.first - zy_) / b,
                                       static_cast<double>(out_w() / 2) + (zero_order_.second - zx_) / b);
  return out;
}

torch::Tensor PatternReduction::probe(const torch::Tensor& probe) const {
  if (identity()) return probe;
  // Crop: keep the central cy × cx frequencies of the far field.
  auto spectrum = to_detector_order(far_field(to_fft_order(probe)));
  // A window reaching past the pattern (zero order off centre) sees zeros there.
  const int64_t top = std::max<int64_t>(0, -y0_), left = std::max<int64_t>(0, -x0_);
  spectrum = torch::constant_pad_nd(spectrum, {left, std::max<int64_t>(0, x0_ + cx_ - w_), top,
                                               std::max<int64_t>(0, y0_ + cy_ - h_)});
  spectrum = spectrum.slice(-2, y0_ + top, y0_ + top + cy_).slice(-1, x0_ + left, x0_ + left + cx_);
  // The orthonormal FFT of the smaller grid conserves the power kept.
  auto p = to_detector_order(far_field_adjoint(to_fft_order(spectrum)));
  if (bin_ == 1) return p.contiguous();
  const int64_t oh = out_h(), ow = out_w();
  return p.slice(-2, cy_ / 2 - oh / 2, cy_ / 2 - oh / 2 + oh).slice(-1, cx_ / 2 - ow / 2, cx_ / 2 - ow / 2 + ow).contiguous();
}

}  // namespace tessera
