#pragma once
// A model-free check of 4D-STEM scan geometry: how far, and in which
// direction, the bright-field shadow moves on the detector when the scan
// moves one step along y and one step along x.
//
// With a defocused probe the bright-field disc holds a shadow image of the
// specimen: detector pixel k sees the sample point r + λ Δf k (src/electron_optics.h
// sign: Δf > 0 has the crossover before the sample). So the virtual image of
// pixel k is the image of pixel k' shifted by λ Δf (k − k') on the sample,
// and when the probe moves by d the shadow moves by −d / (λ Δf) on the
// detector: against the scan for Δf > 0, with it for Δf < 0. Measured here by
// cross-correlating the virtual bright-field images of the two halves of the
// disc (left/right, top/bottom) over a centred block of the scan; no model,
// no reconstruction. What microscopists read from it:
//  - the direction of the shadow's motion per scan step is the scan rotation
//    (/stem4d/scan_rotation_deg), or the rotation + 180° if Δf > 0: the
//    rotation and the defocus sign are known together, not apart;
//  - a mirrored motion (the y-step arrow on the wrong side of the x-step arrow)
//    means the scan axes are flipped or transposed against the detector's,
//    which no rotation fixes;
//  - the magnitude gives |Δf| = step / (λ Δk × pixels per step), roughly: in
//    simulations (±250 Å, 30°) it came out 10-25 % low, the angle within 3°.
#include <cstdint>
#include <optional>
#include <string>

#include "data/stem4d_file.h"

namespace tessera {

struct ShadowShift {
  int64_t block_y = 0, block_x = 0;  // scan positions used (a centred block)
  int64_t bin = 1;                   // detector pixels summed per side before the measurement
  // [y, x] detector pixels the shadow moves per scan step along scan y / scan x.
  double per_step_y[2] = {0, 0};
  double per_step_x[2] = {0, 0};
  // Direction of the motion (degrees from detector +x towards +y), the two
  // arrows combined as if the scan's x axis had moved.
  double shadow_angle_deg = 0;
  // The scan rotation it implies for either defocus sign, in (−180, 180].
  double rotation_if_defocus_positive_deg = 0, rotation_if_defocus_negative_deg = 0;
  bool mirrored = false;        // the two arrows are mirror images of the scan's axes
  double correlation = 0;       // of the half-disc images at the found shift (0..1): below ~0.3 is unreliable
  std::optional<double> defocus_magnitude_angstrom;  // rough, from the magnitude and the step (not for measured positions)
};

// Measures the shadow motion over at most max_side × max_side scan positions
// (the default reads at most 4096 patterns). Returns nullopt, with the reason
// in why_not, when the scan is too small (< 4 positions per side), the
// bright-field disc cannot be found, or no shadow moves (a probe near focus).
// Throws DataError when the patterns cannot be read.
std::optional<ShadowShift> measure_shadow_shift(const Stem4dFile& file, std::string* why_not = nullptr,
                                                int64_t max_side = 64);

// Lines for `tessera info`: the arrows, the implied rotation for either
// defocus sign, and how to read them against the file's rotation and defocus.
std::string describe_shadow_shift(const ShadowShift& shift, const Stem4dCalibration& calibration);

}  // namespace tessera
