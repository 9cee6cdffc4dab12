#include "data/stem4d_file.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <tuple>

#include "data/frame_stack.h"
#include "data/cxi_file.h"
#include "src/electron_optics.h"
#include "src/error.h"
#include "data/validation_text.h"
#include "src/io/hdf5.h"

namespace tessera {

namespace keys = stem4d_keys;

namespace {

using validation_text::is_real_number;
using validation_text::plural;
std::string fmt(double v, const char* spec = "%.6g") { return validation_text::format_number(v, spec); }

// Energies above this are almost surely electron-volts, not kilo-electron-volts.
constexpr double kMaxEnergyKev = 5000;
// Steps below this are almost surely metres or micrometres, not Å.
constexpr double kMinStepAngstrom = 1e-4;

}  // namespace

struct Stem4dFile::Impl {
  std::string path;
  h5::File file;
  h5::Dataset data;
  h5::TypeInfo data_type;
  int64_t ry = 0, rx = 0, qy = 0, qx = 0;
  Stem4dCalibration cal;
  torch::Tensor positions_a;  // (Ry*Rx, 2) float64 [y, x] Å in detector axes
  bool measured = false;      // positions_a from positions_angstrom
  std::optional<torch::Tensor> mask_valid;  // (Qy, Qx) bool
  bool has_truth = false;
  std::vector<std::string> notes;

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw DataError(path + ": " + key + " " + what);
  }

  int64_t n() const { return ry * rx; }
  std::string where(int64_t j) const {
    return "pattern " + std::to_string(j) + " (scan position iy = " + std::to_string(j / rx) + ", ix = " +
           std::to_string(j % rx) + ")";
  }

  // Patterns [first, first + len) in scan order into out (len, Qy, Qx) float32,
  // with one read of a selection of up to three hyperslabs (the rest of the
  // first scan row, whole rows, the start of the last row).
  void read_run(int64_t first, int64_t len, torch::Tensor out) const {
    if (len == 0) return;
    h5::silence_error_printing();
    const int64_t last = first + len;  // exclusive
    // One read per regular block of scan rows: HDF5 maps a union of
    // hyperslabs onto the chunks element by element, a single hyperslab
    // chunk by chunk.
    int64_t row = 0;  // of `out`
    auto read = [&](int64_t y0, int64_t x0, int64_t ny, int64_t nx) {
      if (ny <= 0 || nx <= 0) return;
      h5::Handle fspace(H5Dget_space(data.id()));
      hsize_t start[4] = {static_cast<hsize_t>(y0), static_cast<hsize_t>(x0), 0, 0};
      hsize_t count[4] = {static_cast<hsize_t>(ny), static_cast<hsize_t>(nx), static_cast<hsize_t>(qy),
                          static_cast<hsize_t>(qx)};
      if (H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, count, nullptr) < 0)
        fail(keys::kData, "cannot select patterns (HDF5: " + h5::take_error_message() + ")");
      // The memory space has the file selection's shape: with any other
      // (say (ny * nx, qy, qx)) HDF5 maps it onto the chunks element by element.
      h5::Handle mspace(H5Screate_simple(4, count, nullptr));
      if (H5Dread(data.id(), H5T_NATIVE_FLOAT, mspace.get(), fspace.get(), H5P_DEFAULT,
                  out.data_ptr<float>() + row * qy * qx) < 0) {
        const std::string hdf5 = h5::take_error_message();
        fail(keys::kData, "patterns " + std::to_string(first) + " to " + std::to_string(last - 1) +
                              " cannot be read (damaged or truncated file?)" + (hdf5.empty() ? "" : " (HDF5: " + hdf5 + ")"));
      }
      row += ny * nx;
    };
    const int64_t y_first = first / rx, y_last = (last - 1) / rx;
    if (y_first == y_last) {
      read(y_first, first % rx, 1, len);
    } else {
      read(y_first, first % rx, 1, rx - first % rx);
      read(y_first + 1, 0, y_last - y_first - 1, rx);
      read(y_last, 0, 1, last - y_last * rx);
    }
  }

  void apply_mask(torch::Tensor& block) const {
    if (mask_valid) block.masked_fill_(mask_valid->logical_not().unsqueeze(0), 0.0f);
  }

  template <typename IndexOf>
  void check_frames(const torch::Tensor& block, const IndexOf& index_of) const {
    const auto bad = validation_text::find_bad_counts(block);
    if (!bad) return;
    std::string message = where(index_of(bad->row)) + " has " + bad->describe("counts") + "; counts must be finite and >= 0";
    if (bad->bad_frames > 1)
      message += " (" + std::to_string(bad->bad_frames) + " of the " + std::to_string(block.size(0)) + " patterns read are bad)";
    message += bad->negatives && !bad->nans && !bad->infs
                   ? ". If a dark level was subtracted, clip negative counts to 0; if they mark dead pixels, flag them in " +
                         std::string(keys::kMask)
                   : ". If they mark dead pixels or gaps, flag them in " + std::string(keys::kMask);
    fail(std::string(keys::kData) + ":", message);
  }
};

Stem4dFile::Stem4dFile(const std::string& path) {
  auto impl = std::make_shared<Impl>();
  Impl& s = *impl;
  s.path = path;
  s.file = h5::File::open(path);
  const h5::File& f = s.file;

  auto not_stem_hint = [&]() -> std::string {
    if (f.exists(keys::kGroup)) return "";
    std::string top;
    for (const auto& c : f.children()) top += (top.empty() ? "" : ", ") + c;
    return "; the file has no " + std::string(keys::kGroup) + " group, so it is not in tessera's 4D-STEM layout (top level: " +
           (top.empty() ? std::string("empty") : top) + ")";
  };

  // ---- patterns
  if (!f.exists(keys::kData)) {
    if (f.is_dangling_link(keys::kData)) f.dataset(keys::kData);  // throws, naming the link target
    s.fail(keys::kData, "is missing: the diffraction patterns (Ry, Rx, Qy, Qx) are required" + not_stem_hint());
  }
  s.data = f.dataset(keys::kData);
  s.data_type = s.data.type();
  {
    const auto shape = s.data.shape();
    const std::string sh = h5::shape_string(shape);
    if (shape.size() != 4) {
      std::string hint;
      if (shape.size() == 3)
        hint = "; a stack of patterns (N, Qy, Qx) must be stored as (Ry, Rx, Qy, Qx) with the scan shape, or as CXI with positions";
      s.fail(keys::kData, "has shape " + sh + " (" + plural(static_cast<int64_t>(shape.size()), "dimension", "dimensions") +
                              "); expected 4 dimensions: (Ry, Rx, Qy, Qx), scan rows, scan columns, pattern y, pattern x" + hint);
    }
    const auto& t = s.data_type;
    if (t.kind == h5::Kind::complex)
      s.fail(keys::kData, "holds complex values; diffraction patterns must be real counts");
    if (!is_real_number(t))
      s.fail(keys::kData, "holds " + t.name + " values; diffraction patterns must be numbers (integer or float counts)");
    for (int64_t d : shape)
      if (d == 0) s.fail(keys::kData, "is empty (shape " + sh + "): it needs at least one scan position and one pixel");
    const auto missing = s.data.unavailable_filters();
    if (!missing.empty()) {
      std::string names;
      for (const auto& m : missing) names += (names.empty() ? "" : ", ") + m;
      s.fail(keys::kData, "is compressed with " + names +
                              ", which this HDF5 library cannot decode: install the filter plugin and point "
                              "HDF5_PLUGIN_PATH at it, or rewrite the file without that compression");
    }
    s.ry = shape[0];
    s.rx = shape[1];
    s.qy = shape[2];
    s.qx = shape[3];
    if (const auto small = frame_size_problem(s.qy, s.qx); !small.empty())
      s.notes.push_back(std::string(keys::kData) + ": " + small);
  }

  // ---- numbers: one value, or a [y, x] pair
  struct Read {
    double y = 0, x = 0;
  };
  auto read_values = [&](const std::string& key, const std::string& what, const std::string& unit, bool pair,
                         bool required) -> std::optional<Read> {
    if (!f.exists(key)) {
      if (f.is_dangling_link(key)) f.dataset(key);
      if (!required) return std::nullopt;
      s.fail(key, "is missing: the " + what + " (" + unit + ") is required" + not_stem_hint());
    }
    if (!f.is_dataset(key)) s.fail(key, "is a group; the " + what + " must be a dataset holding a number (" + unit + ")");
    h5::Dataset d = f.dataset(key);
    const auto type = d.type();
    if (!is_real_number(type)) s.fail(key, "holds " + type.name + " values; the " + what + " must be a number (" + unit + ")");
    const int64_t count = d.numel();
    const std::string expected = pair ? "one number, or two: [y, x]" : "a single number";
    if (count == 0) s.fail(key, "is empty; the " + what + " must be " + expected + " (" + unit + ")");
    if (count > (pair ? 2 : 1))
      s.fail(key, "holds " + std::to_string(count) + " values (shape " + h5::shape_string(d.shape()) + "); the " + what +
                      " must be " + expected + " (" + unit + ")");
    torch::Tensor v = d.read(torch::kDouble).reshape({-1});
    Read r{v[0].item<double>(), v[count - 1].item<double>()};
    for (double x : {r.y, r.x}) {
      if (std::isnan(x)) s.fail(key, "is NaN; the " + what + " must be a finite number (" + unit + ")");
      if (std::isinf(x)) s.fail(key, "is infinite; the " + what + " must be a finite number (" + unit + ")");
    }
    return r;
  };
  auto positive = [&](const std::string& key, double v, const std::string& what, const std::string& unit) {
    if (v <= 0) s.fail(key, "is " + fmt(v) + "; the " + what + " must be positive (" + unit + ")");
  };

  // ---- beam energy
  {
    const double e = read_values(keys::kEnergy, "beam energy", "keV", false, true)->y;
    positive(keys::kEnergy, e, "beam energy", "keV");
    if (e > kMaxEnergyKev)
      s.fail(keys::kEnergy, "is " + fmt(e) + " keV, more than any electron microscope; the layout stores kilo-electron-volts: "
                            "if this is " + fmt(e) + " eV, store " + fmt(e * 1e-3));
    if (const auto m = electron::beam_energy_problem(e); !m.empty()) s.fail(keys::kEnergy, "is not plausible: " + m);
    s.cal.energy_kev = e;
    s.cal.wavelength_angstrom = electron::wavelength_angstrom(e);
  }
  const double lambda = s.cal.wavelength_angstrom;

  // ---- scan: a step or measured positions, and the rotation to detector axes
  {
    const bool measured = f.exists(keys::kPositions) || f.is_dangling_link(keys::kPositions);
    if (!measured && !f.exists(keys::kStep) && !f.is_dangling_link(keys::kStep))
      s.fail(keys::kStep, std::string("is missing and so is ") + keys::kPositions +
                              ": the scan step (Å, [y, x]) or the measured probe positions (Å) are required" + not_stem_hint());
    if (const auto step = read_values(keys::kStep, "scan step", "Å, [y, x]", true, !measured)) {
      for (double v : {step->y, step->x}) {
        positive(keys::kStep, v, "scan step", "Å");
        if (v < kMinStepAngstrom)
          s.fail(keys::kStep, "is " + fmt(v) + " Å, far below any probe step; the layout stores Å (1 nm = 10 Å, 1e-10 m = 1 Å)");
      }
      s.cal.step_y_angstrom = step->y;
      s.cal.step_x_angstrom = step->x;
    }
    torch::Tensor scan_yx;  // Å, the scan's axes
    if (measured) {
      const char* key = keys::kPositions;
      h5::Dataset d = f.dataset(key);
      const auto type = d.type();
      const auto shape = d.shape();
      if (!is_real_number(type))
        s.fail(key, "holds " + type.name + " values; the measured probe positions must be numbers (Å, [y, x])");
      if (shape.size() != 2 || shape[0] != s.n() || shape[1] != 2) {
        const bool as_scan = shape.size() == 3 && shape[0] == s.ry && shape[1] == s.rx && shape[2] == 2;
        s.fail(key, "has shape " + h5::shape_string(shape) + "; expected (" + std::to_string(s.n()) +
                        ", 2): one [y, x] position in Å per pattern, in scan order (Ry * Rx = " + std::to_string(s.ry) +
                        " × " + std::to_string(s.rx) + ")" + (as_scan ? "; reshape the (Ry, Rx, 2) array to (Ry*Rx, 2)" : ""));
      }
      scan_yx = d.read(torch::kDouble).reshape({s.n(), 2});
      const auto finite = torch::isfinite(scan_yx).all(1);
      if (!finite.all().item<bool>()) {
        const int64_t j = finite.logical_not().nonzero()[0][0].item<int64_t>();
        s.fail(key, "holds NaN or infinite values (first at " + s.where(j) + "); every position must be a finite number of Å");
      }
      const double span = (std::get<0>(scan_yx.max(0)) - std::get<0>(scan_yx.min(0))).max().item<double>();
      if (s.n() > 1 && span == 0)
        s.fail(key, "gives all " + std::to_string(s.n()) + " patterns the same position; the probe positions must differ (Å)");
    } else {
      auto iy = torch::arange(s.ry, torch::kFloat64).view({-1, 1}).expand({s.ry, s.rx}).reshape({-1});
      auto ix = torch::arange(s.rx, torch::kFloat64).view({1, -1}).expand({s.ry, s.rx}).reshape({-1});
      scan_yx = torch::stack({iy * s.cal.step_y_angstrom, ix * s.cal.step_x_angstrom}, 1);
    }
    s.measured = measured;
    if (const auto r = read_values(keys::kRotation, "scan rotation", "degrees", false, false)) {
      if (std::fabs(r->y) > 360)
        s.fail(keys::kRotation, "is " + fmt(r->y) + "; the angle from the scan's axes to the detector's must be in degrees, "
                                "between -360 and 360");
      s.cal.scan_rotation_deg = r->y;
    }
    s.positions_a = scan_to_detector_axes(scan_yx, s.cal.scan_rotation_deg.value_or(0.0)).contiguous();
  }

  // ---- reciprocal calibration
  {
    auto inv = read_values(keys::kInverseAngstrom, "reciprocal pixel size", "Å⁻¹ per pixel, [y, x]", true, false);
    auto mrad = read_values(keys::kMrad, "reciprocal pixel size", "mrad per pixel, [y, x]", true, false);
    if (!inv && !mrad)
      s.fail(keys::kInverseAngstrom, std::string("is missing and so is ") + keys::kMrad +
                                         ": the reciprocal calibration of the detector (Å⁻¹ or mrad per pixel) is required" +
                                         not_stem_hint());
    if (inv) {
      positive(keys::kInverseAngstrom, inv->y, "reciprocal pixel size", "Å⁻¹ per pixel");
      positive(keys::kInverseAngstrom, inv->x, "reciprocal pixel size", "Å⁻¹ per pixel");
    }
    if (mrad) {
      positive(keys::kMrad, mrad->y, "reciprocal pixel size", "mrad per pixel");
      positive(keys::kMrad, mrad->x, "reciprocal pixel size", "mrad per pixel");
    }
    if (inv && mrad) {
      for (auto [a, m, axis] : {std::tuple{inv->y, mrad->y, "y"}, std::tuple{inv->x, mrad->x, "x"}}) {
        const double from_mrad = electron::mrad_to_inverse_angstrom(m, lambda);
        if (std::fabs(from_mrad - a) > 1e-3 * a)
          s.fail(keys::kMrad, "(" + fmt(m) + " mrad per pixel along " + axis + ", i.e. " + fmt(from_mrad) + " Å⁻¹ at " +
                                  fmt(s.cal.energy_kev) + " keV) and " + keys::kInverseAngstrom + " (" + fmt(a) +
                                  " Å⁻¹) disagree; give one of them, or both consistent (k = α / λ, λ = " + fmt(lambda) + " Å)");
      }
    }
    s.cal.dk_y = inv ? inv->y : electron::mrad_to_inverse_angstrom(mrad->y, lambda);
    s.cal.dk_x = inv ? inv->x : electron::mrad_to_inverse_angstrom(mrad->x, lambda);
  }

  // ---- probe optics (optional)
  if (auto c = read_values(keys::kConvergence, "convergence semi-angle", "mrad", false, false)) {
    positive(keys::kConvergence, c->y, "convergence semi-angle", "mrad");
    if (const auto m = electron::convergence_problem(c->y); !m.empty()) s.fail(keys::kConvergence, "is not plausible: " + m);
    const double radius = electron::aperture_radius_pixels({s.cal.energy_kev, c->y, 0, 0}, std::min(s.cal.dk_y, s.cal.dk_x));
    if (radius < 1)
      s.fail(keys::kConvergence, "is " + fmt(c->y) + " mrad, less than one detector pixel (" + fmt(s.cal.mrad_per_pixel_y()) +
                                     " mrad per pixel); is it in radians? The layout stores mrad");
    s.cal.convergence_mrad = c->y;
  }
  if (auto d = read_values(keys::kDefocus, "defocus", "Å", false, false)) {
    if (const auto m = electron::defocus_problem(d->y); !m.empty()) s.fail(keys::kDefocus, "is not plausible: " + m);
    s.cal.defocus_angstrom = d->y;
  }
  if (auto c3 = read_values(keys::kC3, "spherical aberration C3", "mm", false, false)) {
    if (const auto m = electron::c3_problem(c3->y); !m.empty()) s.fail(keys::kC3, "is not plausible: " + m);
    s.cal.c3_mm = c3->y;
  }

  // ---- bad-pixel mask (optional)
  if (f.exists(keys::kMask) || f.is_dangling_link(keys::kMask)) {
    h5::Dataset m = f.dataset(keys::kMask);
    const auto type = m.type();
    const auto shape = m.shape();
    if (type.kind != h5::Kind::integer && type.kind != h5::Kind::unsigned_integer && type.kind != h5::Kind::boolean)
      s.fail(keys::kMask, "holds " + type.name + " values; the bad-pixel mask must hold integer flags (0 = good, non-zero = bad)");
    if (shape.size() != 2 || shape[0] != s.qy || shape[1] != s.qx) {
      std::string hint = shape.size() == 2 && shape[0] == s.qx && shape[1] == s.qy ? " (it looks transposed)" : "";
      if (shape.size() == 4) hint = "; per-pattern masks are not supported: combine them into one";
      s.fail(keys::kMask, "has shape " + h5::shape_string(shape) + " but the patterns of " + keys::kData + " are " +
                              std::to_string(s.qy) + " × " + std::to_string(s.qx) + hint);
    }
    torch::Tensor valid = m.read(torch::kLong) == 0;
    if (valid.sum().item<int64_t>() == 0)
      s.fail(keys::kMask, "flags every pixel as bad (all values are non-zero); 0 marks a good pixel");
    s.mask_valid = valid;
  }

  // ---- zero order (optional)
  if (f.exists(keys::kZeroOrder) || f.is_dangling_link(keys::kZeroOrder)) {
    const auto z = read_values(keys::kZeroOrder, "zero-order position", "detector pixels, [y, x]", true, true);
    if (f.dataset(keys::kZeroOrder).numel() != 2)
      s.fail(keys::kZeroOrder, "holds one number; the zero-order position needs two: [y, x] in detector pixels");
    for (auto [v, q, axis] : {std::tuple{z->y, s.qy, "y"}, std::tuple{z->x, s.qx, "x"}})
      if (v < -0.5 || v > static_cast<double>(q) - 0.5)
        s.fail(keys::kZeroOrder, "puts the zero order at " + std::string(axis) + " = " + fmt(v) +
                                     " pixels, outside the patterns (0 to " + std::to_string(q - 1) +
                                     " along " + axis + "); it is [y, x] in detector pixels of the patterns as stored");
    s.cal.zero_order_px = std::pair{z->y, z->x};
  }

  // ---- scan extent in sample-plane pixels
  {
    const ExperimentGeometry g = [&] {
      ExperimentGeometry e;
      e.frame_h = s.qy;
      e.frame_w = s.qx;
      e.reciprocal_pixel_y_per_m = s.cal.dk_y * 1e10;
      e.reciprocal_pixel_x_per_m = s.cal.dk_x * 1e10;
      return e;
    }();
    const auto span = std::get<0>(s.positions_a.max(0)) - std::get<0>(s.positions_a.min(0));
    const double ey = span[0].item<double>() * 1e-10 / g.pixel_y_m() + static_cast<double>(s.qy);
    const double ex = span[1].item<double>() * 1e-10 / g.pixel_x_m() + static_cast<double>(s.qx);
    if (!std::isfinite(ey) || !std::isfinite(ex) || ey > kMaxScanExtentPx || ex > kMaxScanExtentPx)
      s.fail(s.measured ? keys::kPositions : keys::kStep,
             "makes the scan span " + fmt(ey, "%.4g") + " × " + fmt(ex, "%.4g") + " sample pixels (y × x; pixel " +
                 fmt(g.pixel_y_m() * 1e10, "%.4g") + " × " + fmt(g.pixel_x_m() * 1e10, "%.4g") +
                 " Å from the reciprocal calibration), more than " + fmt(kMaxScanExtentPx, "%.0f") + ": are the " +
                 (s.measured ? "positions" : "step") + " (Å) and the calibration (Å⁻¹ or mrad per pixel) right?");
  }

  // ---- ground truth (optional)
  if (f.exists(keys::kTruth)) {
    for (const char* key : {keys::kTruthObject, keys::kTruthProbe, keys::kTruthPositions})
      if (!f.exists(key)) s.fail(key, "is missing: a ground truth needs object, probe and positions_px");
    h5::Dataset o = f.dataset(keys::kTruthObject), p = f.dataset(keys::kTruthProbe), q = f.dataset(keys::kTruthPositions);
    auto os = o.shape(), ps = p.shape(), qs = q.shape();
    if ((os.size() != 2 && os.size() != 3) || os[os.size() - 2] < s.qy || os.back() < s.qx)
      s.fail(keys::kTruthObject, "has shape " + h5::shape_string(os) + "; expected (slices, H, W), at least one pattern large");
    if (!((ps.size() == 2 || ps.size() == 3) && ps[ps.size() - 2] == s.qy && ps.back() == s.qx))
      s.fail(keys::kTruthProbe, "has shape " + h5::shape_string(ps) + "; expected (modes, " + std::to_string(s.qy) + ", " +
                                    std::to_string(s.qx) + ") like the patterns");
    if (qs.size() != 2 || qs[1] != 2 || qs[0] != s.n())
      s.fail(keys::kTruthPositions, "has shape " + h5::shape_string(qs) + "; expected (" + std::to_string(s.n()) +
                                        ", 2): y, x in object pixels, one row per pattern in scan order");
    for (auto* d : {&o, &p})
      if (d->type().kind != h5::Kind::complex && !is_real_number(d->type()))
        s.fail(d->key(), "holds " + d->type().name + " values; expected complex numbers");
    s.has_truth = true;
  }

  // ---- layout tag (informational)
  {
    h5::Group g = f.group(keys::kGroup);
    if (!g.has_attribute("layout"))
      s.notes.push_back(std::string(keys::kGroup) + ": attribute layout is missing (tessera writes \"" + keys::kLayoutName + "\")");
  }
  impl_ = std::move(impl);
}

const std::string& Stem4dFile::path() const { return impl_->path; }
int64_t Stem4dFile::scan_y() const { return impl_->ry; }
int64_t Stem4dFile::scan_x() const { return impl_->rx; }
int64_t Stem4dFile::num_frames() const { return impl_->n(); }
int64_t Stem4dFile::frame_h() const { return impl_->qy; }
int64_t Stem4dFile::frame_w() const { return impl_->qx; }
const std::string& Stem4dFile::data_type() const { return impl_->data_type.name; }
const Stem4dCalibration& Stem4dFile::calibration() const { return impl_->cal; }
bool Stem4dFile::has_mask() const { return impl_->mask_valid.has_value(); }

ExperimentGeometry Stem4dFile::geometry() const {
  const Impl& s = *impl_;
  ExperimentGeometry g;
  g.wavelength_m = s.cal.wavelength_angstrom * 1e-10;
  g.frame_h = s.qy;
  g.frame_w = s.qx;
  g.reciprocal_pixel_y_per_m = s.cal.dk_y * 1e10;
  g.reciprocal_pixel_x_per_m = s.cal.dk_x * 1e10;
  if (s.cal.zero_order_px) {
    g.zero_order_px = s.cal.zero_order_px;
    g.zero_order_source = "file";
  }
  return g;
}

torch::Tensor Stem4dFile::positions_m() const { return impl_->positions_a * 1e-10; }
bool Stem4dFile::has_measured_positions() const { return impl_->measured; }

torch::Tensor Stem4dFile::valid_mask() const {
  if (impl_->mask_valid) return impl_->mask_valid->clone();
  return torch::ones({impl_->qy, impl_->qx}, torch::kBool);
}

torch::Tensor Stem4dFile::read_frames(int64_t begin, int64_t end) const {
  const Impl& s = *impl_;
  if (begin < 0 || end < begin || end > s.n())
    s.fail(std::string(keys::kData) + ":", "patterns [" + std::to_string(begin) + ", " + std::to_string(end) +
                                               ") requested but the scan has " + plural(s.n(), "pattern", "patterns"));
  torch::Tensor out = torch::empty({end - begin, s.qy, s.qx}, torch::kFloat);
  s.read_run(begin, end - begin, out);
  s.apply_mask(out);
  s.check_frames(out, [&](int64_t row) { return begin + row; });
  return out;
}

torch::Tensor Stem4dFile::read_frames(const std::vector<int64_t>& indices) const {
  const Impl& s = *impl_;
  for (int64_t i : indices)
    if (i < 0 || i >= s.n())
      s.fail(std::string(keys::kData) + ":", "pattern " + std::to_string(i) + " requested but the scan has " +
                                                 plural(s.n(), "pattern", "patterns"));
  const int64_t k = static_cast<int64_t>(indices.size());
  torch::Tensor out = torch::empty({k, s.qy, s.qx}, torch::kFloat);
  frame_stack::read_runs(indices, out,
                         [&](int64_t first, int64_t len, torch::Tensor rows) { s.read_run(first, len, rows); });
  s.apply_mask(out);
  s.check_frames(out, [&](int64_t row) { return indices[static_cast<size_t>(row)]; });
  return out;
}

std::optional<GroundTruth> Stem4dFile::ground_truth() const {
  const Impl& s = *impl_;
  if (!s.has_truth) return std::nullopt;
  GroundTruth t;
  t.object = s.file.dataset(keys::kTruthObject).read(torch::kComplexFloat);
  if (t.object.dim() == 2) t.object = t.object.unsqueeze(0);
  t.probe = s.file.dataset(keys::kTruthProbe).read(torch::kComplexFloat);
  if (t.probe.dim() == 2) t.probe = t.probe.unsqueeze(0);
  t.positions_px = s.file.dataset(keys::kTruthPositions).read(torch::kDouble);
  if (!torch::isfinite(t.positions_px).all().item<bool>()) s.fail(keys::kTruthPositions, "holds NaN or infinite positions");
  return t;
}

std::vector<std::string> Stem4dFile::problems() const {
  const Impl& s = *impl_;
  std::vector<std::string> out = s.notes;
  const int64_t step = frame_stack::frames_per_block(s.qy, s.qx);
  int64_t bad = 0, first_bad = -1, empty = 0, first_empty = -1;
  const auto starts = validation_text::blocks_to_scan(s.n(), step, s.qy * s.qx * 4);
  int64_t scanned = 0;
  for (const int64_t b : starts) {
    const int64_t e = std::min(s.n(), b + step);
    scanned += e - b;
    torch::Tensor block = torch::empty({e - b, s.qy, s.qx}, torch::kFloat);
    try {
      s.read_run(b, e - b, block);
    } catch (const DataError& err) {
      std::string m = err.what();
      out.push_back(m.rfind(s.path + ": ", 0) == 0 ? m.substr(s.path.size() + 2) : m);
      continue;
    }
    s.apply_mask(block);
    auto flat = block.reshape({e - b, -1});
    auto rows = (flat.isnan() | flat.isinf() | (flat < 0) | (flat > validation_text::kMaxCountPerPixel))
                    .any(1)
                    .nonzero()
                    .reshape({-1});
    if (rows.numel()) {
      if (first_bad < 0) first_bad = b + rows[0].item<int64_t>();
      bad += rows.numel();
    }
    auto zero = (flat == 0).all(1).nonzero().reshape({-1});
    if (zero.numel()) {
      if (first_empty < 0) first_empty = b + zero[0].item<int64_t>();
      empty += zero.numel();
    }
  }
  const std::string total = std::to_string(s.n());
  if (bad)
    out.push_back(std::string(keys::kData) + ": " + std::to_string(bad) + " of " + total +
                  " patterns hold NaN, infinite, negative or absurdly large counts (first: " + s.where(first_bad) + ")");
  if (empty)
    out.push_back(std::string(keys::kData) + ": " + std::to_string(empty) + " of " + total +
                  " patterns are entirely zero (first: " + s.where(first_empty) + ")");
  if (scanned < s.n()) out.push_back(validation_text::sampled_note(keys::kData, scanned, s.n()));
  if (s.mask_valid && s.mask_valid->logical_not().sum().item<int64_t>() * 2 > s.qy * s.qx)
    out.push_back(std::string(keys::kMask) + ": more than half of the pixels are flagged bad");
  try {
    ground_truth();
  } catch (const DataError& err) {
    std::string m = err.what();
    out.push_back(m.rfind(s.path + ": ", 0) == 0 ? m.substr(s.path.size() + 2) : m);
  }
  return out;
}

std::string Stem4dFile::summary() const {
  const Impl& s = *impl_;
  const auto& c = s.cal;
  const auto g = geometry();
  std::ostringstream o;
  o << s.path << " (4D-STEM, " << keys::kLayoutName << ")\n";
  o << "  patterns:          " << s.ry << " × " << s.rx << " scan positions of " << s.qy << " × " << s.qx << " pixels, "
    << s.data_type.name << " (" << keys::kData << ")\n";
  o << "  beam:              " << fmt(c.energy_kev, "%.4g") << " keV, λ = " << fmt(c.wavelength_angstrom, "%.5g") << " Å\n";
  if (s.measured) {
    const auto span = std::get<0>(s.positions_a.max(0)) - std::get<0>(s.positions_a.min(0));
    o << "  scan positions:    measured (" << keys::kPositions << "), spanning " << fmt(span[0].item<double>(), "%.4g")
      << " × " << fmt(span[1].item<double>(), "%.4g") << " Å (y × x, detector axes)";
    if (c.step_y_angstrom > 0)
      o << "; nominal step " << fmt(c.step_y_angstrom, "%.4g") << " × " << fmt(c.step_x_angstrom, "%.4g") << " Å, not used";
    o << "\n";
  } else {
    o << "  scan step:         " << fmt(c.step_y_angstrom, "%.4g") << " × " << fmt(c.step_x_angstrom, "%.4g")
      << " Å (y × x), field of view " << fmt(c.step_y_angstrom * static_cast<double>(s.ry - 1), "%.4g") << " × "
      << fmt(c.step_x_angstrom * static_cast<double>(s.rx - 1), "%.4g") << " Å\n";
  }
  o << "  scan rotation:     ";
  if (c.scan_rotation_deg)
    o << fmt(*c.scan_rotation_deg, "%.4g") << "° (scan axes -> detector axes, " << keys::kRotation << ")\n";
  else
    o << "none given (scan axes taken as the detector's)\n";
  o << "  zero order:        ";
  if (c.zero_order_px)
    o << "[" << fmt(c.zero_order_px->first, "%.4g") << ", " << fmt(c.zero_order_px->second, "%.4g")
      << "] detector pixels (y, x; " << keys::kZeroOrder << ")\n";
  else
    o << "not in the file\n";
  o << "  reciprocal pixel:  " << fmt(c.dk_y, "%.4g") << " × " << fmt(c.dk_x, "%.4g") << " Å⁻¹ (" << fmt(c.mrad_per_pixel_y(), "%.4g")
    << " × " << fmt(c.mrad_per_pixel_x(), "%.4g") << " mrad) per pixel\n";
  o << "  sample pixel:      " << fmt(g.pixel_y_m() * 1e10, "%.4g") << " × " << fmt(g.pixel_x_m() * 1e10, "%.4g")
    << " Å (y × x, 1/(N Δk))\n";
  o << "  probe optics:      ";
  if (c.convergence_mrad) {
    o << "α = " << fmt(*c.convergence_mrad, "%.4g") << " mrad (bright-field disc radius "
      << fmt(electron::aperture_radius_pixels({c.energy_kev, *c.convergence_mrad, 0, 0}, c.dk_x), "%.3g") << " px)";
  } else {
    o << "no convergence angle (the probe guess then comes from the mean pattern)";
  }
  if (c.defocus_angstrom) o << ", Δf = " << fmt(*c.defocus_angstrom, "%.4g") << " Å";
  if (c.c3_mm) o << ", C3 = " << fmt(*c.c3_mm, "%.4g") << " mm";
  o << "\n";
  if (s.mask_valid) {
    const int64_t total = s.qy * s.qx, badpx = total - s.mask_valid->sum().item<int64_t>();
    o << "  bad pixels:        " << badpx << " of " << total << "\n";
  } else {
    o << "  bad pixels:        none flagged\n";
  }
  if (s.has_truth)
    o << "  ground truth:      object " << h5::shape_string(s.file.dataset(keys::kTruthObject).shape()) << ", probe "
      << h5::shape_string(s.file.dataset(keys::kTruthProbe).shape()) << "\n";
  try {
    // At most 256 patterns and 256 MiB: the summary comes first and fast.
    const int64_t count = std::min<int64_t>({s.n(), 256, std::max<int64_t>(1, (int64_t{256} << 20) / (s.qy * s.qx * 4))});
    torch::Tensor block = torch::empty({count, s.qy, s.qx}, torch::kFloat);
    s.read_run(0, count, block);
    s.apply_mask(block);
    auto t = block.to(torch::kDouble).sum({1, 2});
    o << "  counts per pattern: min " << fmt(t.min().item<double>(), "%.4g") << ", mean " << fmt(t.mean().item<double>(), "%.4g")
      << ", max " << fmt(t.max().item<double>(), "%.4g") << (count < s.n() ? " (first " + std::to_string(count) + ")" : "")
      << "\n";
  } catch (const DataError&) {
    o << "  counts per pattern: patterns cannot be read (see problems)\n";
  }
  return o.str();
}

torch::Tensor scan_to_detector_axes(const torch::Tensor& positions_yx, double rotation_deg) {
  TESSERA_REQUIRE(Error, positions_yx.dim() == 2 && positions_yx.size(1) == 2, "scan positions must be (N, 2) [y, x], got ",
                  positions_yx.sizes());
  const auto p = positions_yx.to(torch::kFloat64);
  if (rotation_deg == 0) return p.clone();
  const double c = std::cos(rotation_deg * M_PI / 180), sn = std::sin(rotation_deg * M_PI / 180);
  const auto y = p.select(1, 0), x = p.select(1, 1);
  return torch::stack({x * sn + y * c, x * c - y * sn}, 1);
}

DataFormat detect_data_format(const std::string& path) {
  h5::File f = h5::File::open(path);
  if (f.exists(stem4d_keys::kGroup)) return DataFormat::stem4d;
  if (f.exists("/entry_1")) return DataFormat::cxi;
  std::string top;
  for (const auto& c : f.children()) top += (top.empty() ? "" : ", ") + c;
  throw DataError(path + ": is neither a CXI file (no /entry_1 group) nor a 4D-STEM file in tessera's layout (no " +
                  std::string(stem4d_keys::kGroup) + " group); top level: " + (top.empty() ? std::string("empty") : top));
}

}  // namespace tessera
