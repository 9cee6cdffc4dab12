#pragma once
// The element steps of tessera::window_far_field_loss (window_loss.h), one
// function per output element, shared by the CPU loops
// (cpu/window_loss_kernel.cpp) and the CUDA kernels
// (cuda/window_loss_kernel.cu): the arithmetic is written once, so the CPU
// tests of the op test the CUDA kernels' arithmetic too; only the loop
// around them differs. No torch headers (nvcc compiles this).
//
// Every array is contiguous; complex arrays are interleaved (re, im) reals.
// Every output element is written by one call, and sums over modes or
// patterns run in index order: no atomics, the same bits on every run.
#include <cstdint>

#include "src/ops/pixel_losses.h"

namespace tessera::ops {

template <typename T>
struct WindowLossArgs {
  int64_t B = 0, M = 0, n = 0;    // patterns, probe modes, pixels per window
  const T* probe = nullptr;       // (M, n) complex
  const T* windows = nullptr;     // (B, n) complex: the object windows
  T* waves = nullptr;             // (B, M, n) complex: exit waves, then far field, then residual, then its gradient
  const T* measured = nullptr;    // (N, n)
  const int64_t* rows = nullptr;  // (B): pattern b is measured frame rows[b]; null: frame b
  const T* keep = nullptr;        // (n) or (N, n): 1 = pixel used, 0 = not; null: every pixel
  int64_t keep_stride = 0;        // elements between consecutive frames' masks (0: one shared mask)
  T* value = nullptr;             // (B, n): the loss of each pixel (0 where masked)
  bool residual = false;          // overwrite the far field by 2 dl/dI Psi
  T weight = 1;                   // scales both gradients (the mini-batch's 1 / size)
  T* grad_windows = nullptr;      // (B, n) complex
  T* grad_probe = nullptr;        // (M, n) complex
};

// idx in [0, B M n): psi[b, m, k] = probe[m, k] windows[b, k].
template <typename T>
TESSERA_HOST_DEVICE inline void exit_wave_at(const WindowLossArgs<T>& a, int64_t idx) {
  const int64_t k = idx % a.n, bm = idx / a.n, m = bm % a.M, b = bm / a.M;
  const T* p = a.probe + 2 * (m * a.n + k);
  const T* x = a.windows + 2 * (b * a.n + k);
  T* out = a.waves + 2 * idx;
  out[0] = p[0] * x[0] - p[1] * x[1];
  out[1] = p[0] * x[1] + p[1] * x[0];
}

// idx in [0, B n): the pixel's loss from I = sum_m |Psi[b, m, k]|^2, and
// with `residual` Psi[b, m, k] *= 2 dl/dI. A masked pixel gets value and
// slope exactly 0, even where l is not finite (a select, not a product).
template <typename Pixel, typename T>
TESSERA_HOST_DEVICE inline void far_field_pixel_at(const WindowLossArgs<T>& a, int64_t idx) {
  const int64_t k = idx % a.n, b = idx / a.n;
  const int64_t frame = a.rows ? a.rows[b] : b;
  T* Psi = a.waves + 2 * (b * a.M * a.n + k);
  T I = 0;
  for (int64_t m = 0; m < a.M; ++m) {
    const T* z = Psi + 2 * m * a.n;
    I += z[0] * z[0] + z[1] * z[1];
  }
  T slope;
  T value = Pixel::value_and_slope(I, a.measured[frame * a.n + k], slope);
  if (a.keep && a.keep[frame * a.keep_stride + k] == T(0)) {
    slope = 0;
    value = 0;
  }
  a.value[idx] = value;
  if (!a.residual) return;
  const T f = 2 * slope;
  for (int64_t m = 0; m < a.M; ++m) {
    T* z = Psi + 2 * m * a.n;
    z[0] *= f;
    z[1] *= f;
  }
}

// sum_j conj(a_j) weight g_j over `count` terms, a_j = a[j a_stride] and
// g_j = g[j g_stride] (complex, strides in reals), j in order; into out[0..1].
template <typename T>
TESSERA_HOST_DEVICE inline void conj_product_sum(const T* a, int64_t a_stride, const T* g, int64_t g_stride,
                                                 int64_t count, T weight, T* out) {
  T re = 0, im = 0;
  for (int64_t j = 0; j < count; ++j, a += a_stride, g += g_stride) {
    const T gr = weight * g[0], gi = weight * g[1];
    re += a[0] * gr + a[1] * gi;
    im += a[0] * gi - a[1] * gr;
  }
  out[0] = re;
  out[1] = im;
}

// idx in [0, B n): grad_windows[b, k] = sum_m conj(probe[m, k]) weight g[b, m, k].
template <typename T>
TESSERA_HOST_DEVICE inline void window_gradient_at(const WindowLossArgs<T>& a, int64_t idx) {
  const int64_t k = idx % a.n, b = idx / a.n;
  conj_product_sum(a.probe + 2 * k, 2 * a.n, a.waves + 2 * (b * a.M * a.n + k), 2 * a.n, a.M, a.weight,
                   a.grad_windows + 2 * idx);
}

// idx in [0, M n): grad_probe[m, k] = sum_b conj(windows[b, k]) weight g[b, m, k],
// patterns in order.
template <typename T>
TESSERA_HOST_DEVICE inline void probe_gradient_at(const WindowLossArgs<T>& a, int64_t idx) {
  const int64_t k = idx % a.n, m = idx / a.n;
  conj_product_sum(a.windows + 2 * k, 2 * a.n, a.waves + 2 * (m * a.n + k), 2 * a.M * a.n, a.B, a.weight,
                   a.grad_probe + 2 * idx);
}

// The loop bodies as callable types, for the CUDA kernels' template.
template <typename T>
struct ExitWaveStep {
  WindowLossArgs<T> a;
  TESSERA_HOST_DEVICE void operator()(int64_t i) const { exit_wave_at(a, i); }
};
template <typename Pixel, typename T>
struct FarFieldPixelStep {
  WindowLossArgs<T> a;
  TESSERA_HOST_DEVICE void operator()(int64_t i) const { far_field_pixel_at<Pixel>(a, i); }
};
template <typename T>
struct WindowGradientStep {
  WindowLossArgs<T> a;
  TESSERA_HOST_DEVICE void operator()(int64_t i) const { window_gradient_at(a, i); }
};
template <typename T>
struct ProbeGradientStep {
  WindowLossArgs<T> a;
  TESSERA_HOST_DEVICE void operator()(int64_t i) const { probe_gradient_at(a, i); }
};

// Calls f(form's Pixel type) for a PixelForm: the one switch over the forms.
template <typename F>
inline void with_pixel_form(PixelForm form, F&& f) {
  switch (form) {
    case PixelForm::amplitude: f(AmplitudePixel{}); return;
    case PixelForm::intensity: f(IntensityPixel{}); return;
    case PixelForm::poisson: f(PoissonPixel{}); return;
  }
}

}  // namespace tessera::ops
