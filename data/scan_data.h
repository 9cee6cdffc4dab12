#pragma once
// What a ptychography data set holds, in the units the reconstruction uses.
#include <optional>
#include <string>
#include <utility>

#include <torch/torch.h>

namespace tessera {

// The smallest pattern a reconstruction takes, along each axis: one rule for
// `tessera info` (a problem) and the loaders (an error).
inline constexpr int64_t kMinFramePixels = 8;

// "" when h x w patterns can be reconstructed, else why not.
inline std::string frame_size_problem(int64_t h, int64_t w) {
  if (h >= kMinFramePixels && w >= kMinFramePixels) return {};
  return "patterns of " + std::to_string(h) + " x " + std::to_string(w) + " pixels are too small: a reconstruction "
         "needs at least " + std::to_string(kMinFramePixels) + " x " + std::to_string(kMinFramePixels);
}

struct ExperimentGeometry {
  double wavelength_m = 0;        // from source_1/wavelength, else from energy
  double energy_j = 0;            // photon energy (J); 0 when only the wavelength is known
  double distance_m = 0;          // sample-detector distance
  double detector_pixel_y_m = 0;  // detector pixel pitch
  double detector_pixel_x_m = 0;
  int64_t frame_h = 0;            // frame size in detector pixels
  int64_t frame_w = 0;
  // Electron (4D-STEM) data are calibrated in reciprocal space, with no
  // detector distance: the reciprocal pixel size dk (1/m per detector pixel)
  // then fixes the sample pixel as 1 / (N dk). 0 = far-field geometry above.
  double reciprocal_pixel_y_per_m = 0;
  double reciprocal_pixel_x_per_m = 0;
  // Where the zero order (the undiffracted beam) falls, [y, x] in pixels of
  // the frames as stored (pixel centres at integers). Real detectors are not
  // centred on the beam, and the offset is usually sub-pixel. Unset until the
  // file, the user (--zero-order) or the data (centre of mass of the mean
  // pattern, ScanProblem) fixes it. The forward model's own zero order is
  // pixel [h/2, w/2]; the probe carries the difference as a tilt.
  std::optional<std::pair<double, double>> zero_order_px;
  std::string zero_order_source;  // "file", "option" or "data", for messages

  bool has_reciprocal_calibration() const { return reciprocal_pixel_y_per_m > 0 && reciprocal_pixel_x_per_m > 0; }
  // Sample-plane pixel size of far-field data: lambda * z / (N * p), or 1 / (N * dk).
  double pixel_y_m() const {
    if (has_reciprocal_calibration()) return 1.0 / (static_cast<double>(frame_h) * reciprocal_pixel_y_per_m);
    return wavelength_m * distance_m / (frame_h * detector_pixel_y_m);
  }
  double pixel_x_m() const {
    if (has_reciprocal_calibration()) return 1.0 / (static_cast<double>(frame_w) * reciprocal_pixel_x_per_m);
    return wavelength_m * distance_m / (frame_w * detector_pixel_x_m);
  }
};

// Ground truth that `tessera simulate` stores so that accuracy can be scored.
struct GroundTruth {
  torch::Tensor object;  // (L, H, W) complex64
  torch::Tensor probe;   // (M, h, w) complex64
  torch::Tensor positions_px;  // (N, 2) float64, [y, x] window top-left in object pixels
};

}  // namespace tessera
