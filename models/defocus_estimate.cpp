#include "models/defocus_estimate.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "src/error.h"

namespace tessera {
namespace {

DefocusEstimate not_reliable(DefocusEstimate e, std::string why) {
  e.reliable = false;
  e.why_not = std::move(why);
  return e;
}

// Median distance from each position to its nearest neighbour: the scan step
// for a raster, the mean spacing for a spiral.
double typical_step(const torch::Tensor& pos) {
  const auto p = pos.accessor<double, 2>();
  const int64_t n = pos.size(0);
  std::vector<double> nearest;
  for (int64_t i = 0; i < n; ++i) {
    double best = std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < n; ++j) {
      if (j == i) continue;
      const double d = std::hypot(p[i][0] - p[j][0], p[i][1] - p[j][1]);
      if (d > 1e-6) best = std::min(best, d);
    }
    if (std::isfinite(best)) nearest.push_back(best);
  }
  if (nearest.empty()) return 0;
  std::nth_element(nearest.begin(), nearest.begin() + nearest.size() / 2, nearest.end());
  return nearest[nearest.size() / 2];
}

}  // namespace

std::vector<int64_t> central_positions(const torch::Tensor& positions_px, int64_t max_positions) {
  TESSERA_REQUIRE(Error, positions_px.dim() == 2 && positions_px.size(1) == 2, "positions must be (n, 2), got ",
                  positions_px.sizes());
  const auto p = positions_px.to(torch::kFloat64).cpu().contiguous();
  const int64_t n = p.size(0);
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  if (n <= max_positions) return idx;
  const auto centre = std::get<0>(p.median(0));
  const auto d2 = (p - centre).pow(2).sum(1);
  const auto* d = d2.data_ptr<double>();
  // Stable: equal distances keep the scan order, so every rank picks the same block.
  std::stable_sort(idx.begin(), idx.end(), [d](int64_t a, int64_t b) { return d[a] < d[b]; });
  idx.resize(max_positions);
  std::sort(idx.begin(), idx.end());
  return idx;
}

DefocusEstimate estimate_defocus(const torch::Tensor& frames, const torch::Tensor& valid,
                                 const torch::Tensor& positions_px, std::pair<double, double> rest,
                                 double radius_px, const DefocusEstimateOptions& o) {
  torch::NoGradGuard no_grad;
  TESSERA_REQUIRE(Error, frames.dim() == 3 && positions_px.dim() == 2 && positions_px.size(0) == frames.size(0) &&
                             positions_px.size(1) == 2,
                  "defocus estimate: frames (n, h, w) and positions (n, 2) expected, got ", frames.sizes(), " and ",
                  positions_px.sizes());
  DefocusEstimate e;
  const int64_t n = frames.size(0), h = frames.size(1), w = frames.size(2);
  e.positions = n;
  e.radius_px = radius_px;
  if (n < 16) return not_reliable(e, "fewer than 16 positions");
  if (!(radius_px >= 2)) return not_reliable(e, "the direct beam is narrower than 2 pixels");

  // For a weak phase object the image of pixel q has the spectrum
  //   -2 phi(k) sin(c |k|^2 / R^2) exp(-2 i c q.k / R^2)
  // (k in frame pixels) as long as q - k and q + k both lie inside the
  // aperture: a shifted copy of one image, whatever q. Pixels within R/2 and
  // spatial frequencies within 0.45 R keep |q +- k| < 0.95 R; beyond, the
  // aperture's edge adds contrast that no shift explains and biased the
  // estimate away from focus. Square blocks about nine across that disc.
  const double inner = 0.5 * radius_px;
  const double max_k = 0.45 * radius_px;
  const int64_t b = std::max<int64_t>(1, std::llround(2 * inner / 9));
  auto qy = torch::fft::fftfreq(h, torch::kFloat64) * static_cast<double>(h) - rest.first;
  auto qx = torch::fft::fftfreq(w, torch::kFloat64) * static_cast<double>(w) - rest.second;
  const auto ok = valid.to(torch::kBool).cpu().contiguous();
  const auto* okp = ok.data_ptr<bool>();
  const auto* qyp = qy.data_ptr<double>();
  const auto* qxp = qx.data_ptr<double>();
  std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> blocks;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      if (!okp[y * w + x] || std::hypot(qyp[y], qxp[x]) > inner) continue;
      blocks[{static_cast<int64_t>(std::floor(qyp[y] / b + 0.5)), static_cast<int64_t>(std::floor(qxp[x] / b + 0.5))}]
          .push_back(y * w + x);
    }
  std::vector<std::vector<int64_t>> groups;
  for (auto& [key, pixels] : blocks)
    if (2 * static_cast<int64_t>(pixels.size()) >= b * b) groups.push_back(std::move(pixels));
  const int64_t G = static_cast<int64_t>(groups.size());
  e.detector_groups = G;
  if (G < 7) return not_reliable(e, "fewer than 7 detector blocks inside the direct beam");

  // Each block's virtual image over the scan, as contrast relative to its mean.
  auto membership = torch::zeros({h * w, G}, torch::kFloat64);
  auto member = membership.accessor<double, 2>();
  std::vector<double> gy(G), gx(G);
  for (int64_t g = 0; g < G; ++g) {
    double sy = 0, sx = 0;
    for (int64_t pix : groups[g]) {
      member[pix][g] = 1.0 / static_cast<double>(groups[g].size());
      sy += qyp[pix / w];
      sx += qxp[pix % w];
    }
    gy[g] = sy / static_cast<double>(groups[g].size());
    gx[g] = sx / static_cast<double>(groups[g].size());
  }
  auto v = torch::matmul(frames.reshape({n, h * w}).to(torch::kFloat64).cpu(), membership);  // (n, G)
  auto mean = v.mean(0, true);
  if (!(mean.min().item<double>() > 0)) return not_reliable(e, "a detector block inside the direct beam holds no counts");
  v = (v / mean - 1).contiguous();

  // The images on a grid of half the scan step, by normalised Gaussian
  // splatting (the positions may be a spiral or jittered), padded by the
  // largest trial shift so that no shift wraps around.
  const auto pos = positions_px.to(torch::kFloat64).cpu().contiguous();
  const double step = typical_step(pos);
  if (!(step > 0)) return not_reliable(e, "the positions do not spread");
  double max_q = 0;
  for (int64_t g = 0; g < G; ++g) max_q = std::max({max_q, std::fabs(gy[g]), std::fabs(gx[g])});
  const double pitch = step / 2, sigma = step / 2;
  const double max_shift = static_cast<double>(std::max(h, w)) * o.max_edge_phase_rad * max_q / (M_PI * radius_px * radius_px);
  const double pad = max_shift + 3 * sigma;
  const auto lo = std::get<0>(pos.min(0)), hi = std::get<0>(pos.max(0));
  const double y0 = lo[0].item<double>() - pad, x0 = lo[1].item<double>() - pad;
  const int64_t ny = static_cast<int64_t>(std::ceil((hi[0].item<double>() - lo[0].item<double>() + 2 * pad) / pitch)) + 1;
  const int64_t nx = static_cast<int64_t>(std::ceil((hi[1].item<double>() - lo[1].item<double>() + 2 * pad) / pitch)) + 1;
  if (ny * nx > 4096 * 4096) return not_reliable(e, "the scan is too fine for the shifts tried");
  auto num = torch::zeros({ny, nx, G}, torch::kFloat64);
  auto den = torch::zeros({ny, nx}, torch::kFloat64);
  {
    auto na = num.accessor<double, 3>();
    auto da = den.accessor<double, 2>();
    const auto pa = pos.accessor<double, 2>();
    const auto va = v.accessor<double, 2>();
    const int64_t reach = static_cast<int64_t>(std::ceil(3 * sigma / pitch));
    for (int64_t j = 0; j < n; ++j) {
      const double cy = (pa[j][0] - y0) / pitch, cx = (pa[j][1] - x0) / pitch;
      const int64_t iy = std::llround(cy), ix = std::llround(cx);
      for (int64_t yy = std::max<int64_t>(0, iy - reach); yy <= std::min(ny - 1, iy + reach); ++yy)
        for (int64_t xx = std::max<int64_t>(0, ix - reach); xx <= std::min(nx - 1, ix + reach); ++xx) {
          const double r2 = ((yy - cy) * (yy - cy) + (xx - cx) * (xx - cx)) * pitch * pitch;
          const double wgt = std::exp(-r2 / (2 * sigma * sigma));
          da[yy][xx] += wgt;
          for (int64_t g = 0; g < G; ++g) na[yy][xx][g] += wgt * va[j][g];
        }
    }
  }
  // Nodes far from every position stay 0; the rest are weighted averages.
  const double typical_weight = den.max().item<double>();
  auto covered = den > 0.05 * typical_weight;
  auto images = torch::where(covered.unsqueeze(-1), num / den.clamp_min(1e-300).unsqueeze(-1), torch::zeros_like(num));
  images = images - (images.sum(torch::IntArrayRef{0, 1}, true) / covered.sum().to(torch::kFloat64)) * covered.unsqueeze(-1);
  // A radial Hann taper over the scanned region: the coverage's sharp edge
  // would leak the images' high frequencies, where the aperture's edge makes
  // pixel q and -q see opposite contrast (no shift relates them), into the
  // low frequencies that the alignment reads, and pull it away from focus.
  {
    const double cy = 0.5 * (lo[0].item<double>() + hi[0].item<double>());
    const double cx = 0.5 * (lo[1].item<double>() + hi[1].item<double>());
    const double reach = torch::sqrt((pos - torch::tensor({cy, cx}, torch::kFloat64)).pow(2).sum(1)).max().item<double>() + sigma;
    auto ry = (torch::arange(ny, torch::kFloat64) * pitch + y0 - cy).view({ny, 1});
    auto rx = (torch::arange(nx, torch::kFloat64) * pitch + x0 - cx).view({1, nx});
    auto r = torch::sqrt(ry.pow(2) + rx.pow(2)) / reach;
    auto taper = torch::where(r < 1, 0.5 + 0.5 * torch::cos(M_PI * r), torch::zeros_like(r));
    images = images * taper.unsqueeze(-1);
  }
  auto spectra = torch::fft::fft2(images.permute({2, 0, 1})).reshape({G, ny * nx});  // (G, K)

  // E(c) = sum_k |sum_g F_g(k) exp(-2 pi i k.x_g(c))|^2 with x_g(c) = c u_g.
  auto ky = (torch::fft::fftfreq(ny, pitch, torch::kFloat64)).view({ny, 1}).expand({ny, nx}).reshape({-1});
  auto kx = (torch::fft::fftfreq(nx, pitch, torch::kFloat64)).view({1, nx}).expand({ny, nx}).reshape({-1});
  auto uy = torch::tensor(gy, torch::kFloat64) * (-static_cast<double>(h) / (M_PI * radius_px * radius_px));
  auto ux = torch::tensor(gx, torch::kFloat64) * (-static_cast<double>(w) / (M_PI * radius_px * radius_px));
  // Only frequencies the splatting passed (its Gaussian keeps 29 % at half
  // the inverse step, under 1 % at the inverse step), and within max_k.
  auto low = ((ky.pow(2) + kx.pow(2) <= std::pow(0.6 / step, 2)) &
              ((ky * static_cast<double>(h)).pow(2) + (kx * static_cast<double>(w)).pow(2) <= max_k * max_k))
                 .nonzero()
                 .view(-1);
  if (low.numel() < 8) return not_reliable(e, "the scan step is too coarse for the direct beam's parallax");
  spectra = spectra.index_select(1, low);
  auto phase_per_c = (uy.view({G, 1}) * ky.index_select(0, low).view({1, -1}) +
                      ux.view({G, 1}) * kx.index_select(0, low).view({1, -1})) *
                     (-2 * M_PI);
  // The trials are evenly spaced: one complex factor per step instead of a
  // sine and cosine per trial.
  const int64_t steps = static_cast<int64_t>(std::llround(o.max_edge_phase_rad / o.trial_step_rad));
  auto shifted = spectra * torch::polar(torch::ones_like(phase_per_c), phase_per_c * (-static_cast<double>(steps) * o.trial_step_rad));
  const auto advance = torch::polar(torch::ones_like(phase_per_c), phase_per_c * o.trial_step_rad);
  std::vector<double> trial, value;
  for (int64_t i = -steps; i <= steps; ++i) {
    if (i > -steps) shifted = shifted * advance;
    trial.push_back(static_cast<double>(i) * o.trial_step_rad);
    value.push_back(torch::view_as_real(shifted.sum(0)).pow(2).sum().item<double>());
  }
  const auto best = static_cast<int64_t>(std::max_element(value.begin(), value.end()) - value.begin());
  const double top = value[best], bottom = *std::min_element(value.begin(), value.end());
  for (size_t i = 0; i < trial.size(); ++i) e.curve.emplace_back(trial[i], value[i] / top);
  e.contrast = top > 0 ? (top - bottom) / top : 0;
  // Cauchy-Schwarz: E <= G sum_g |F_g|^2, equal when the aligned images are
  // one image; about 1/G of it when they are unrelated.
  e.coherence = top / (static_cast<double>(G) * torch::view_as_real(spectra).pow(2).sum().item<double>());
  // The parabola through the best trial and its neighbours.
  double c = trial[best];
  if (best > 0 && best + 1 < static_cast<int64_t>(trial.size())) {
    const double a = value[best - 1], m = value[best], z = value[best + 1];
    const double denom = a - 2 * m + z;
    if (denom < 0) c += 0.5 * o.trial_step_rad * (a - z) / denom;
  }
  e.edge_phase_rad = c;
  e.mirror = value[trial.size() - 1 - best] / top;
  if (best == 0 || best + 1 == static_cast<int64_t>(trial.size()))
    return not_reliable(e, "the best alignment lies at the end of the trials (+-" +
                               std::to_string(o.max_edge_phase_rad) + " rad)");
  if (e.contrast < o.min_contrast) return not_reliable(e, "no defocus aligns the shadow images clearly");
  // Near focus the pixels on opposite sides of the beam see opposite
  // contrast from its edge; that aligns best at two mirror defocus values,
  // with nothing in between. A real defocus stands out against its mirror.
  if (e.coherence < o.min_coherence)
    return not_reliable(e, "the shadow images hardly agree when aligned (noise, or a probe near focus)");
  if (e.mirror > o.max_mirror)
    return not_reliable(e, "the defocus and its opposite align the shadow images about equally (a probe near focus?)");
  e.reliable = true;
  return e;
}

}  // namespace tessera
