#include "data/stem4d_writer.h"

#include <cmath>
#include <cstdio>

#include "src/electron_optics.h"
#include "src/error.h"
#include "src/io/atomic_file.h"
#include "data/validation_text.h"
#include "src/io/hdf5.h"

namespace tessera {

namespace {

namespace keys = stem4d_keys;

using validation_text::replace_all;
using validation_text::shape_of;
std::string num(double v) { return validation_text::format_number(v); }

struct Prepared {
  torch::Tensor data;  // float32 (Ry, Rx, Qy, Qx)
  Stem4dCalibration cal;
  std::optional<torch::Tensor> positions;  // (n, 2) float64 Å
  std::optional<torch::Tensor> mask;
  std::optional<GroundTruth> truth;
};

Prepared prepare(const Stem4dContent& c, const std::string& prefix) {
  auto require = [&](bool ok, const std::string& what) {
    if (!ok) throw DataError(prefix + what);
  };
  auto positive = [&](double v, const std::string& name, const std::string& unit) {
    require(std::isfinite(v) && v > 0, "content." + name + " is " + num(v) + "; it must be a positive number of " + unit);
  };
  Prepared p;
  require(c.data.defined(), "content.data is empty (undefined tensor)");
  require(c.data.dim() == 4, "content.data has shape " + shape_of(c.data) + "; expected (Ry, Rx, Qy, Qx)");
  require(!c.data.is_complex() && c.data.scalar_type() != torch::kBool, "content.data must hold real counts");
  require(c.data.numel() > 0, "content.data is empty (shape " + shape_of(c.data) + ")");
  p.data = c.data.detach().to(torch::kCPU).to(torch::kFloat).contiguous();
  {
    auto flat = p.data.reshape({p.data.size(0) * p.data.size(1), -1});
    auto bad = (flat.isnan() | flat.isinf() | (flat < 0)).any(1);
    if (bad.any().item<bool>())
      require(false, "content.data: pattern " + std::to_string(bad.nonzero()[0][0].item<int64_t>()) +
                         " holds NaN, infinite or negative counts; counts must be finite and >= 0");
  }
  const int64_t qy = p.data.size(2), qx = p.data.size(3), n = p.data.size(0) * p.data.size(1);
  p.cal = c.calibration;
  positive(p.cal.energy_kev, "calibration.energy_kev", "keV");
  if (c.positions_angstrom) {
    const auto& q = *c.positions_angstrom;
    require(q.defined() && q.dim() == 2 && q.size(0) == n && q.size(1) == 2 && !q.is_complex(),
            "content.positions_angstrom has shape " + (q.defined() ? shape_of(q) : std::string("undefined")) + "; expected (" +
                std::to_string(n) + ", 2) real [y, x] positions in Å");
    p.positions = q.detach().to(torch::kCPU).to(torch::kFloat64).contiguous();
    require(torch::isfinite(*p.positions).all().item<bool>(), "content.positions_angstrom holds NaN or infinite values");
  }
  if (!p.positions || p.cal.step_y_angstrom != 0 || p.cal.step_x_angstrom != 0) {
    positive(p.cal.step_y_angstrom, "calibration.step_y_angstrom", "Å");
    positive(p.cal.step_x_angstrom, "calibration.step_x_angstrom", "Å");
  }
  if (p.cal.scan_rotation_deg)
    require(std::isfinite(*p.cal.scan_rotation_deg) && std::fabs(*p.cal.scan_rotation_deg) <= 360,
            "content.calibration.scan_rotation_deg is " + num(*p.cal.scan_rotation_deg) + "; it must be degrees in [-360, 360]");
  if (p.cal.zero_order_px)
    require(std::isfinite(p.cal.zero_order_px->first) && std::isfinite(p.cal.zero_order_px->second),
            "content.calibration.zero_order_px is not a pair of finite numbers");
  positive(p.cal.dk_y, "calibration.dk_y", "Å⁻¹ per pixel");
  positive(p.cal.dk_x, "calibration.dk_x", "Å⁻¹ per pixel");
  p.cal.wavelength_angstrom = electron::wavelength_angstrom(p.cal.energy_kev);
  if (p.cal.convergence_mrad) positive(*p.cal.convergence_mrad, "calibration.convergence_mrad", "mrad");
  if (p.cal.defocus_angstrom)
    require(std::isfinite(*p.cal.defocus_angstrom), "content.calibration.defocus_angstrom is not a finite number");
  if (p.cal.c3_mm) require(std::isfinite(*p.cal.c3_mm), "content.calibration.c3_mm is not a finite number");
  if (c.bad_pixels) {
    const auto& m = *c.bad_pixels;
    require(m.defined() && !m.is_floating_point() && !m.is_complex(),
            "content.bad_pixels must hold integer flags (non-zero = bad pixel)");
    require(m.dim() == 2 && m.size(0) == qy && m.size(1) == qx,
            "content.bad_pixels has shape " + shape_of(m) + " but patterns are " + std::to_string(qy) + " × " + std::to_string(qx));
    auto flags = (m.detach().to(torch::kCPU) != 0).to(torch::kUInt8).contiguous();
    require(flags.sum().item<int64_t>() < qy * qx, "content.bad_pixels flags every pixel");
    p.mask = flags;
  }
  if (c.truth) {
    GroundTruth gt;
    gt.object = c.truth->object.detach().to(torch::kCPU).to(torch::kComplexFloat);
    if (gt.object.dim() == 2) gt.object = gt.object.unsqueeze(0);
    gt.probe = c.truth->probe.detach().to(torch::kCPU).to(torch::kComplexFloat);
    if (gt.probe.dim() == 2) gt.probe = gt.probe.unsqueeze(0);
    gt.positions_px = c.truth->positions_px.detach().to(torch::kCPU).to(torch::kDouble);
    require(gt.object.dim() == 3 && gt.object.size(1) >= qy && gt.object.size(2) >= qx,
            "content.truth.object has shape " + shape_of(gt.object) + "; expected (slices, H, W) at least one pattern large");
    require(gt.probe.dim() == 3 && gt.probe.size(1) == qy && gt.probe.size(2) == qx,
            "content.truth.probe has shape " + shape_of(gt.probe) + "; expected (modes, Qy, Qx)");
    require(gt.positions_px.dim() == 2 && gt.positions_px.size(0) == n && gt.positions_px.size(1) == 2,
            "content.truth.positions_px has shape " + shape_of(gt.positions_px) + "; expected (" + std::to_string(n) + ", 2)");
    gt.object = gt.object.contiguous();
    gt.probe = gt.probe.contiguous();
    gt.positions_px = gt.positions_px.contiguous();
    p.truth = gt;
  }
  return p;
}

void write_file(const std::string& tmp, const Prepared& p, bool store_mrad, const Stem4dWriteOptions& options) {
  h5::File f = h5::File::create(tmp);
  h5::Group g = f.require_group(keys::kGroup);
  g.write_attribute("layout", std::string(keys::kLayoutName));
  g.write_attribute("layout_version", keys::kLayoutVersion);
  h5::DatasetOptions o;
  o.chunk = {1, 1, p.data.size(2), p.data.size(3)};
  o.gzip_level = options.gzip_level;
  f.create_dataset(keys::kData, p.data, o).write_attribute("axes", std::string("scan_y:scan_x:q_y:q_x"));
  const auto& c = p.cal;
  f.write_scalar(keys::kEnergy, c.energy_kev).write_attribute("units", std::string("keV"));
  if (c.step_y_angstrom > 0)
    f.create_dataset(keys::kStep, torch::tensor({c.step_y_angstrom, c.step_x_angstrom}, torch::kFloat64))
        .write_attribute("units", std::string("angstrom [y, x]"));
  if (p.positions) f.create_dataset(keys::kPositions, *p.positions).write_attribute("units", std::string("angstrom [y, x]"));
  if (c.scan_rotation_deg)
    f.write_scalar(keys::kRotation, *c.scan_rotation_deg).write_attribute("units", std::string("degree"));
  if (c.zero_order_px)
    f.create_dataset(keys::kZeroOrder, torch::tensor({c.zero_order_px->first, c.zero_order_px->second}, torch::kFloat64))
        .write_attribute("units", std::string("detector pixel [y, x]"));
  if (store_mrad)
    f.create_dataset(keys::kMrad, torch::tensor({c.mrad_per_pixel_y(), c.mrad_per_pixel_x()}, torch::kFloat64))
        .write_attribute("units", std::string("mrad per pixel [y, x]"));
  else
    f.create_dataset(keys::kInverseAngstrom, torch::tensor({c.dk_y, c.dk_x}, torch::kFloat64))
        .write_attribute("units", std::string("1/angstrom per pixel [y, x]"));
  if (c.convergence_mrad) f.write_scalar(keys::kConvergence, *c.convergence_mrad).write_attribute("units", std::string("mrad"));
  if (c.defocus_angstrom) f.write_scalar(keys::kDefocus, *c.defocus_angstrom).write_attribute("units", std::string("angstrom"));
  if (c.c3_mm) f.write_scalar(keys::kC3, *c.c3_mm).write_attribute("units", std::string("mm"));
  if (p.mask) f.create_dataset(keys::kMask, *p.mask);
  if (p.truth) {
    f.create_dataset(keys::kTruthObject, p.truth->object);
    f.create_dataset(keys::kTruthProbe, p.truth->probe);
    f.create_dataset(keys::kTruthPositions, p.truth->positions_px);
  }
  f.close();
}

}  // namespace

void write_stem4d(const std::string& path, const Stem4dContent& content, const Stem4dWriteOptions& options) {
  const Prepared p = prepare(content, "write_stem4d(" + path + "): ");
  write_atomically(path, [&](const std::string& tmp) {
    try {
      write_file(tmp, p, content.store_mrad, options);
      Stem4dFile verify(tmp);  // never leave behind a file the reader rejects
    } catch (const DataError& e) {
      throw DataError(replace_all(e.what(), tmp, path));
    }
  });
}

}  // namespace tessera
