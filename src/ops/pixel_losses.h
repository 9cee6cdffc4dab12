#pragma once
// The per-pixel forms of the built-in losses, written once for every kernel
// that evaluates a loss pixel by pixel: the CPU fused operators
// (models/losses.cpp generates their loops from these structs) and the
// device-generic tessera::window_far_field_loss op, whose CPU loops and CUDA
// kernels call the same functions (src/ops/window_loss_kernels.h). No torch
// headers: nvcc compiles this into the CUDA kernels.
//
// value_and_slope(I, m, slope) returns l(I, m) and sets slope = dl/dI for a
// predicted intensity I and a measured m. They must equal the autograd forms
// of models/losses.cpp pixel by pixel (tests/test_losses.cpp compares both
// and their gradients).
#include <cmath>

#if defined(__CUDACC__)
#define TESSERA_HOST_DEVICE __host__ __device__
#else
#define TESSERA_HOST_DEVICE
#endif

namespace tessera::ops {

// Keeps sqrt and log differentiable where the model predicts exactly zero.
constexpr double kPixelLossFloor = 1e-9;

struct AmplitudePixel {
  // With p = I + floor and d = 1 - sqrt(m / p): (sqrt p - sqrt m)^2 = p d^2
  // and its derivative 1 - sqrt(m) / sqrt(p) = d. One square root and one
  // division instead of two and one: these scalar operations bound the loop.
  template <typename T>
  TESSERA_HOST_DEVICE static T value_and_slope(T I, T m, T& slope) {
    const T p = I + T(kPixelLossFloor), d = 1 - std::sqrt(m / p);
    slope = d;
    return p * d * d;
  }
};

struct IntensityPixel {
  template <typename T>
  TESSERA_HOST_DEVICE static T value_and_slope(T I, T m, T& slope) {
    const T r = I - m;
    slope = 2 * r;
    return r * r;
  }
};

struct PoissonPixel {
  template <typename T>
  TESSERA_HOST_DEVICE static T value_and_slope(T I, T m, T& slope) {
    const T p = I + T(kPixelLossFloor);
    slope = 1 - m / p;
    return I - m * std::log(p);
  }
};

// The forms the device-generic op knows by name (window_loss.h).
enum class PixelForm : int { amplitude = 0, intensity = 1, poisson = 2 };

}  // namespace tessera::ops
