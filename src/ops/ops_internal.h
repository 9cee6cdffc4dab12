#pragma once
// Internal to src/ops: input validation shared by the CPU and CUDA kernels,
// window geometry (floor + bilinear fractions), the backward-only ops and the
// real view used by every kernel. Not part of the public API.
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "src/error.h"
#include "src/ops/window_loss_kernels.h"

namespace tessera::ops::detail {

// ---------------------------------------------------------------------------
// Backward-only ops (registered as tessera::_patches_position_grad). Called by
// the autograd kernels through the dispatcher.
//
// grad_positions[b] = sum_{l,i,j} Re(conj(grad[b,l,i,j]) * d(S_b object)[l,i,j] / d(y_b, x_b))
// i.e. the real-valued gradient of a real loss with respect to positions when
// grad is dL/d(extract_patches(object, positions)) in PyTorch's convention.
// It is also the positions gradient of overlap_add (with grad := patches and
// object := dL/d(output)), since S_b^T has the transposed derivative.
torch::Tensor patches_position_grad(const torch::Tensor& grad, const torch::Tensor& object,
                                    const torch::Tensor& positions);

// ---------------------------------------------------------------------------
// Validation (throws tessera::Error with a message naming the op and the fault).

// object/patches: float, double, complex64 or complex128; positions: the matching
// real dtype, shape (B, 2). `what` names the main tensor ("object" or "patches").
void check_patches_args(const char* op, const torch::Tensor& data, const char* what,
                        int64_t expected_dim, const torch::Tensor& positions, int64_t h,
                        int64_t w);

// One window: integer top-left corner read by the bilinear stencil and the
// fractional offsets in [0, 1).
template <typename T>
struct Window {
  int64_t y0, x0;
  T fy, fx;
};

// Computes the windows of positions (B, 2) (contiguous, on the CPU, dtype T)
// and checks that each one lies inside an H x W object: floor(y) >= 0 and
// floor(y) + h + 1 <= H (same for x and W). Throws naming the first bad window.
template <typename T>
std::vector<Window<T>> compute_windows(const char* op, const torch::Tensor& positions_cpu,
                                       int64_t H, int64_t W, int64_t h, int64_t w);

// Halo ops: array (L, H, W) of a supported dtype; rects (R, 4) int64, each rect
// inside the array. Returns the rects copied to host memory (R * 4 values) and
// the element offset (in array elements, i.e. complex numbers for complex
// arrays) of every rect's block in the packed buffer, plus the total.
struct RectTable {
  std::vector<int64_t> rects;    // R * 4: y0, x0, h, w
  std::vector<int64_t> offsets;  // R + 1: block start of each rect; offsets[R] = total
  int64_t count() const { return static_cast<int64_t>(offsets.size()) - 1; }
};
RectTable check_rects(const char* op, const torch::Tensor& array, const torch::Tensor& rects);
void check_halo_array(const char* op, const torch::Tensor& array, const char* what);
void check_halo_buffer(const char* op, const torch::Tensor& array, const torch::Tensor& buffer,
                       int64_t expected_numel);

// ---------------------------------------------------------------------------
// tessera::window_far_field_loss (window_loss.h): the validation, FFTs and
// sums are common; each device supplies the loops around the element steps
// of window_loss_kernels.h (cpu/window_loss_kernel.cpp, cuda/window_loss_cuda.cpp).
template <typename T>
struct WindowLossLaunchers {
  void (*exit_waves)(const WindowLossArgs<T>&);
  void (*far_field_pixels)(const WindowLossArgs<T>&, PixelForm);
  void (*gradients)(const WindowLossArgs<T>&);  // those of grad_windows, grad_probe that are set
};
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> window_far_field_loss_impl(
    const torch::Tensor& windows, const torch::Tensor& probe, const torch::Tensor& measured,
    const c10::optional<torch::Tensor>& valid, const c10::optional<torch::Tensor>& rows, const std::string& loss,
    double weight, bool gradients, const WindowLossLaunchers<float>& f32, const WindowLossLaunchers<double>& f64);

// Real view of a contiguous tensor: complex (..) -> real (.., 2), real -> (.., 1),
// so that kernels see C interleaved real channels (C = 2 or 1).
inline torch::Tensor real_view(const torch::Tensor& t) {
  return t.is_complex() ? at::view_as_real(t) : t.unsqueeze(-1);
}
inline int64_t channels(const torch::Tensor& t) { return t.is_complex() ? 2 : 1; }

// ---------------------------------------------------------------------------
// Template definitions.

template <typename T>
std::vector<Window<T>> compute_windows(const char* op, const torch::Tensor& positions_cpu,
                                       int64_t H, int64_t W, int64_t h, int64_t w) {
  const int64_t B = positions_cpu.size(0);
  const T* p = positions_cpu.data_ptr<T>();
  std::vector<Window<T>> windows(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    const T y = p[2 * b], x = p[2 * b + 1];
    TESSERA_REQUIRE(::tessera::DataError, std::isfinite(y) && std::isfinite(x), op, ": window ",
                    b, " has a non-finite position (y=", y, ", x=", x, ")");
    const T fy0 = std::floor(y), fx0 = std::floor(x);
    // Compare in double before converting: a huge position must not overflow int64.
    const bool inside = static_cast<double>(fy0) >= 0.0 && static_cast<double>(fx0) >= 0.0 &&
                        static_cast<double>(fy0) + static_cast<double>(h + 1) <=
                            static_cast<double>(H) &&
                        static_cast<double>(fx0) + static_cast<double>(w + 1) <=
                            static_cast<double>(W);
    TESSERA_REQUIRE(::tessera::DataError, inside, op, ": window ", b, " at position (y=", y,
                    ", x=", x, ") with size ", h, " x ", w, " reads object rows ",
                    static_cast<double>(fy0), "..", static_cast<double>(fy0) + h,
                    " and columns ", static_cast<double>(fx0), "..",
                    static_cast<double>(fx0) + w, " (bilinear interpolation reads h+1 rows and "
                    "w+1 columns), outside the ", H, " x ", W,
                    " object; keep 0 <= floor(y), floor(y) + h + 1 <= H, and likewise for x and W");
    windows[b] = Window<T>{static_cast<int64_t>(fy0), static_cast<int64_t>(fx0), y - fy0, x - fx0};
  }
  return windows;
}

}  // namespace tessera::ops::detail
