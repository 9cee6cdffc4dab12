#include "src/frc_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <vector>

#include "src/error.h"
#include "src/io/png.h"

namespace tessera {
namespace {

// A 3 x 5 pixel font for tick labels and the legend (libpng has no text).
const std::map<char, const char*>& glyphs() {
  static const std::map<char, const char*> g = {
      {'0', "111101101101111"}, {'1', "010110010010111"}, {'2', "111001111100111"}, {'3', "111001111001111"},
      {'4', "101101111001001"}, {'5', "111100111001111"}, {'6', "111100111101111"}, {'7', "111001001001001"},
      {'8', "111101111101111"}, {'9', "111101111001111"}, {'.', "000000000000010"}, {'-', "000000111000000"},
      {'n', "000000110101101"}, {'m', "000000111111101"}, {'A', "010101111101101"}, {'F', "111100110100100"},
      {'R', "110101110101101"}, {'C', "111100100100111"}, {'h', "100100110101101"}, {'a', "000011101101011"},
      {'l', "110010010010111"}, {'f', "011100110100100"}, {'b', "100100110101110"}, {'i', "010000010010010"},
      {'t', "010111010010011"}, {'u', "000000101101111"}, {' ', "000000000000000"}};
  return g;
}

struct Canvas {
  int64_t h, w;
  std::vector<double> pixels;  // row-major, 1 = white
  Canvas(int64_t h_, int64_t w_) : h(h_), w(w_), pixels(static_cast<size_t>(h_ * w_), 1.0) {}
  void dot(int64_t y, int64_t x, double v) {
    if (y >= 0 && y < h && x >= 0 && x < w) {
      auto& p = pixels[static_cast<size_t>(y * w + x)];
      p = std::min(p, v);
    }
  }
  torch::Tensor image() const {
    return torch::tensor(pixels, torch::kFloat64).view({h, w});
  }
  void thick_dot(double y, double x, double v) {
    const int64_t iy = std::llround(y), ix = std::llround(x);
    for (int64_t dy = 0; dy < 2; ++dy)
      for (int64_t dx = 0; dx < 2; ++dx) dot(iy + dy, ix + dx, v);
  }
  // Line with an optional dash pattern (on, off pixels; 0 = solid).
  void line(double y0, double x0, double y1, double x1, double v, int dash = 0) {
    const int64_t steps = std::max<int64_t>(1, std::llround(std::max(std::fabs(y1 - y0), std::fabs(x1 - x0))));
    for (int64_t i = 0; i <= steps; ++i) {
      if (dash > 0 && (i / dash) % 2 == 1) continue;
      const double t = static_cast<double>(i) / static_cast<double>(steps);
      thick_dot(y0 + t * (y1 - y0), x0 + t * (x1 - x0), v);
    }
  }
  // Text with its top-left corner at (y, x), each font pixel scale x scale.
  void text(int64_t y, int64_t x, const std::string& s, int scale = 2) {
    for (char c : s) {
      auto it = glyphs().find(c);
      const char* g = it == glyphs().end() ? "000000000000000" : it->second;
      for (int r = 0; r < 5; ++r)
        for (int col = 0; col < 3; ++col)
          if (g[r * 3 + col] == '1')
            for (int sy = 0; sy < scale; ++sy)
              for (int sx = 0; sx < scale; ++sx) dot(y + r * scale + sy, x + col * scale + sx, 0);
      x += 4 * scale;
    }
  }
  int64_t text_width(const std::string& s, int scale = 2) const { return static_cast<int64_t>(s.size()) * 4 * scale; }
};

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

}  // namespace

void write_frc_png(const std::string& path, const FrcCurve& c) {
  TESSERA_REQUIRE(Error, c.frc.size() >= 2 && c.frc.size() == c.threshold.size() &&
                             c.frc.size() == c.frequency_per_m.size(),
                  "an FRC curve needs at least two rings to plot");
  constexpr int64_t kH = 420, kW = 640, kLeft = 56, kRight = 24, kTop = 40, kBottom = 56;
  Canvas cv(kH, kW);
  const double q_max = 1.0 / c.nyquist_period_m;
  constexpr double kYLo = -0.2, kYHi = 1.05;
  auto px = [&](double q) { return kLeft + (q / q_max) * static_cast<double>(kW - kLeft - kRight); };
  auto py = [&](double v) {
    v = std::clamp(v, kYLo, kYHi);
    return kTop + (kYHi - v) / (kYHi - kYLo) * static_cast<double>(kH - kTop - kBottom);
  };
  // Axes, grid at FRC 0, 0.5 and 1.
  cv.line(py(kYLo), px(0), py(kYLo), px(q_max), 0);
  cv.line(py(kYLo), px(0), py(kYHi), px(0), 0);
  for (double v : {0.0, 0.5, 1.0}) {
    cv.line(py(v), px(0), py(v), px(q_max), 0.8, 2);
    const std::string label = v == 0.5 ? "0.5" : number(v);
    cv.text(std::llround(py(v)) - 5, kLeft - 8 - cv.text_width(label), label);
  }
  // x ticks at quarters of Nyquist, labelled with the period they stand for.
  const bool angstrom = c.nyquist_period_m < 2e-9;
  const double unit = angstrom ? 1e-10 : 1e-9;
  for (int k = 1; k <= 4; ++k) {
    const double q = q_max * k / 4.0;
    cv.line(py(kYLo), px(q), py(kYLo) + 6, px(q), 0);
    const std::string label = number(1.0 / q / unit);
    cv.text(std::llround(py(kYLo)) + 12, std::llround(px(q)) - cv.text_width(label) / 2, label);
  }
  const std::string axis = angstrom ? "A" : "nm";  // the font has no letters for "period"
  cv.text(kH - 18, kW - kRight - cv.text_width(axis), axis);
  // Curves: threshold dashed, FRC solid (ring 0 is the mean, removed).
  for (size_t k = 2; k < c.frc.size(); ++k) {
    cv.line(py(c.threshold[k - 1]), px(c.frequency_per_m[k - 1]), py(c.threshold[k]), px(c.frequency_per_m[k]), 0.45,
            4);
    cv.line(py(c.frc[k - 1]), px(c.frequency_per_m[k - 1]), py(c.frc[k]), px(c.frequency_per_m[k]), 0);
  }
  // Resolution mark.
  const double qr = 1.0 / c.resolution_m;
  cv.line(py(kYLo), px(qr), py(kYHi), px(qr), 0.6, 3);
  const std::string res = (c.sampling_limited ? "Nyquist " : "") + number(c.resolution_m / unit) +
                          (angstrom ? " A" : " nm");
  cv.text(8, std::clamp<int64_t>(std::llround(px(qr)) - cv.text_width(res) / 2, 0, kW - cv.text_width(res)), res);
  // Legend.
  const int64_t ly = kTop + 4, lx = kW - kRight - 150;
  cv.line(ly + 5, lx, ly + 5, lx + 30, 0);
  cv.text(ly, lx + 40, "FRC");
  cv.line(ly + 25, lx, ly + 25, lx + 30, 0.45, 4);
  cv.text(ly + 20, lx + 40, "half-bit");
  write_png(path, cv.image(), 0, 1);
}

}  // namespace tessera
