#pragma once
// A data set as the engine sees it: the whole scan geometry (small) and a way
// to read any subset of frames (large, read per tile only).
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "data/cxi_writer.h"
#include "data/scan_data.h"
#include "src/geometry.h"

namespace tessera {

// How to load a data file: pattern crop and bin (train/pattern_reduction.h)
// and electron probe optics that override the file's (the initial probe is
// then built by src/electron_optics.h), for either format.
struct LoadOptions {
  int64_t crop_h = 0, crop_w = 0;  // centred crop in detector pixels; 0 = full patterns
  int64_t bin = 1;                 // sum bin × bin pixels
  std::optional<double> convergence_mrad;
  std::optional<double> defocus_angstrom;
  std::optional<double> c3_mm;
  // Zero order [y, x] in detector pixels of the frames as stored, overriding
  // the file's and the estimate from the data.
  std::optional<std::pair<double, double>> zero_order;
  // Electron energy (keV) of a CXI file: its wavelength (and so the sample
  // pixel λz/(Np)) replaces the file's, which a CXI writer may have derived
  // from the energy as if it were a photon's. A 4D-STEM file's own energy is
  // used; this must then agree with it.
  std::optional<double> energy_kev;

  bool has_probe_optics() const { return convergence_mrad || defocus_angstrom || c3_mm; }
};

struct ScanProblem {
  std::string source;  // file name, for messages
  ExperimentGeometry experiment;  // from a file: zero_order_px always set (file, option or data)
  ScanGeometry scan;
  torch::Tensor valid_mask;  // (h, w) bool, detector order, true = pixel used
  std::optional<torch::Tensor> probe_guess;  // (M, h, w) complex
  std::optional<GroundTruth> truth;
  // Frames of the given global indices, (n, h, w) float32 as measured (detector order).
  std::function<torch::Tensor(const std::vector<int64_t>&)> read_frames;

  // CXI layout (data/cxi_file.h). With a convergence angle in options the
  // probe guess is the aberration probe as for 4D-STEM data below, electrons
  // of options.energy_kev or of the file's wavelength, on the reciprocal
  // pixel p / (λ z) of the file's geometry; it replaces the file's guess.
  static ScanProblem from_cxi(const std::string& path, const LoadOptions& options = {});
  // 4D-STEM layout (data/stem4d_file.h). The probe guess is the aberration
  // probe of the file's convergence angle, defocus and C3 (or the overrides in
  // options; a missing defocus or C3 is 0) on the loaded patterns' grid,
  // scaled to the mean counts per pattern; without a convergence angle there
  // is none and the engine estimates the probe from the mean pattern.
  static ScanProblem from_stem4d(const std::string& path, const LoadOptions& options = {});
  // Either format, detected by its keys (data/stem4d_file.h: detect_data_format).
  static ScanProblem from_file(const std::string& path, const LoadOptions& options = {});
  // Frames and geometry as given; the zero order is the content's, else [h/2, w/2].
  static ScanProblem from_content(CxiContent content, std::string source = "memory");

  // The same experiment with only the given positions (indices into this
  // scan, each at most once). The object grid is kept, so that
  // reconstructions of different subsets are pixel for pixel comparable.
  ScanProblem restricted_to(const std::vector<int64_t>& positions) const;
};

}  // namespace tessera
