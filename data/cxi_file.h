#pragma once
// Reading CXI 1.6 ptychography files (see /work/shared/reference/cxi.md).
//
// CxiFile opens a file, checks its structure and metadata at construction,
// and reads diffraction frames lazily. Every problem that makes the file
// unusable is a tessera::DataError whose message names the file, the HDF5 key
// and the problem, e.g.
//   "scan.cxi: /entry_1/sample_1/geometry_1/translation has 399 positions but
//    /entry_1/instrument_1/detector_1/data has 400 frames".
//
// Keys read (SI units: metres, joules):
//   /entry_1/instrument_1/detector_1/data      (N, y, x) frames, any integer or float type
//                                              (falls back to /entry_1/data_1/data)
//   /entry_1/sample_1/geometry_1/translation   (N, 3) x y z or (N, 2) x y, metres
//                                              (falls back to /entry_1/data_1/translation)
//   /entry_1/instrument_1/detector_1/distance, x_pixel_size, y_pixel_size   metres
//   /entry_1/instrument_1/source_1/wavelength  metres; takes precedence over
//   /entry_1/instrument_1/source_1/energy      joules (one of the two is required)
//   /entry_1/instrument_1/detector_1/mask      optional (y, x) integer, non-zero = pixel not used
//   /entry_1/instrument_1/detector_1/beam_center_y, beam_center_x     optional zero order: metres from the
//                                                                     first pixel's centre, or pixels with
//                                                                     attribute units = "pixel"
//   /entry_1/instrument_1/detector_1/corner_position                  optional (3,) x, y, z of the first
//                                                                     pixel's outer corner relative to the
//                                                                     beam (metres); used when there is no
//                                                                     beam centre
//   /entry_1/instrument_1/source_1/illumination (or source_1/probe)  optional probe guess
//   /entry_1/tessera_truth/{object, probe, positions_px}             optional ground truth
//
// Strictness: values must be finite and positive and in plausible SI ranges
// (a distance of 7200 "m" or an energy of 8000 "J" is rejected with a hint
// about millimetres or eV). Non-fatal oddities (energy and wavelength that
// disagree, a missing /cxi_version, ...) are listed by problems().
//
// Thread safety: a CxiFile is immutable after construction; copies share the
// open file, and read_frames may be called from several threads (the HDF5
// library is built thread-safe and serialises the calls).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "data/scan_data.h"

namespace tessera {

// The HDF5 keys of CXI 1.6 that tessera reads and writes.
namespace cxi_keys {
inline constexpr char kVersion[] = "/cxi_version";
inline constexpr char kEntry[] = "/entry_1";
inline constexpr char kData[] = "/entry_1/instrument_1/detector_1/data";
inline constexpr char kDistance[] = "/entry_1/instrument_1/detector_1/distance";
inline constexpr char kXPixelSize[] = "/entry_1/instrument_1/detector_1/x_pixel_size";
inline constexpr char kYPixelSize[] = "/entry_1/instrument_1/detector_1/y_pixel_size";
inline constexpr char kMask[] = "/entry_1/instrument_1/detector_1/mask";
inline constexpr char kBeamCenterX[] = "/entry_1/instrument_1/detector_1/beam_center_x";
inline constexpr char kBeamCenterY[] = "/entry_1/instrument_1/detector_1/beam_center_y";
inline constexpr char kCornerPosition[] = "/entry_1/instrument_1/detector_1/corner_position";
inline constexpr char kEnergy[] = "/entry_1/instrument_1/source_1/energy";
inline constexpr char kWavelength[] = "/entry_1/instrument_1/source_1/wavelength";
inline constexpr char kIllumination[] = "/entry_1/instrument_1/source_1/illumination";
inline constexpr char kProbe[] = "/entry_1/instrument_1/source_1/probe";
inline constexpr char kTranslation[] = "/entry_1/sample_1/geometry_1/translation";
inline constexpr char kDataLink[] = "/entry_1/data_1/data";
inline constexpr char kTranslationLink[] = "/entry_1/data_1/translation";
inline constexpr char kTruth[] = "/entry_1/tessera_truth";
inline constexpr char kTruthObject[] = "/entry_1/tessera_truth/object";
inline constexpr char kTruthProbe[] = "/entry_1/tessera_truth/probe";
inline constexpr char kTruthPositions[] = "/entry_1/tessera_truth/positions_px";
}  // namespace cxi_keys

// Physical constants (exact SI values).
inline constexpr double kPlanck = 6.62607015e-34;        // J s
inline constexpr double kSpeedOfLight = 299792458.0;     // m / s
inline constexpr double kElectronVolt = 1.602176634e-19; // J
// Photon wavelength (m) <-> energy (J).
inline double photon_wavelength_m(double energy_j) { return kPlanck * kSpeedOfLight / energy_j; }
inline double photon_energy_j(double wavelength_m) { return kPlanck * kSpeedOfLight / wavelength_m; }

// Largest scan extent, in sample-plane pixels along y or x, that the reader
// accepts: beyond this the positions are almost surely in the wrong unit.
inline constexpr double kMaxScanExtentPx = 65536;

class CxiFile {
 public:
  // Opens path and validates structure and metadata (not the frame values:
  // those are checked by read_frames and problems()). Throws DataError.
  explicit CxiFile(const std::string& path);

  const std::string& path() const;
  int64_t num_frames() const;
  // Wavelength (from source_1/wavelength, else from energy), energy (0 when
  // the file has only a wavelength), distance, detector pixel, frame size.
  const ExperimentGeometry& geometry() const;
  // HDF5 key the frames are read from (detector_1/data or data_1/data).
  const std::string& data_key() const;
  // On-disk element type of the frames ("uint16", "float32", ...).
  const std::string& data_type() const;

  // (N, 3) float64 x y z in metres, as stored (z = 0 when the file has (N, 2)).
  torch::Tensor translations_m() const;
  // (N, 2) float64 [y, x] in metres: translation's y and x columns.
  torch::Tensor positions_m() const;
  // (h, w) bool, true = pixel used; all true when the file has no mask.
  torch::Tensor valid_mask() const;
  bool has_mask() const;

  // Frames [begin, end) as float32 (end - begin, h, w) with one hyperslab
  // read; integer data are converted. Pixels the mask excludes are set to 0
  // (files often hold gap markers such as -1 or NaN there). Throws DataError
  // naming the frame index when a used pixel is NaN, infinite or negative.
  torch::Tensor read_frames(int64_t begin, int64_t end) const;
  // Frames at indices (any order, repeats allowed), returned in that order;
  // each run of consecutive indices is one hyperslab read. Same checks.
  torch::Tensor read_frames(const std::vector<int64_t>& indices) const;

  // Probe guess as complex64 (M, h, w) from source_1/illumination, else
  // source_1/probe; nullopt when the file has neither. Throws DataError when
  // it holds non-finite values.
  std::optional<torch::Tensor> probe_guess() const;
  // Key the probe guess comes from ("" when none).
  std::string probe_guess_key() const;
  // Ground truth written by `tessera simulate` (object (L, H, W) and probe
  // (M, h, w) complex64, positions_px (N, 2) float64); nullopt when absent.
  std::optional<GroundTruth> ground_truth() const;

  // Every problem found, one sentence each, starting with the HDF5 key:
  // the non-fatal oddities seen at construction, then a scan of all frames
  // (NaN, infinite, negative, all-zero frames, saturation markers; naming
  // the first bad frame and the count), and the probe guess and ground truth
  // values. Empty when the file is clean. Reads the whole data set.
  std::vector<std::string> problems() const;
  // Human-readable, multi-line description: frames (shape, type), geometry
  // with units, sample-plane pixel size, scan extent and step, mask fraction,
  // probe guess, ground truth, photons per frame (all frames when the data
  // are at most 256 MiB, else the first 64).
  std::string summary() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

namespace cxi_detail {
// "11.3 nm", "8 keV" style formatting used by summaries and messages.
std::string format_length(double metres);
std::string format_energy(double joules);
}  // namespace cxi_detail

}  // namespace tessera
