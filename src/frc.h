#pragma once
// Fourier ring correlation (FRC): the resolution of a reconstruction without a
// truth, from two reconstructions of independent halves of the same scan.
// Where the two agree better than noise would allow, the image holds
// information; the spatial frequency where their correlation falls below the
// half-bit threshold (van Heel & Schatz, J. Struct. Biol. 151 (2005) 250) is
// the resolution.
//
// Ptychography leaves a global phase, a linear phase ramp and (through the
// probe) a translation of the object undetermined, so two independent
// reconstructions differ by all three: they are found and removed before the
// rings are compared (see fourier_ring_correlation).
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "src/geometry.h"

namespace tessera {

// Half-bit information threshold for a ring of n pixels:
// T(n) = (0.2071 + 1.9102 / sqrt(n)) / (1.2071 + 0.9102 / sqrt(n)).
double half_bit_threshold(int64_t n);

// How image B was moved onto image A before comparing.
struct FrcAlignment {
  double shift_y = 0, shift_x = 0;  // B's content sits at A's pixel + shift (sub-pixel)
  double phase_offset = 0;          // radians removed from B
  double ramp_y = 0, ramp_x = 0;    // phase ramp removed from B, radians per pixel
};

struct FrcCurve {
  // Ring k holds the frequencies |q| in [(k - 1/2) dq, (k + 1/2) dq), dq the
  // finest step that both axes of the region resolve; up to Nyquist.
  std::vector<double> frequency_per_m;  // ring centres, k dq
  std::vector<double> frc;              // Re sum(F_A conj(F_B)) / sqrt(sum |F_A|^2 sum |F_B|^2)
  std::vector<double> threshold;        // half-bit threshold of the ring
  std::vector<int64_t> ring_pixels;
  // Period 1/q where the FRC first falls below the threshold (linear
  // interpolation between the rings around the crossing, ring 0 excluded).
  // When it never does, the images agree up to the sampling limit and this
  // is the Nyquist period (2 pixels): sampling_limited says so.
  double resolution_m = 0;
  bool sampling_limited = false;
  double nyquist_period_m = 0;
  Rect region;  // compared pixels, in A's coordinates
  FrcAlignment alignment;
};

struct FrcOptions {
  double pixel_y_m = 1, pixel_x_m = 1;  // sample-plane pixel
  // Tukey window: the outer taper / 2 of the region on each side falls to
  // zero as a cosine, so that the region's edges do not leak into the rings.
  double taper = 0.5;
  bool align = true;        // find and remove shift, phase offset and ramp
  bool subpixel = true;     // refine the shift below a pixel
  int64_t max_shift = 0;    // largest integer shift searched; 0 = a quarter of the region
};

// FRC of two complex 2-D images over `region` (in A's pixels; B is compared
// at the aligned position). Alignment: the integer shift is the peak of the
// FFT cross-correlation of the images' neighbour products x(r + e) conj(x(r))
// (which a phase offset and a ramp leave unchanged, so they do not blur the
// peak); then, in turn, the ramp from the mean phase step of conj(A) B and the
// sub-pixel shift from the peak of the upsampled cross-correlation of A and
// B (B resampled by the Fourier shift theorem), and last the phase offset.
FrcCurve fourier_ring_correlation(const torch::Tensor& a, const torch::Tensor& b, const Rect& region,
                                  const FrcOptions& options = {});

// Illumination |P|^2 (summed over probe modes) added at every window
// position: (object_h, object_w) float64. positions_px: (N, 2) window
// corners [y, x] (rounded to the nearest pixel; this map only picks a region).
torch::Tensor illumination_map(const torch::Tensor& probe, const torch::Tensor& positions_px, int64_t object_h,
                               int64_t object_w);

// The largest axis-aligned rectangle of pixels lit at least `fraction` of the
// map's 99th percentile: the well-lit part of the scan, where a
// reconstruction is determined by the data. Empty when nothing is lit.
Rect well_lit_region(const torch::Tensor& illumination, double fraction = 0.5);

// A length as a microscopist writes it: Å below 1 nm (electron pixels),
// nm below 1 µm, µm above.
std::string format_length(double metres);

}  // namespace tessera
