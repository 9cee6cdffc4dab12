#include "data/cxi_writer.h"

#include <cmath>
#include <cstdio>
#include <limits>

#include "data/cxi_file.h"
#include "src/error.h"
#include "src/io/atomic_file.h"
#include "data/validation_text.h"
#include "src/io/hdf5.h"

namespace tessera {

namespace {

namespace keys = cxi_keys;

using validation_text::replace_all;
using validation_text::shape_of;
std::string num(double v) { return validation_text::format_number(v); }

struct Checker {
  std::string prefix;  // "write_cxi(path): "
  [[noreturn]] void fail(const std::string& what) const { throw DataError(prefix + what); }
  void require(bool ok, const std::string& what) const {
    if (!ok) fail(what);
  }
  void positive(double v, const std::string& name, const std::string& unit) const {
    require(std::isfinite(v) && v > 0, "content.geometry." + name + " is " + num(v) + "; it must be a positive number of " + unit);
  }
};

// Everything write_cxi stores, converted and checked.
struct Prepared {
  torch::Tensor frames;       // (N, h, w) float32
  torch::Tensor translation;  // (N, 3) float64
  std::optional<torch::Tensor> mask;         // (h, w) int64 >= 0
  std::optional<torch::Tensor> probe;        // (h, w) or (M, h, w) complex64
  std::optional<GroundTruth> truth;
  double wavelength = 0, energy = 0;
};

Prepared prepare(const CxiContent& c, const Checker& check) {
  Prepared p;
  const auto& g = c.geometry;
  // Frames.
  check.require(c.frames.defined(), "content.frames is empty (undefined tensor)");
  check.require(c.frames.dim() == 3, "content.frames has shape " + shape_of(c.frames) + "; expected (frames, y, x)");
  check.require(!c.frames.is_complex() && c.frames.scalar_type() != torch::kBool,
                "content.frames must hold real intensities, not " + std::string(c.frames.is_complex() ? "complex" : "bool") + " values");
  const int64_t n = c.frames.size(0), h = c.frames.size(1), w = c.frames.size(2);
  check.require(n > 0 && h > 0 && w > 0, "content.frames is empty (shape " + shape_of(c.frames) + ")");
  check.require((g.frame_h == 0 || g.frame_h == h) && (g.frame_w == 0 || g.frame_w == w),
                "content.geometry says frames are " + std::to_string(g.frame_h) + " × " + std::to_string(g.frame_w) +
                    " but content.frames are " + std::to_string(h) + " × " + std::to_string(w));
  p.frames = c.frames.detach().to(torch::kCPU).to(torch::kFloat).contiguous();
  {
    auto flat = p.frames.reshape({n, -1});
    auto bad = (flat.isnan() | flat.isinf() | (flat < 0)).any(1);
    if (bad.any().item<bool>()) {
      auto rows = bad.nonzero().reshape({-1});
      check.fail("content.frames: frame " + std::to_string(rows[0].item<int64_t>()) +
                 " holds NaN, infinite or negative intensities (" + std::to_string(rows.numel()) + " of " + std::to_string(n) +
                 " frames are bad); intensities must be finite photon counts >= 0");
    }
  }
  // Positions.
  check.require(c.translation_m.defined(), "content.translation_m is empty (undefined tensor)");
  const auto& t = c.translation_m;
  check.require(t.dim() == 2 && (t.size(1) == 3 || t.size(1) == 2),
                "content.translation_m has shape " + shape_of(t) + "; expected (frames, 3): x, y, z in metres");
  check.require(!t.is_complex(), "content.translation_m must be real");
  check.require(t.size(0) == n, "content.translation_m has " + std::to_string(t.size(0)) + " positions but content.frames has " +
                                    std::to_string(n) + " frames");
  p.translation = t.detach().to(torch::kCPU).to(torch::kDouble);
  if (p.translation.size(1) == 2) p.translation = torch::cat({p.translation, torch::zeros({n, 1}, torch::kDouble)}, 1);
  p.translation = p.translation.contiguous();
  {
    auto ok = torch::isfinite(p.translation).all(1);
    if (!ok.all().item<bool>())
      check.fail("content.translation_m: position " + std::to_string(ok.logical_not().nonzero()[0][0].item<int64_t>()) +
                 " is NaN or infinite");
  }
  // Geometry.
  check.positive(g.distance_m, "distance_m", "metres");
  check.positive(g.detector_pixel_y_m, "detector_pixel_y_m", "metres");
  check.positive(g.detector_pixel_x_m, "detector_pixel_x_m", "metres");
  check.require(g.wavelength_m > 0 || g.energy_j > 0,
                "content.geometry has neither a wavelength_m nor an energy_j; one of them is required");
  if (g.wavelength_m != 0) check.positive(g.wavelength_m, "wavelength_m", "metres");
  if (g.energy_j != 0) check.positive(g.energy_j, "energy_j", "joules");
  p.wavelength = g.wavelength_m > 0 ? g.wavelength_m : photon_wavelength_m(g.energy_j);
  p.energy = g.energy_j > 0 ? g.energy_j : photon_energy_j(g.wavelength_m);
  // Agreement to 0.1 %: constants such as hc = 12.398 keV Å are often rounded.
  check.require(std::fabs(photon_wavelength_m(p.energy) - p.wavelength) <= 1e-3 * p.wavelength,
                "content.geometry.wavelength_m (" + num(g.wavelength_m) + " m) and energy_j (" + num(g.energy_j) +
                    " J, i.e. " + num(photon_wavelength_m(g.energy_j)) + " m) disagree; give one, or both consistent");
  // Mask.
  if (c.mask) {
    const auto& m = *c.mask;
    check.require(m.defined(), "content.mask is an undefined tensor");
    check.require(m.scalar_type() != torch::kBool,
                  "content.mask is bool; it must hold integer flags, non-zero = pixel excluded (for a valid-pixel mask "
                  "where true = used, pass (~valid).to(torch::kInt32))");
    check.require(!m.is_floating_point() && !m.is_complex(),
                  "content.mask must hold integer flags (non-zero = pixel excluded), not floating-point values");
    check.require(m.dim() == 2 && m.size(0) == h && m.size(1) == w,
                  "content.mask has shape " + shape_of(m) + " but frames are " + std::to_string(h) + " × " + std::to_string(w));
    torch::Tensor m64 = m.detach().to(torch::kCPU).to(torch::kLong).contiguous();
    check.require(m64.min().item<int64_t>() >= 0 && m64.max().item<int64_t>() <= std::numeric_limits<uint32_t>::max(),
                  "content.mask holds values outside 0 .. 2^32-1; it is stored as uint32 bit flags");
    check.require((m64 == 0).any().item<bool>(), "content.mask excludes every pixel");
    p.mask = m64;
  }
  // Probe guess.
  if (c.probe_guess) {
    const auto& q = *c.probe_guess;
    check.require(q.defined(), "content.probe_guess is an undefined tensor");
    check.require((q.dim() == 2 || (q.dim() == 3 && q.size(0) > 0)) && q.size(-2) == h && q.size(-1) == w,
                  "content.probe_guess has shape " + shape_of(q) + "; expected " + std::to_string(h) + " × " +
                      std::to_string(w) + " or (modes, " + std::to_string(h) + ", " + std::to_string(w) + ")");
    torch::Tensor pc = q.detach().to(torch::kCPU).to(torch::kComplexFloat);
    check.require(torch::isfinite(torch::view_as_real(pc)).all().item<bool>(), "content.probe_guess holds NaN or infinite values");
    if (pc.dim() == 3 && pc.size(0) == 1) pc = pc[0];
    p.probe = pc.contiguous();
  }
  // Ground truth.
  if (c.truth) {
    GroundTruth gt;
    const auto& o = c.truth->object;
    const auto& q = c.truth->probe;
    const auto& pos = c.truth->positions_px;
    check.require(o.defined() && (o.dim() == 2 || o.dim() == 3) && o.size(-2) >= h && o.size(-1) >= w,
                  "content.truth.object has shape " + (o.defined() ? shape_of(o) : std::string("undefined")) +
                      "; expected (slices, H, W) at least one frame large");
    check.require(q.defined() && (q.dim() == 2 || q.dim() == 3) && q.size(-2) == h && q.size(-1) == w,
                  "content.truth.probe has shape " + (q.defined() ? shape_of(q) : std::string("undefined")) +
                      "; expected (modes, " + std::to_string(h) + ", " + std::to_string(w) + ")");
    check.require(pos.defined() && pos.dim() == 2 && pos.size(1) == 2 && pos.size(0) == n,
                  "content.truth.positions_px has shape " + (pos.defined() ? shape_of(pos) : std::string("undefined")) +
                      "; expected (" + std::to_string(n) + ", 2): y, x in object pixels, one per frame");
    gt.object = o.detach().to(torch::kCPU).to(torch::kComplexFloat);
    if (gt.object.dim() == 2) gt.object = gt.object.unsqueeze(0);
    gt.probe = q.detach().to(torch::kCPU).to(torch::kComplexFloat);
    if (gt.probe.dim() == 2) gt.probe = gt.probe.unsqueeze(0);
    gt.positions_px = pos.detach().to(torch::kCPU).to(torch::kDouble);
    check.require(torch::isfinite(gt.positions_px).all().item<bool>(), "content.truth.positions_px holds NaN or infinite values");
    gt.object = gt.object.contiguous();
    gt.probe = gt.probe.contiguous();
    gt.positions_px = gt.positions_px.contiguous();
    p.truth = gt;
  }
  return p;
}

void write_file(const std::string& tmp, const Prepared& p, const CxiWriteOptions& options, const ExperimentGeometry& g) {
  h5::File f = h5::File::create(tmp);
  const int64_t h = p.frames.size(1), w = p.frames.size(2);
  f.write_scalar(keys::kVersion, int64_t{160});
  f.require_group("/entry_1").write_attribute("NX_class", std::string("NXentry"));
  f.require_group("/entry_1/instrument_1").write_attribute("NX_class", std::string("NXinstrument"));
  f.require_group("/entry_1/instrument_1/detector_1").write_attribute("NX_class", std::string("NXdetector"));
  f.require_group("/entry_1/instrument_1/source_1").write_attribute("NX_class", std::string("NXsource"));
  f.require_group("/entry_1/sample_1").write_attribute("NX_class", std::string("NXsample"));
  f.require_group("/entry_1/sample_1/geometry_1").write_attribute("NX_class", std::string("NXgeometry"));
  f.require_group("/entry_1/data_1").write_attribute("NX_class", std::string("NXdata"));

  h5::DatasetOptions frame_options;
  frame_options.chunk = {1, h, w};
  frame_options.gzip_level = options.gzip_level;
  h5::Dataset data = f.create_dataset(keys::kData, p.frames, frame_options);
  data.write_attribute("axes", std::string("translation:y:x"));

  auto metres = [&](const char* key, double v) { f.write_scalar(key, v).write_attribute("units", std::string("m")); };
  metres(keys::kDistance, g.distance_m);
  metres(keys::kXPixelSize, g.detector_pixel_x_m);
  metres(keys::kYPixelSize, g.detector_pixel_y_m);
  f.write_scalar(keys::kEnergy, p.energy).write_attribute("units", std::string("J"));
  metres(keys::kWavelength, p.wavelength);
  if (g.zero_order_px) {
    // In pixels (NeXus allows it with the unit stated): exact for any detector.
    f.write_scalar(keys::kBeamCenterY, g.zero_order_px->first).write_attribute("units", std::string("pixel"));
    f.write_scalar(keys::kBeamCenterX, g.zero_order_px->second).write_attribute("units", std::string("pixel"));
  }
  if (p.mask) {
    h5::DatasetOptions o;
    o.file_type = h5::FileType::uint32;
    f.create_dataset(keys::kMask, *p.mask, o);
  }
  if (p.probe) f.create_dataset(keys::kIllumination, *p.probe);
  f.create_dataset(keys::kTranslation, p.translation).write_attribute("units", std::string("m"));
  f.create_soft_link(keys::kDataLink, keys::kData);
  f.create_soft_link(keys::kTranslationLink, keys::kTranslation);
  if (p.truth) {
    f.create_dataset(keys::kTruthObject, p.truth->object);
    f.create_dataset(keys::kTruthProbe, p.truth->probe);
    f.create_dataset(keys::kTruthPositions, p.truth->positions_px);
  }
  f.close();
}

}  // namespace

void write_cxi(const std::string& path, const CxiContent& content, const CxiWriteOptions& options) {
  Checker check{"write_cxi(" + path + "): "};
  const Prepared p = prepare(content, check);
  ExperimentGeometry g = content.geometry;
  g.frame_h = p.frames.size(1);
  g.frame_w = p.frames.size(2);
  write_atomically(path, [&](const std::string& tmp) {
    try {
      write_file(tmp, p, options, g);
      CxiFile verify(tmp);  // never leave behind a file the reader rejects
    } catch (const DataError& e) {
      // Name the destination, not the temporary file.
      throw DataError(replace_all(e.what(), tmp, path));
    }
  });
}

}  // namespace tessera
