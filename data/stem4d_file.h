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
//                                               (y, x) = (iy * step_y, ix * step_x); zero order near
//                                               pixel [Qy/2, Qx/2] (as measured, not FFT-shifted)
//   /stem4d/beam_energy_kev                     scalar, accelerating voltage in kV (e.g. 300)
//   /stem4d/scan_step_angstrom                  (2,) [y, x] scan step in Å (a scalar: same step in y and x)
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
// the file, the HDF5 key and the problem, as CxiFile does. Frames are read
// lazily (one hyperslab selection per run of consecutive patterns) and checked
// for NaN, infinite and negative counts when read.
//
// Thread safety: immutable after construction; copies share the open file.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "data/scan_data.h"

namespace tessera {

namespace stem4d_keys {
inline constexpr char kGroup[] = "/stem4d";
inline constexpr char kData[] = "/stem4d/data";
inline constexpr char kEnergy[] = "/stem4d/beam_energy_kev";
inline constexpr char kStep[] = "/stem4d/scan_step_angstrom";
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
  double step_y_angstrom = 0, step_x_angstrom = 0;
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

  // (Ry*Rx, 2) float64 [y, x] probe positions in metres, scan order.
  torch::Tensor positions_m() const;
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

}  // namespace tessera
