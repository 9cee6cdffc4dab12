#include "data/cxi_file.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "data/frame_stack.h"
#include "src/error.h"
#include "data/validation_text.h"
#include "src/io/hdf5.h"

namespace tessera {

namespace cxi_detail {

namespace {
std::string fmt(double v, const char* spec = "%.4g") { return validation_text::format_number(v, spec); }
}  // namespace

std::string format_length(double m) {
  if (!std::isfinite(m)) return fmt(m) + " m";
  const double a = std::fabs(m);
  if (a == 0) return "0 m";
  if (a >= 1) return fmt(m) + " m";
  if (a >= 1e-3) return fmt(m * 1e3) + " mm";
  if (a >= 1e-6) return fmt(m * 1e6) + " µm";
  if (a >= 1e-9) return fmt(m * 1e9) + " nm";
  return fmt(m * 1e12) + " pm";
}

std::string format_energy(double j) {
  const double ev = j / kElectronVolt;
  if (!std::isfinite(ev)) return fmt(j) + " J";
  if (std::fabs(ev) >= 1e3) return fmt(ev / 1e3) + " keV";
  return fmt(ev) + " eV";
}

}  // namespace cxi_detail

using cxi_detail::fmt;
using cxi_detail::format_energy;
using cxi_detail::format_length;
namespace keys = cxi_keys;

struct CxiFile::Impl {
  std::string path;
  h5::File file;
  h5::Dataset data;
  std::string data_key;
  std::string translation_key;
  h5::TypeInfo data_type;
  int64_t n = 0;
  ExperimentGeometry geometry;
  torch::Tensor translations;  // (N, 3) float64
  std::optional<torch::Tensor> mask_valid;  // (h, w) bool
  std::string probe_key;
  bool has_truth = false;
  std::optional<int64_t> cxi_version;
  std::vector<std::string> notes;  // non-fatal problems found at construction

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw DataError(path + ": " + key + " " + what);
  }

  // Reads the frames [begin, end) raw (float32), zeroing excluded pixels.
  torch::Tensor read_block(int64_t begin, int64_t end) const {
    torch::Tensor out = data.read_rows(begin, end, torch::kFloat);
    if (mask_valid) out.masked_fill_(mask_valid->logical_not().unsqueeze(0), 0.0f);
    return out;
  }

  // Throws when a frame of block (whose row i is frame index_of(i)) holds
  // NaN, infinite or negative intensities.
  template <typename IndexOf>
  void check_frames(const torch::Tensor& block, const IndexOf& index_of) const {
    const auto bad = validation_text::find_bad_counts(block);
    if (!bad) return;
    const int64_t count = bad->bad_frames;
    const bool nans = bad->nans, infs = bad->infs, negs = bad->negatives;
    std::string message = "frame " + std::to_string(index_of(bad->row)) + " has " + bad->describe("values") +
                          "; intensities must be finite photon counts >= 0";
    if (count > 1) message += " (" + std::to_string(count) + " of the " + std::to_string(block.size(0)) + " frames read are bad)";
    if (negs && !nans && !infs)
      message += ". If a background was subtracted, clip negative values to 0; if they mark detector gaps, exclude those pixels with detector_1/mask";
    else if (nans || infs)
      message += ". If they mark detector gaps, exclude those pixels with detector_1/mask";
    fail(data_key + ":", message);
  }
};

using validation_text::is_real_number;
using validation_text::plural;

CxiFile::CxiFile(const std::string& path) {
  auto impl = std::make_shared<Impl>();
  Impl& s = *impl;
  s.path = path;
  s.file = h5::File::open(path);
  const h5::File& f = s.file;

  auto not_cxi_hint = [&]() -> std::string {
    if (f.exists(keys::kEntry)) return "";
    std::string top;
    for (const auto& c : f.children()) top += (top.empty() ? "" : ", ") + c;
    return "; the file has no /entry_1 group, so it is not a CXI file (top level: " +
           (top.empty() ? std::string("empty") : top) + ")";
  };
  // Opens a required dataset (or its fallback), with a message saying what it is for.
  auto open_required = [&](const std::string& key, const std::string& fallback, const std::string& what) {
    if (f.exists(key)) return f.dataset(key);
    if (!fallback.empty() && f.exists(fallback)) return f.dataset(fallback);
    if (f.is_dangling_link(key)) f.dataset(key);  // throws, naming the link target
    if (!fallback.empty() && f.is_dangling_link(fallback)) f.dataset(fallback);
    s.fail(key, "is missing: " + what + not_cxi_hint());
  };

  // ---- frames
  s.data = open_required(keys::kData, keys::kDataLink, "the diffraction frames (frames, y, x) are required");
  s.data_key = s.data.key();
  s.data_type = s.data.type();
  {
    const auto shape = s.data.shape();
    const std::string sh = h5::shape_string(shape);
    if (shape.size() != 3) {
      std::string hint;
      if (shape.size() == 4) hint = "; 4-D data such as 4D-STEM (Ry, Rx, Qy, Qx) must be reshaped to (Ry*Rx, Qy, Qx)";
      if (shape.size() == 2) hint = "; a single frame must be stored as 1 × y × x";
      s.fail(s.data_key, "has shape " + sh + " (" + plural(static_cast<int64_t>(shape.size()), "dimension", "dimensions") +
                             "); expected 3 dimensions: (frames, y, x)" + hint);
    }
    const auto& t = s.data_type;
    if (t.kind == h5::Kind::complex)
      s.fail(s.data_key, "holds complex values; diffraction frames must be real intensities (photon counts)");
    if (!is_real_number(t))
      s.fail(s.data_key, "holds " + t.name + " values; diffraction frames must be numbers (integer or float photon counts)");
    if (shape[0] == 0) s.fail(s.data_key, "is empty: it holds no frames (shape " + sh + ")");
    if (shape[1] == 0 || shape[2] == 0) s.fail(s.data_key, "is empty: its frames have no pixels (shape " + sh + ")");
    const auto missing = s.data.unavailable_filters();
    if (!missing.empty()) {
      std::string names;
      for (const auto& m : missing) names += (names.empty() ? "" : ", ") + m;
      s.fail(s.data_key, "is compressed with " + names +
                             ", which this HDF5 library cannot decode: install the HDF5 filter plugin (e.g. hdf5plugin, or "
                             "the bitshuffle/LZ4 plugins for Eiger data) and point HDF5_PLUGIN_PATH at it, or rewrite the "
                             "file without that compression");
    }
    s.n = shape[0];
    s.geometry.frame_h = shape[1];
    s.geometry.frame_w = shape[2];
    if (s.data.has_attribute("axes")) {
      std::string axes;
      try {
        axes = s.data.read_string_attribute("axes");
      } catch (const DataError&) {
      }
      if (!axes.empty() && axes != "translation:y:x")
        s.notes.push_back(s.data_key + ": attribute axes is '" + axes +
                          "', not 'translation:y:x'; tessera reads the frames as (frame, y, x)");
    }
  }
  const int64_t n = s.n, h = s.geometry.frame_h, w = s.geometry.frame_w;
  if (const auto small = frame_size_problem(h, w); !small.empty()) s.notes.push_back(s.data_key + ": " + small);

  // ---- positions
  {
    h5::Dataset tr = open_required(keys::kTranslation, keys::kTranslationLink, "the scan positions (one row x, y, z in metres per frame) are required");
    const std::string key = tr.key();
    const auto shape = tr.shape();
    const auto type = tr.type();
    if (!is_real_number(type)) s.fail(key, "holds " + type.name + " values; scan positions must be real numbers (metres)");
    if (shape.size() != 2) {
      if (shape.size() == 1 && shape[0] != n)
        s.fail(key, "has " + plural(shape[0], "position", "positions") + " but " + s.data_key + " has " +
                        plural(n, "frame", "frames"));
      s.fail(key, "has shape " + h5::shape_string(shape) + "; expected (frames, 3): x, y, z in metres, one row per frame" +
                      " (or (frames, 2): x, y)");
    }
    if (shape[1] != 3 && shape[1] != 2) {
      if ((shape[0] == 3 || shape[0] == 2) && shape[1] == n)
        s.fail(key, "has shape " + h5::shape_string(shape) + ", which looks transposed: expected " + std::to_string(n) +
                        " × 3 (one row x, y, z per frame)");
      s.fail(key, "has " + std::to_string(shape[1]) + " columns; expected 3 (x, y, z in metres) or 2 (x, y)");
    }
    if (shape[0] != n)
      s.fail(key, "has " + plural(shape[0], "position", "positions") + " but " + s.data_key + " has " +
                      plural(n, "frame", "frames"));
    torch::Tensor t = tr.read(torch::kDouble);
    if (t.size(1) == 2) t = torch::cat({t, torch::zeros({n, 1}, t.options())}, 1);
    auto finite_rows = torch::isfinite(t.narrow(1, 0, 2)).all(1);
    const int64_t bad = n - finite_rows.sum().item<int64_t>();
    if (bad > 0) {
      const int64_t first = finite_rows.logical_not().nonzero()[0][0].item<int64_t>();
      s.fail(key, "position " + std::to_string(first) + " is not a finite number (x = " + fmt(t[first][0].item<double>()) +
                      ", y = " + fmt(t[first][1].item<double>()) + "); " + std::to_string(bad) + " of " +
                      std::to_string(n) + " positions are NaN or infinite");
    }
    if (!torch::isfinite(t.select(1, 2)).all().item<bool>())
      s.notes.push_back(key + ": some z values are NaN or infinite (z is not used)");
    s.translations = t.contiguous();
    s.translation_key = key;
  }

  // ---- scalars
  // Reads a positive finite number; nullopt if missing and not required.
  auto read_positive = [&](const std::string& key, const std::string& what, const std::string& unit,
                           bool required) -> std::optional<double> {
    if (!f.exists(key)) {
      if (f.is_dangling_link(key)) f.dataset(key);
      if (!required) return std::nullopt;
      s.fail(key, "is missing: the " + what + " (" + unit + ") is required" + not_cxi_hint());
    }
    h5::Dataset d = f.dataset(key);
    const auto type = d.type();
    if (!is_real_number(type)) s.fail(key, "holds " + type.name + " values; the " + what + " must be a number (" + unit + ")");
    const int64_t count = d.numel();
    if (count == 0) s.fail(key, "is empty; the " + what + " must be a single number (" + unit + ")");
    double v;
    if (count == 1) {
      v = d.read_scalar();
    } else {
      torch::Tensor all = d.read(torch::kDouble).reshape({-1});
      v = all[0].item<double>();
      if (!torch::equal(all, torch::full_like(all, v)))
        s.fail(key, "holds " + std::to_string(count) + " different values (shape " + h5::shape_string(d.shape()) +
                        "); expected a single " + what + " (" + unit + ")");
    }
    if (std::isnan(v)) s.fail(key, "is NaN; the " + what + " must be a finite number (" + unit + ")");
    if (std::isinf(v)) s.fail(key, "is infinite; the " + what + " must be a finite number (" + unit + ")");
    if (v <= 0) s.fail(key, "is " + fmt(v, "%.6g") + "; the " + what + " must be positive (" + unit + ")");
    return v;
  };

  const double distance = *read_positive(keys::kDistance, "sample-detector distance", "metres", true);
  if (distance > 100)
    s.fail(keys::kDistance, "is " + fmt(distance, "%.6g") + " m, longer than any ptychography beamline; is it in millimetres? CXI stores metres (" +
                                fmt(distance, "%.6g") + " mm = " + fmt(distance * 1e-3, "%.6g") + " m)");
  s.geometry.distance_m = distance;
  for (const char* key : {keys::kXPixelSize, keys::kYPixelSize}) {
    const double p = *read_positive(key, "detector pixel size", "metres", true);
    if (p > 0.01)
      s.fail(key, "is " + fmt(p, "%.6g") + " m, but detector pixels are 1 µm to 1 mm; is it in micrometres? CXI stores metres (" +
                      fmt(p, "%.6g") + " µm = " + fmt(p * 1e-6, "%.6g") + " m)");
    if (p < 1e-8)
      s.fail(key, "is " + fmt(p, "%.6g") + " m, but detector pixels are 1 µm to 1 mm; CXI stores metres");
    (key == keys::kXPixelSize ? s.geometry.detector_pixel_x_m : s.geometry.detector_pixel_y_m) = p;
  }

  // ---- zero order (optional): where the direct beam meets the detector
  {
    const bool by = f.exists(keys::kBeamCenterY), bx = f.exists(keys::kBeamCenterX);
    if (by != bx)
      s.fail(by ? keys::kBeamCenterY : keys::kBeamCenterX, std::string("is given without ") +
                                                           (by ? keys::kBeamCenterX : keys::kBeamCenterY) +
                                                           ": the beam centre needs both coordinates");
    auto finite_scalar = [&](const std::string& key, const std::string& what) {
      h5::Dataset d = f.dataset(key);
      if (!is_real_number(d.type()) || d.numel() != 1)
        s.fail(key, "must be a single number: the " + what);
      const double v = d.read_scalar();
      if (!std::isfinite(v)) s.fail(key, "is " + fmt(v, "%.6g") + "; the " + what + " must be finite");
      return v;
    };
    std::optional<std::pair<double, double>> z;
    if (by && bx) {
      // NeXus lets the unit be pixels or a length; CXI's default is metres.
      auto in_pixels = [&](const char* key, double pixel_m) {
        h5::Dataset d = f.dataset(key);
        std::string unit = d.has_attribute("units") ? d.read_string_attribute("units") : "m";
        const double v = finite_scalar(key, "beam centre (metres from the centre of the first pixel, or pixels with "
                                            "units = \"pixel\")");
        if (unit == "pixel" || unit == "pixels" || unit == "px") return v;
        if (unit == "m" || unit == "metre" || unit == "meter" || unit == "metres" || unit == "meters") return v / pixel_m;
        s.fail(key, "has units \"" + unit + "\"; expected \"m\" or \"pixel\"");
        return 0.0;
      };
      z = std::make_pair(in_pixels(keys::kBeamCenterY, s.geometry.detector_pixel_y_m),
                         in_pixels(keys::kBeamCenterX, s.geometry.detector_pixel_x_m));
    } else if (f.exists(keys::kCornerPosition)) {
      h5::Dataset d = f.dataset(keys::kCornerPosition);
      if (!is_real_number(d.type()) || d.numel() != 3)
        s.fail(keys::kCornerPosition, "must hold 3 numbers (x, y, z of the first pixel's outer corner, metres)");
      auto c = d.read(torch::kDouble).reshape({-1});
      if (!torch::isfinite(c).all().item<bool>()) s.fail(keys::kCornerPosition, "holds NaN or infinite values");
      // The beam (x = y = 0) lies -corner / pixel from the corner, half a pixel less from the first pixel's centre.
      z = std::make_pair(-c[1].item<double>() / s.geometry.detector_pixel_y_m - 0.5,
                         -c[0].item<double>() / s.geometry.detector_pixel_x_m - 0.5);
    }
    if (z) {
      const double h = static_cast<double>(s.geometry.frame_h), w = static_cast<double>(s.geometry.frame_w);
      if (z->first < 0 || z->first > h - 1 || z->second < 0 || z->second > w - 1)
        s.fail(by ? keys::kBeamCenterY : keys::kCornerPosition,
               "puts the zero order at pixel (" + fmt(z->first, "%.2f") + ", " + fmt(z->second, "%.2f") +
                   "), outside the " + std::to_string(s.geometry.frame_h) + " x " + std::to_string(s.geometry.frame_w) +
                   " frames; ptychography needs the direct beam on the detector");
      s.geometry.zero_order_px = z;
      s.geometry.zero_order_source = "file";
    }
  }

  // ---- wavelength / energy
  {
    const bool has_wl = f.exists(keys::kWavelength) || f.is_dangling_link(keys::kWavelength);
    const bool has_e = f.exists(keys::kEnergy) || f.is_dangling_link(keys::kEnergy);
    if (!has_wl && !has_e)
      s.fail(keys::kEnergy, std::string("is missing and so is ") + keys::kWavelength +
                                ": the photon energy (joules) or the wavelength (metres) is required" + not_cxi_hint());
    // Energy checks as a message (empty when fine).
    auto energy_problem = [&](double e) -> std::string {
      if (e > 1e-12) {
        std::string m = "is " + fmt(e, "%.6g") + " J, more than any X-ray photon (1e-12 J = 6 MeV); CXI stores the photon energy in joules: ";
        if (e >= 100) return m + "if this is " + fmt(e, "%.6g") + " eV, store " + fmt(e * kElectronVolt, "%.6g") + " J";
        if (e >= 1) return m + "if this is " + fmt(e, "%.6g") + " keV, store " + fmt(e * 1e3 * kElectronVolt, "%.6g") + " J";
        return m + "this may be the storage-ring electron energy (NeXus NXsource/energy), not the photon energy";
      }
      if (e < 1e-21)
        return "is " + fmt(e, "%.6g") + " J (" + format_energy(e) + "), below any photon energy used for imaging; CXI stores joules";
      return "";
    };
    if (has_wl) {
      const double wl = *read_positive(keys::kWavelength, "wavelength", "metres", true);
      if (wl > 1e-4)
        s.fail(keys::kWavelength, "is " + fmt(wl, "%.6g") + " m, longer than any wavelength used for ptychography; CXI stores metres (" +
                                      fmt(wl, "%.6g") + " Å = " + fmt(wl * 1e-10, "%.6g") + " m, " + fmt(wl, "%.6g") + " nm = " +
                                      fmt(wl * 1e-9, "%.6g") + " m)");
      if (wl < 1e-14)
        s.fail(keys::kWavelength, "is " + fmt(wl, "%.6g") + " m, shorter than any wavelength used for ptychography; CXI stores metres");
      s.geometry.wavelength_m = wl;
      if (has_e) {
        // The wavelength is used; a bad energy is only reported.
        try {
          const double e = *read_positive(keys::kEnergy, "photon energy", "joules", true);
          std::string problem = energy_problem(e);
          if (!problem.empty()) {
            s.notes.push_back(std::string(keys::kEnergy) + " " + problem + " (ignored: " + keys::kWavelength + " is used)");
          } else {
            s.geometry.energy_j = e;
            const double wl_e = photon_wavelength_m(e);
            if (std::fabs(wl_e - wl) > 1e-3 * wl)
              s.notes.push_back(std::string(keys::kWavelength) + " (" + format_length(wl) + ") and " + keys::kEnergy + " (" +
                                format_energy(e) + ", i.e. " + format_length(wl_e) + ") disagree by " +
                                fmt(100 * std::fabs(wl_e - wl) / wl, "%.2g") + "%; the wavelength is used");
          }
        } catch (const DataError& e) {
          std::string m = e.what();
          if (m.rfind(path + ": ", 0) == 0) m = m.substr(path.size() + 2);
          s.notes.push_back(m + " (ignored: " + keys::kWavelength + " is used)");
        }
      }
    } else {
      const double e = *read_positive(keys::kEnergy, "photon energy", "joules", true);
      std::string problem = energy_problem(e);
      if (!problem.empty()) s.fail(keys::kEnergy, problem);
      s.geometry.energy_j = e;
      s.geometry.wavelength_m = photon_wavelength_m(e);
    }
  }

  // ---- mask
  if (f.exists(keys::kMask) || f.is_dangling_link(keys::kMask)) {
    h5::Dataset m = f.dataset(keys::kMask);
    const auto type = m.type();
    const auto shape = m.shape();
    if (type.kind != h5::Kind::integer && type.kind != h5::Kind::unsigned_integer && type.kind != h5::Kind::boolean)
      s.fail(keys::kMask, "holds " + type.name + " values; the mask must hold integer flags (0 = pixel used, non-zero = pixel excluded)");
    if (shape.size() != 2) {
      std::string hint = shape.size() == 3 ? "; per-frame masks are not supported: combine them into one" : "";
      s.fail(keys::kMask, "has shape " + h5::shape_string(shape) + "; expected " + std::to_string(h) + " × " + std::to_string(w) +
                              " (y, x), the size of one frame" + hint);
    }
    if (shape[0] != h || shape[1] != w) {
      std::string hint = (shape[0] == w && shape[1] == h) ? " (it looks transposed)" : "";
      s.fail(keys::kMask, "has shape " + h5::shape_string(shape) + " but the frames of " + s.data_key + " are " +
                              std::to_string(h) + " × " + std::to_string(w) + hint);
    }
    torch::Tensor valid = m.read(torch::kLong) == 0;
    const int64_t used = valid.sum().item<int64_t>();
    if (used == 0) s.fail(keys::kMask, "excludes every pixel (all values are non-zero); 0 marks a pixel that is used");
    s.mask_valid = valid;
  }

  // ---- scan extent in sample-plane pixels
  {
    const double py = s.geometry.pixel_y_m(), px = s.geometry.pixel_x_m();
    auto y = s.translations.select(1, 1), x = s.translations.select(1, 0);
    const double ey = (y.max().item<double>() - y.min().item<double>()) / py + static_cast<double>(h);
    const double ex = (x.max().item<double>() - x.min().item<double>()) / px + static_cast<double>(w);
    if (!std::isfinite(ey) || !std::isfinite(ex) || ey > kMaxScanExtentPx || ex > kMaxScanExtentPx) {
      s.fail(s.translation_key,
             "spans " + fmt(ey, "%.4g") + " × " + fmt(ex, "%.4g") + " pixels of the sample plane (y × x; pixel " +
                 format_length(py) + " × " + format_length(px) + " from wavelength " + format_length(s.geometry.wavelength_m) +
                 ", distance " + format_length(distance) + ", detector pixel " + format_length(s.geometry.detector_pixel_y_m) +
                 " × " + format_length(s.geometry.detector_pixel_x_m) +
                 "), more than " + fmt(kMaxScanExtentPx, "%.0f") +
                 ": the probe windows fall outside any reasonable object. Are the positions in metres, and the distance, pixel size and energy right?");
    }
    if (n > 1 && ey == static_cast<double>(h) && ex == static_cast<double>(w))
      s.notes.push_back(s.translation_key + ": all " + std::to_string(n) + " positions are identical (no scan)");
  }

  // ---- probe guess
  for (const char* key : {keys::kIllumination, keys::kProbe}) {
    if (!f.exists(key) && !f.is_dangling_link(key)) continue;
    h5::Dataset p = f.dataset(key);
    const auto type = p.type();
    const auto shape = p.shape();
    if (type.kind != h5::Kind::complex && !is_real_number(type))
      s.fail(key, "holds " + type.name + " values; the probe guess must be complex (or real) numbers");
    const bool ok = (shape.size() == 2 || shape.size() == 3) && shape[shape.size() - 2] == h && shape.back() == w &&
                    (shape.size() == 2 || shape[0] > 0);
    if (!ok)
      s.fail(key, "has shape " + h5::shape_string(shape) + "; the probe guess must be " + std::to_string(h) + " × " +
                      std::to_string(w) + " like the frames (or modes × " + std::to_string(h) + " × " + std::to_string(w) + ")");
    // Checked before anything reads it: a damaged or hostile header could
    // declare billions of modes, and reading them would exhaust memory first.
    const int64_t modes = shape.size() == 3 ? shape[0] : 1;
    const double gib = static_cast<double>(modes) * static_cast<double>(h) * static_cast<double>(w) * 8.0 /
                       (1024.0 * 1024.0 * 1024.0);
    if (gib > 4)
      s.fail(key, "declares " + std::to_string(modes) + " probe modes (" + std::to_string(static_cast<int64_t>(gib)) +
                      " GiB as complex64); a probe guess holds a few modes");
    s.probe_key = key;
    break;
  }

  // ---- ground truth
  if (f.exists(keys::kTruth)) {
    for (const char* key : {keys::kTruthObject, keys::kTruthProbe, keys::kTruthPositions})
      if (!f.exists(key)) s.fail(key, "is missing: a ground truth needs object, probe and positions_px");
    h5::Dataset o = f.dataset(keys::kTruthObject), p = f.dataset(keys::kTruthProbe), q = f.dataset(keys::kTruthPositions);
    auto os = o.shape(), ps = p.shape(), qs = q.shape();
    if ((os.size() != 2 && os.size() != 3) || (os.size() == 3 && os[0] == 0))
      s.fail(keys::kTruthObject, "has shape " + h5::shape_string(os) + "; expected (slices, H, W)");
    if (os[os.size() - 2] < h || os.back() < w)
      s.fail(keys::kTruthObject, "has shape " + h5::shape_string(os) + ", smaller than one " + std::to_string(h) + " × " +
                                     std::to_string(w) + " frame");
    if (!((ps.size() == 2 || ps.size() == 3) && ps[ps.size() - 2] == h && ps.back() == w))
      s.fail(keys::kTruthProbe, "has shape " + h5::shape_string(ps) + "; expected (modes, " + std::to_string(h) + ", " +
                                    std::to_string(w) + ") like the frames");
    if (qs.size() != 2 || qs[1] != 2)
      s.fail(keys::kTruthPositions, "has shape " + h5::shape_string(qs) + "; expected (frames, 2): y, x in object pixels");
    if (qs[0] != n)
      s.fail(keys::kTruthPositions, "has " + plural(qs[0], "position", "positions") + " but " + s.data_key + " has " +
                                        plural(n, "frame", "frames"));
    for (auto* d : {&o, &p})
      if (d->type().kind != h5::Kind::complex && !is_real_number(d->type()))
        s.fail(d->key(), "holds " + d->type().name + " values; expected complex numbers");
    if (!is_real_number(q.type())) s.fail(keys::kTruthPositions, "holds " + q.type().name + " values; expected numbers");
    s.has_truth = true;
  }

  // ---- version
  if (f.exists(keys::kVersion)) {
    try {
      s.cxi_version = static_cast<int64_t>(std::llround(f.dataset(keys::kVersion).read_scalar()));
    } catch (const DataError&) {
      s.notes.push_back(std::string(keys::kVersion) + " is not a number");
    }
  } else {
    s.notes.push_back(std::string(keys::kVersion) + " is missing (CXI files carry their version, e.g. 160)");
  }

  impl_ = std::move(impl);
}

const std::string& CxiFile::path() const { return impl_->path; }
int64_t CxiFile::num_frames() const { return impl_->n; }
const ExperimentGeometry& CxiFile::geometry() const { return impl_->geometry; }
const std::string& CxiFile::data_key() const { return impl_->data_key; }
const std::string& CxiFile::data_type() const { return impl_->data_type.name; }
torch::Tensor CxiFile::translations_m() const { return impl_->translations.clone(); }

torch::Tensor CxiFile::positions_m() const {
  return torch::stack({impl_->translations.select(1, 1), impl_->translations.select(1, 0)}, 1).contiguous();
}

torch::Tensor CxiFile::valid_mask() const {
  if (impl_->mask_valid) return impl_->mask_valid->clone();
  return torch::ones({impl_->geometry.frame_h, impl_->geometry.frame_w}, torch::kBool);
}

bool CxiFile::has_mask() const { return impl_->mask_valid.has_value(); }

torch::Tensor CxiFile::read_frames(int64_t begin, int64_t end) const {
  const Impl& s = *impl_;
  if (begin < 0 || end < begin || end > s.n)
    s.fail(s.data_key + ":", "frames [" + std::to_string(begin) + ", " + std::to_string(end) + ") requested but the file has " +
                                 plural(s.n, "frame", "frames"));
  torch::Tensor out = s.read_block(begin, end);
  s.check_frames(out, [&](int64_t row) { return begin + row; });
  return out;
}

torch::Tensor CxiFile::read_frames(const std::vector<int64_t>& indices) const {
  const Impl& s = *impl_;
  for (int64_t i : indices)
    if (i < 0 || i >= s.n)
      s.fail(s.data_key + ":", "frame " + std::to_string(i) + " requested but the file has " + plural(s.n, "frame", "frames") +
                                   " (0 to " + std::to_string(s.n - 1) + ")");
  const int64_t k = static_cast<int64_t>(indices.size());
  torch::Tensor out = torch::empty({k, s.geometry.frame_h, s.geometry.frame_w}, torch::kFloat);
  frame_stack::read_runs(indices, out, [&](int64_t first, int64_t len, torch::Tensor rows) {
    s.data.read_rows_into(first, first + len, rows);
  });
  if (s.mask_valid) out.masked_fill_(s.mask_valid->logical_not().unsqueeze(0), 0.0f);
  s.check_frames(out, [&](int64_t row) { return indices[static_cast<size_t>(row)]; });
  return out;
}

std::string CxiFile::probe_guess_key() const { return impl_->probe_key; }

std::optional<torch::Tensor> CxiFile::probe_guess() const {
  const Impl& s = *impl_;
  if (s.probe_key.empty()) return std::nullopt;
  torch::Tensor p = s.file.dataset(s.probe_key).read(torch::kComplexFloat);
  if (p.dim() == 2) p = p.unsqueeze(0);
  if (!torch::isfinite(torch::view_as_real(p)).all().item<bool>())
    s.fail(s.probe_key, "holds NaN or infinite values; the probe guess must be finite");
  if (torch::view_as_real(p).abs().max().item<float>() == 0.0f)
    s.fail(s.probe_key, "is zero everywhere; a probe guess must carry some amplitude");
  return p.contiguous();
}

std::optional<GroundTruth> CxiFile::ground_truth() const {
  const Impl& s = *impl_;
  if (!s.has_truth) return std::nullopt;
  GroundTruth t;
  t.object = s.file.dataset(keys::kTruthObject).read(torch::kComplexFloat);
  if (t.object.dim() == 2) t.object = t.object.unsqueeze(0);
  t.probe = s.file.dataset(keys::kTruthProbe).read(torch::kComplexFloat);
  if (t.probe.dim() == 2) t.probe = t.probe.unsqueeze(0);
  t.positions_px = s.file.dataset(keys::kTruthPositions).read(torch::kDouble);
  if (!torch::isfinite(t.positions_px).all().item<bool>())
    s.fail(keys::kTruthPositions, "holds NaN or infinite positions");
  return t;
}

namespace {

struct BadFrames {
  int64_t count = 0;
  int64_t first = -1;
  void add(const torch::Tensor& rows, int64_t offset) {
    auto idx = rows.nonzero();
    if (idx.numel() == 0) return;
    if (first < 0) first = offset + idx[0][0].item<int64_t>();
    count += idx.size(0);
  }
};

}  // namespace

std::vector<std::string> CxiFile::problems() const {
  const Impl& s = *impl_;
  std::vector<std::string> out = s.notes;
  const int64_t h = s.geometry.frame_h, w = s.geometry.frame_w;
  const int64_t step = frame_stack::frames_per_block(h, w);
  BadFrames nan, inf, neg, zero, saturated, huge;
  double lowest = 0;
  double type_max = 0;
  if (s.data_type.kind == h5::Kind::unsigned_integer && s.data_type.size <= 4)
    type_max = std::ldexp(1.0, static_cast<int>(s.data_type.size * 8)) - 1;
  const auto starts = validation_text::blocks_to_scan(s.n, step, h * w * 4);
  int64_t scanned = 0;
  for (const int64_t b : starts) {
    const int64_t e = std::min(s.n, b + step);
    scanned += e - b;
    torch::Tensor block;
    try {
      block = s.read_block(b, e);
    } catch (const DataError& err) {
      std::string m = err.what();
      if (m.rfind(s.path + ": ", 0) == 0) m = m.substr(s.path.size() + 2);
      out.push_back(m);
      continue;
    }
    auto flat = block.reshape({e - b, -1});
    nan.add(flat.isnan().any(1), b);
    inf.add(flat.isinf().any(1), b);
    auto negative = (flat < 0);
    neg.add(negative.any(1), b);
    if (negative.any().item<bool>()) lowest = std::min(lowest, flat.masked_select(negative).min().item<double>());
    zero.add((flat == 0).all(1), b);
    huge.add((torch::isfinite(flat) & (flat > validation_text::kMaxCountPerPixel)).any(1), b);
    if (type_max > 0) saturated.add((flat == static_cast<float>(type_max)).any(1), b);
  }
  const std::string total = std::to_string(s.n);
  auto report = [&](const BadFrames& bad, const std::string& what) {
    if (bad.count == 0) return;
    out.push_back(s.data_key + ": " + std::to_string(bad.count) + " of " + total + " frames " + what + " (first: frame " +
                  std::to_string(bad.first) + ")");
  };
  report(nan, "contain NaN intensities");
  report(inf, "contain infinite intensities");
  report(neg, "contain negative intensities, lowest " + fmt(lowest));
  report(zero, "are entirely zero");
  report(huge, "contain intensities above " + fmt(validation_text::kMaxCountPerPixel, "%.0e") +
                   " (no detector counts that high: a fill value or a wrong type?)");
  if (scanned < s.n) out.push_back(validation_text::sampled_note(s.data_key, scanned, s.n));
  report(saturated, "contain the value " + fmt(type_max, "%.0f") + " (the " + s.data_type.name +
                        " maximum), usually a detector gap or overflow marker: exclude those pixels with detector_1/mask");
  if (s.mask_valid && s.mask_valid->logical_not().sum().item<int64_t>() * 2 > h * w)
    out.push_back(std::string(keys::kMask) + ": more than half of the pixels are excluded");
  try {
    probe_guess();
  } catch (const DataError& err) {
    std::string m = err.what();
    out.push_back(m.rfind(s.path + ": ", 0) == 0 ? m.substr(s.path.size() + 2) : m);
  }
  try {
    auto t = ground_truth();
    if (t && (!torch::isfinite(torch::view_as_real(t->object)).all().item<bool>() ||
              !torch::isfinite(torch::view_as_real(t->probe)).all().item<bool>()))
      out.push_back(std::string(keys::kTruth) + ": the object or probe holds NaN or infinite values");
  } catch (const DataError& err) {
    std::string m = err.what();
    out.push_back(m.rfind(s.path + ": ", 0) == 0 ? m.substr(s.path.size() + 2) : m);
  }
  return out;
}

std::string CxiFile::summary() const {
  const Impl& s = *impl_;
  const auto& g = s.geometry;
  std::ostringstream o;
  o << s.path;
  if (s.cxi_version) o << " (CXI version " << *s.cxi_version << ")";
  o << "\n";
  o << "  frames:            " << s.n << " × " << g.frame_h << " × " << g.frame_w << " " << s.data_type.name << " ("
    << s.data_key << ")\n";
  o << "  wavelength:        " << format_length(g.wavelength_m) << " (" << format_energy(photon_energy_j(g.wavelength_m))
    << ")" << (g.energy_j > 0 ? "" : ", from source_1/wavelength only") << "\n";
  o << "  distance:          " << format_length(g.distance_m) << "\n";
  o << "  detector pixel:    " << format_length(g.detector_pixel_y_m) << " × " << format_length(g.detector_pixel_x_m)
    << " (y × x)\n";
  o << "  sample pixel:      " << format_length(g.pixel_y_m()) << " × " << format_length(g.pixel_x_m())
    << " (y × x, far field λz/(Np))\n";
  {
    auto y = s.translations.select(1, 1), x = s.translations.select(1, 0);
    const double sy = y.max().item<double>() - y.min().item<double>();
    const double sx = x.max().item<double>() - x.min().item<double>();
    o << "  scan:              " << s.n << " positions over " << format_length(sy) << " × " << format_length(sx)
      << " (y × x), object about " << fmt(sy / g.pixel_y_m() + g.frame_h, "%.0f") << " × "
      << fmt(sx / g.pixel_x_m() + g.frame_w, "%.0f") << " px";
    if (s.n > 1) {
      auto d = s.translations.narrow(0, 1, s.n - 1).narrow(1, 0, 2) - s.translations.narrow(0, 0, s.n - 1).narrow(1, 0, 2);
      const double mean_step = d.pow(2).sum(1).sqrt().mean().item<double>();
      o << ", mean step " << format_length(mean_step);
    }
    o << "\n";
  }
  if (s.mask_valid) {
    const int64_t total = g.frame_h * g.frame_w;
    const int64_t excluded = total - s.mask_valid->sum().item<int64_t>();
    o << "  mask:              " << excluded << " of " << total << " pixels excluded ("
      << fmt(100.0 * static_cast<double>(excluded) / static_cast<double>(total), "%.3g") << "%)\n";
  } else {
    o << "  mask:              none (all pixels used)\n";
  }
  if (!s.probe_key.empty()) {
    auto shape = s.file.dataset(s.probe_key).shape();
    const int64_t modes = shape.size() == 3 ? shape[0] : 1;
    o << "  probe guess:       " << plural(modes, "mode", "modes") << " of " << g.frame_h << " × " << g.frame_w << " ("
      << s.probe_key << ")\n";
  } else {
    o << "  probe guess:       none\n";
  }
  if (s.has_truth) {
    o << "  ground truth:      object " << h5::shape_string(s.file.dataset(keys::kTruthObject).shape()) << ", probe "
      << h5::shape_string(s.file.dataset(keys::kTruthProbe).shape()) << ", positions "
      << h5::shape_string(s.file.dataset(keys::kTruthPositions).shape()) << "\n";
  }
  // Photons per frame: all frames when cheap, else the first 64 (at most
  // 256 MiB of them: the summary comes before any long scan).
  {
    const int64_t bytes_per_frame = g.frame_h * g.frame_w * 4;
    const bool all = s.n * bytes_per_frame <= (int64_t{256} << 20);
    const int64_t count =
        all ? s.n : std::min<int64_t>({s.n, 64, std::max<int64_t>(1, (int64_t{256} << 20) / bytes_per_frame)});
    const int64_t step = frame_stack::frames_per_block(g.frame_h, g.frame_w);
    std::vector<torch::Tensor> sums;
    try {
      for (int64_t b = 0; b < count; b += step)
        sums.push_back(s.read_block(b, std::min(count, b + step)).to(torch::kDouble).sum({1, 2}));
      auto t = torch::cat(sums);
      o << "  photons per frame: min " << fmt(t.min().item<double>()) << ", mean " << fmt(t.mean().item<double>()) << ", max "
        << fmt(t.max().item<double>()) << (all ? "" : " (first " + std::to_string(count) + " frames)") << "\n";
    } catch (const DataError&) {
      o << "  photons per frame: frames cannot be read (see problems)\n";
    }
  }
  return o.str();
}

}  // namespace tessera
