#include "train/pattern_reduction.h"

#include "models/propagation.h"
#include "src/error.h"

namespace tessera {

namespace {

// Weights (out, n) of a centred crop of `crop` pixels (zero order at n/2 kept
// at crop/2) followed by bins of b pixels centred on the zero order.
torch::Tensor axis_weights(int64_t n, int64_t crop, int64_t b, int64_t out) {
  auto w = torch::zeros({out, n}, torch::kFloat);
  auto a = w.accessor<float, 2>();
  const int64_t y0 = n / 2 - crop / 2, zero = n / 2;
  for (int64_t k = 0; k < out; ++k) {
    const int64_t c = zero + b * (k - out / 2);
    const int64_t half = b / 2;
    for (int64_t j = c - half; j <= c + half; ++j) {
      if (j < y0 || j >= y0 + crop) continue;  // outside the crop or the pattern
      const bool edge = b % 2 == 0 && (j == c - half || j == c + half);
      a[k][j] = edge ? 0.5f : 1.0f;
    }
  }
  return w;
}

}  // namespace

PatternReduction::PatternReduction(int64_t h, int64_t w, int64_t crop_h, int64_t crop_w, int64_t bin,
                                   const std::string& source)
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
  y0_ = h / 2 - cy_ / 2;
  x0_ = w / 2 - cx_ / 2;
  wy_ = axis_weights(h, cy_, bin, out_h());
  wx_ = axis_weights(w, cx_, bin, out_w());
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
  return out;
}

torch::Tensor PatternReduction::probe(const torch::Tensor& probe) const {
  if (identity()) return probe;
  // Crop: keep the central cy × cx frequencies of the far field.
  auto spectrum = to_detector_order(far_field(to_fft_order(probe)));
  spectrum = spectrum.slice(-2, y0_, y0_ + cy_).slice(-1, x0_, x0_ + cx_);
  // The orthonormal FFT of the smaller grid conserves the power kept.
  auto p = to_detector_order(far_field_adjoint(to_fft_order(spectrum)));
  if (bin_ == 1) return p.contiguous();
  const int64_t oh = out_h(), ow = out_w();
  return p.slice(-2, cy_ / 2 - oh / 2, cy_ / 2 - oh / 2 + oh).slice(-1, cx_ / 2 - ow / 2, cx_ / 2 - ow / 2 + ow).contiguous();
}

}  // namespace tessera
