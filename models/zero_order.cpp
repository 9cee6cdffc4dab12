#include "models/zero_order.h"

#include <cmath>

#include "models/phase_ramp.h"
#include "src/error.h"

namespace tessera {

PixelPoint centred_zero_order(int64_t h, int64_t w) { return {static_cast<double>(h / 2), static_cast<double>(w / 2)}; }

torch::Tensor to_fft_order(const torch::Tensor& frames, const PixelPoint& zero_order) {
  const int64_t zy = std::llround(zero_order.first), zx = std::llround(zero_order.second);
  return torch::roll(frames, {-zy, -zx}, {-2, -1});
}

void to_fft_order_into(const torch::Tensor& frames, const PixelPoint& zero_order, torch::Tensor out) {
  TESSERA_REQUIRE(Error, frames.dim() >= 2 && out.sizes() == frames.sizes(), "to_fft_order_into: frames of shape ",
                  frames.sizes(), " into an array of shape ", out.sizes());
  const int64_t h = frames.size(-2), w = frames.size(-1);
  // out[i, j] = frames[(i + zy) mod h, (j + zx) mod w]: four block copies.
  const int64_t zy = ((std::llround(zero_order.first) % h) + h) % h;
  const int64_t zx = ((std::llround(zero_order.second) % w) + w) % w;
  const std::pair<int64_t, int64_t> rows[2] = {{0, zy}, {h - zy, 0}};  // (out start, frames start) of each part
  const std::pair<int64_t, int64_t> cols[2] = {{0, zx}, {w - zx, 0}};
  const int64_t row_len[2] = {h - zy, zy}, col_len[2] = {w - zx, zx};
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) {
      if (row_len[a] == 0 || col_len[b] == 0) continue;
      out.narrow(-2, rows[a].first, row_len[a])
          .narrow(-1, cols[b].first, col_len[b])
          .copy_(frames.narrow(-2, rows[a].second, row_len[a]).narrow(-1, cols[b].second, col_len[b]));
    }
}

PixelPoint zero_order_rest(const PixelPoint& z) {
  return {z.first - static_cast<double>(std::llround(z.first)), z.second - static_cast<double>(std::llround(z.second))};
}

torch::Tensor bright_region(const torch::Tensor& mean_pattern, int64_t margin) {
  auto m = mean_pattern.detach().to(torch::kCPU, torch::kFloat64);
  const double peak = torch::quantile(m.flatten(), 0.999).item<double>();
  TESSERA_REQUIRE(DataError, peak > 0, "the mean pattern holds no counts: the direct beam cannot be found");
  auto pool = [](const torch::Tensor& t, int64_t r) {  // circular max filter of radius r
    auto p = torch::cat({t.slice(0, -r), t, t.slice(0, 0, r)}, 0);
    p = torch::cat({p.slice(1, -r), p, p.slice(1, 0, r)}, 1);
    return torch::max_pool2d(p.unsqueeze(0).unsqueeze(0), {2 * r + 1, 2 * r + 1}, {1, 1})[0][0];
  };
  auto above = (m >= 0.1 * peak).to(torch::kFloat64);
  auto core = -pool(-above, 1);
  TESSERA_REQUIRE(DataError, core.sum().item<double>() > 0,
                  "the mean pattern has no bright region (no 3 x 3 pixels above a tenth of its peak): the direct beam "
                  "cannot be found");
  return margin > 0 ? pool(core, margin) : core;
}

PixelPoint circular_centroid(const torch::Tensor& intensity, const torch::Tensor& region) {
  auto weighted = intensity.to(torch::kCPU, torch::kFloat64) * region.to(torch::kCPU, torch::kFloat64);
  const int64_t h = weighted.size(0), w = weighted.size(1);
  auto angle = [](const torch::Tensor& profile, int64_t n) {
    auto phase = torch::arange(n, torch::kFloat64) * (2 * M_PI / static_cast<double>(n));
    double a = std::atan2((profile * torch::sin(phase)).sum().item<double>(), (profile * torch::cos(phase)).sum().item<double>());
    if (a < 0) a += 2 * M_PI;
    return a * static_cast<double>(n) / (2 * M_PI);
  };
  return {angle(weighted.sum(1), h), angle(weighted.sum(0), w)};
}

PixelPoint estimate_zero_order(const torch::Tensor& mean_pattern, const torch::Tensor& valid) {
  TESSERA_REQUIRE(Error, mean_pattern.dim() == 2 && valid.sizes() == mean_pattern.sizes(),
                  "the zero order is estimated from an (h, w) mean pattern and mask, got ", mean_pattern.sizes(), " and ",
                  valid.sizes());
  auto m = torch::where(valid.to(torch::kBool), mean_pattern.to(torch::kFloat64), torch::zeros({}, torch::kFloat64));
  return circular_centroid(m, bright_region(m));
}

PixelPoint far_field_centre(const torch::Tensor& probe) {
  const auto k = probe_phase_ramp(probe);
  const double h = static_cast<double>(probe.size(-2)), w = static_cast<double>(probe.size(-1));
  return {k.first * h / (2 * M_PI), k.second * w / (2 * M_PI)};
}

torch::Tensor tilt_probe(const torch::Tensor& probe, const PixelPoint& shift) {
  const int64_t h = probe.size(-2), w = probe.size(-1);
  auto y = torch::arange(h, torch::kFloat64).view({h, 1}) * (2 * M_PI * shift.first / static_cast<double>(h));
  auto x = torch::arange(w, torch::kFloat64).view({1, w}) * (2 * M_PI * shift.second / static_cast<double>(w));
  auto phase = y + x;
  return probe * torch::polar(torch::ones_like(phase), phase).to(probe.dtype()).to(probe.device());
}

}  // namespace tessera
