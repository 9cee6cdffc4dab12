#pragma once
// Reading the tessera 4D-STEM HDF5 layout: a scan of Ry × Rx positions with
// one Qy × Qx diffraction pattern each, calibrated in electron-microscopy units.
//
// Layout (one group; every value a dataset, so that h5py reads f[key][()]):
//
//   /stem4d                                     group; attributes layout = "tessera-4dstem",
//                                               layout_version = 1
//   /stem4d/data                                (Ry, Rx, Qy, Qx) counts, any integer or float type;
//                                               pattern [iy, ix] is taken with the probe centred at
//                                               (y, x) = (iy * step_y, ix * step_x) in the scan's
//                                               axes; as measured (not FFT-shifted), zero order near
//                                               pixel [Qy/2, Qx/2] unless zero_order_px says where
//   /stem4d/beam_energy_kev                     scalar, accelerating voltage in kV (e.g. 300)
//   /stem4d/scan_step_angstrom                  (2,) [y, x] scan step in Å (a scalar: same step in y and x);
//                                               required unless positions_angstrom is given
//   /stem4d/positions_angstrom                  optional (Ry*Rx, 2) measured [y, x] probe positions in Å,
//                                               scan order, in the scan's axes; used instead of the step
//                                               (which, when present too, is then only informational)
//   /stem4d/scan_rotation_deg                   optional scalar θ (degrees, default 0): the angle from the
//                                               scan's axes to the detector's. Positions are rotated by
//                                               +θ to put them in detector axes (the axes of the sample
//                                               grid the patterns' Fourier transform samples):
//                                                 x_det = x cos θ − y sin θ,  y_det = x sin θ + y cos θ
//                                               With y pointing down, as arrays are displayed, +θ turns
//                                               the scan clockwise on screen: a scan step along +x moves
//                                               the probe along the detector direction at θ from +x
//                                               towards +y. |θ| <= 360
//   /stem4d/zero_order_px                       optional (2,) [y, x]: where the zero order (the centre of the
//                                               bright-field disc) falls, in detector pixels of the
//                                               patterns as stored (pixel centres at integers), inside
//                                               the pattern; becomes ExperimentGeometry::zero_order_px
//   /stem4d/reciprocal_pixel_inverse_angstrom   (2,) [y, x] Å⁻¹ per detector pixel (or a scalar), or
//   /stem4d/reciprocal_pixel_mrad               (2,) [y, x] mrad per detector pixel (or a scalar);
//                                               one of the two is required; when both are present
//                                               they must agree (k = α / λ) to 0.1 %
//   /stem4d/convergence_semiangle_mrad          optional scalar α of the probe-forming aperture (mrad)
//   /stem4d/defocus_angstrom                    optional scalar Δf (Å; sign as in src/electron_optics.h)
//   /stem4d/c3_mm                               optional scalar C3 = Cs (mm)
//   /stem4d/bad_pixel_mask                      optional (Qy, Qx) integer, non-zero = bad pixel (not used)
//   /stem4d/tessera_truth/{object, probe, positions_px}   optional ground truth of simulated data, as in
//                                               CXI files (data/cxi_file.h); positions_px (Ry*Rx, 2)
//
// Scalars may carry a "units" attribute; it is informational (the key names
// the unit). Patterns are numbered in scan order, j = iy * Rx + ix, which is
// also the order of positions_m() and of read_frames.
//
// Every problem that makes the file unusable is a tessera::DataError naming
// the file, the HDF5 key and the problem, as CxiFile does (layout_version
// stays 1: the optional keys leave every older file valid). Frames are read
// lazily (one hyperslab selection per run of consecutive patterns) and checked
// for NaN, infinite and negative counts when read.
//
// Thread safety: immutable after construction; copies share the open file.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "data/scan_data.h"

namespace tessera {

namespace stem4d_keys {
inline constexpr char kGroup[] = "/stem4d";
inline constexpr char kData[] = "/stem4d/data";
inline constexpr char kEnergy[] = "/stem4d/beam_energy_kev";
inline constexpr char kStep[] = "/stem4d/scan_step_angstrom";
inline constexpr char kPositions[] = "/stem4d/positions_angstrom";
inline constexpr char kRotation[] = "/stem4d/scan_rotation_deg";
inline constexpr char kZeroOrder[] = "/stem4d/zero_order_px";
inline constexpr char kInverseAngstrom[] = "/stem4d/reciprocal_pixel_inverse_angstrom";
inline constexpr char kMrad[] = "/stem4d/reciprocal_pixel_mrad";
inline constexpr char kConvergence[] = "/stem4d/convergence_semiangle_mrad";
inline constexpr char kDefocus[] = "/stem4d/defocus_angstrom";
inline constexpr char kC3[] = "/stem4d/c3_mm";
inline constexpr char kMask[] = "/stem4d/bad_pixel_mask";
inline constexpr char kTruth[] = "/stem4d/tessera_truth";
inline constexpr char kTruthObject[] = "/stem4d/tessera_truth/object";
inline constexpr char kTruthProbe[] = "/stem4d/tessera_truth/probe";
inline constexpr char kTruthPositions[] = "/stem4d/tessera_truth/positions_px";
inline constexpr char kLayoutName[] = "tessera-4dstem";
inline constexpr int64_t kLayoutVersion = 1;
}  // namespace stem4d_keys

// The calibration of a 4D-STEM data set, in the file's units.
struct Stem4dCalibration {
  double energy_kev = 0;
  double wavelength_angstrom = 0;          // relativistic, from the energy
  double step_y_angstrom = 0, step_x_angstrom = 0;  // 0 when only positions_angstrom gives the scan
  std::optional<double> scan_rotation_deg;  // scan axes -> detector axes (sign convention above)
  std::optional<std::pair<double, double>> zero_order_px;  // [y, x] detector pixels of the patterns as stored
  double dk_y = 0, dk_x = 0;               // Å⁻¹ per detector pixel
  std::optional<double> convergence_mrad;  // probe optics, when the file has them
  std::optional<double> defocus_angstrom;
  std::optional<double> c3_mm;

  double mrad_per_pixel_y() const { return dk_y * wavelength_angstrom * 1e3; }
  double mrad_per_pixel_x() const { return dk_x * wavelength_angstrom * 1e3; }
};

class Stem4dFile {
 public:
  // Opens path and validates structure and calibration (not the counts:
  // read_frames and problems() check those). Throws DataError.
  explicit Stem4dFile(const std::string& path);

  const std::string& path() const;
  int64_t scan_y() const;  // Ry
  int64_t scan_x() const;  // Rx
  int64_t num_frames() const;  // Ry * Rx
  int64_t frame_h() const;  // Qy
  int64_t frame_w() const;  // Qx
  const std::string& data_type() const;  // on-disk element type ("uint16", "float32", ...)
  const Stem4dCalibration& calibration() const;
  // As the engine uses it: wavelength and reciprocal pixel in SI units, frame
  // size; no distance or detector pixel (sample pixel = 1 / (N Δk)).
  ExperimentGeometry geometry() const;

  // (Ry*Rx, 2) float64 [y, x] probe positions in metres, scan order, in
  // detector axes (the step or the measured positions, rotated by the scan rotation).
  torch::Tensor positions_m() const;
  bool has_measured_positions() const;  // from positions_angstrom, not the step
  // (Qy, Qx) bool, true = pixel used; all true without a bad-pixel mask.
  torch::Tensor valid_mask() const;
  bool has_mask() const;

  // Patterns [begin, end) in scan order as float32 (end - begin, Qy, Qx);
  // bad pixels are set to 0. Throws DataError naming the pattern (index and
  // scan position) when a used pixel is NaN, infinite or negative.
  torch::Tensor read_frames(int64_t begin, int64_t end) const;
  // Patterns at the given scan-order indices, in that order (repeats allowed).
  torch::Tensor read_frames(const std::vector<int64_t>& indices) const;

  std::optional<GroundTruth> ground_truth() const;

  // Every problem found, one sentence each starting with the key (a scan of
  // all counts included); empty when the file is clean.
  std::vector<std::string> problems() const;
  // Human-readable description: scan, patterns, calibration with units,
  // sample pixel, probe optics, mask, truth, counts per pattern.
  std::string summary() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// Which layout a data file uses, decided by its keys: /stem4d -> 4D-STEM,
// /entry_1 -> CXI. Throws DataError (listing the top-level keys) for neither,
// and the HDF5 wrapper's errors for a missing, non-HDF5 or truncated file.
enum class DataFormat { cxi, stem4d };
DataFormat detect_data_format(const std::string& path);

// (N, 2) [y, x] positions in the scan's axes -> detector axes: rotated by
// +rotation_deg as /stem4d/scan_rotation_deg defines it (any length unit).
torch::Tensor scan_to_detector_axes(const torch::Tensor& positions_yx, double rotation_deg);

}  // namespace tessera
