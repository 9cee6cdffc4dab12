#include "train/scan_problem.h"

#include <algorithm>
#include <cmath>

#include "data/cxi_file.h"
#include "data/stem4d_file.h"
#include "src/electron_optics.h"
#include "src/error.h"
#include "models/zero_order.h"
#include "train/frame_chunks.h"
#include "train/pattern_reduction.h"

namespace tessera {

namespace {

// The zero order of the frames as stored: the option's, else the file's,
// else estimated from the mean of up to 256 patterns spread over the scan
// (models/zero_order.h). Before any crop or bin, which centre on it.
void settle_zero_order(ScanProblem& p, int64_t num_frames, const LoadOptions& options) {
  auto& g = p.experiment;
  if (options.zero_order) {
    g.zero_order_px = options.zero_order;
    g.zero_order_source = "option";
  } else if (!g.zero_order_px) {
    const int64_t samples = std::min<int64_t>(num_frames, 256);
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < samples; ++i) idx.push_back(i * num_frames / samples);
    auto mean = p.read_frames(idx).to(torch::kFloat64).mean(0);
    g.zero_order_px = estimate_zero_order(mean, p.valid_mask);
    g.zero_order_source = "data";
  }
  const auto [y, x] = *g.zero_order_px;
  TESSERA_REQUIRE(SettingsError, std::isfinite(y) && std::isfinite(x) && y >= 0 && x >= 0 &&
                                     y <= static_cast<double>(g.frame_h - 1) && x <= static_cast<double>(g.frame_w - 1),
                  p.source, ": the zero order (", g.zero_order_source, ") at pixel (", y, ", ", x, ") lies outside the ",
                  g.frame_h, " x ", g.frame_w, " frames");
}

// Places the scan on the sample grid, after options' crop and bin.
void load_scan(ScanProblem& p, const torch::Tensor& positions_m, const LoadOptions& options) {
  const ExperimentGeometry full = p.experiment;
  auto place = [&](const ExperimentGeometry& g) {
    return ScanGeometry::from_metres(positions_m, g.pixel_y_m(), g.pixel_x_m(), g.frame_h, g.frame_w);
  };
  PatternReduction r(full.frame_h, full.frame_w, options.crop_h, options.crop_w, options.bin, p.source,
                     full.zero_order_px);
  if (r.identity()) {
    p.scan = place(full);
    return;
  }
  const torch::Tensor full_valid = p.valid_mask;
  p.experiment = r.geometry(full);
  p.valid_mask = r.valid(full_valid);
  if (p.probe_guess) p.probe_guess = r.probe(*p.probe_guess);
  auto read = p.read_frames;
  const int64_t full_frame_bytes = full.frame_h * full.frame_w * 4;
  p.read_frames = [read, r, full_valid, full_frame_bytes](const std::vector<int64_t>& idx) {
    // Full-resolution frames only a piece at a time (train/frame_chunks.h).
    auto out = torch::empty({static_cast<int64_t>(idx.size()), r.out_h(), r.out_w()}, torch::kFloat);
    for_each_frame_chunk(idx, full_frame_bytes, [&](int64_t row, const std::vector<int64_t>& piece) {
      out.narrow(0, row, static_cast<int64_t>(piece.size())).copy_(r.frames(read(piece), full_valid));
    });
    return out;
  };
  p.scan = place(p.experiment);
  if (!p.truth) return;
  const bool same_pixel = std::fabs(p.experiment.pixel_y_m() - full.pixel_y_m()) <= 1e-9 * full.pixel_y_m() &&
                          std::fabs(p.experiment.pixel_x_m() - full.pixel_x_m()) <= 1e-9 * full.pixel_x_m();
  if (!same_pixel) {
    // A cropped pattern samples the object more coarsely: the truth cannot score it.
    p.truth.reset();
    return;
  }
  // Binning keeps the sample pixel; the smaller windows only move the object's
  // origin, by a whole number of pixels that the first window's corner shows.
  const ScanGeometry before = place(full);
  auto origin_shift = [&](int a, int64_t n_full, int64_t n_new) {
    const double d = 0.5 * static_cast<double>(n_full - n_new) -
                     (p.scan.positions_px[0][a].item<double>() - before.positions_px[0][a].item<double>());
    return static_cast<int64_t>(std::llround(d));
  };
  const int64_t dy = origin_shift(0, full.frame_h, p.experiment.frame_h);
  const int64_t dx = origin_shift(1, full.frame_w, p.experiment.frame_w);
  auto& t = *p.truth;
  if (dy < 0 || dx < 0 || t.object.size(-2) < dy + p.scan.object_h || t.object.size(-1) < dx + p.scan.object_w) {
    p.truth.reset();
    return;
  }
  t.object = t.object.slice(-2, dy, dy + p.scan.object_h).slice(-1, dx, dx + p.scan.object_w).contiguous();
  t.probe = r.probe(t.probe);
  t.positions_px = p.scan.positions_px.clone();
}

const char* electron_option_given(const LoadOptions& o) {
  return o.convergence_mrad ? "--convergence-mrad" : o.defocus_angstrom ? "--defocus-angstrom" : "--c3-mm";
}

double photon_energy_kev(double wavelength_a) {
  using namespace electron;
  return kPlanckJs * kSpeedOfLightMs / (wavelength_a * 1e-10) / kElementaryChargeC * 1e-3;
}

// The initial probe of an electron beam: aperture, defocus and C3 from
// options or else the file's, on the loaded patterns' grid, scaled to the
// mean counts per pattern.
void attach_aberration_probe(ScanProblem& p, double energy_kev, std::optional<double> convergence,
                             std::optional<double> defocus, std::optional<double> c3, const LoadOptions& options,
                             int64_t num_frames) {
  if (options.convergence_mrad) convergence = options.convergence_mrad;
  if (!convergence) {
    TESSERA_REQUIRE(SettingsError, !options.defocus_angstrom && !options.c3_mm, p.source,
                    ": a defocus or C3 is given but no convergence semi-angle (neither in the file nor as an option); "
                    "the aberration probe needs the aperture");
    return;
  }
  TESSERA_REQUIRE(SettingsError, std::isfinite(*convergence) && *convergence > 0, p.source,
                  ": the convergence semi-angle must be a positive number of mrad, got ", *convergence);
  electron::ProbeOptics optics;
  optics.energy_kev = energy_kev;
  optics.convergence_mrad = *convergence;
  optics.defocus_angstrom = options.defocus_angstrom.value_or(defocus.value_or(0.0));
  optics.c3_mm = options.c3_mm.value_or(c3.value_or(0.0));
  // Mean counts from up to 64 patterns spread over the scan: enough for the
  // probe's power (a thin specimen scatters, it does not absorb, electrons).
  const int64_t samples = std::min<int64_t>(num_frames, 64);
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < samples; ++i) idx.push_back(i * num_frames / samples);
  const double counts = p.read_frames(idx).to(torch::kFloat64).sum().item<double>() / static_cast<double>(samples);
  TESSERA_REQUIRE(DataError, counts > 0, p.source, ": the patterns hold no counts, so the probe cannot be scaled");
  // Δk = 1 / (N pixel): 1/(N Δk) for 4D-STEM data, p / (λ z) for far-field (CXI) geometry.
  const auto& g = p.experiment;
  const double dk_y = 1e-10 / (static_cast<double>(g.frame_h) * g.pixel_y_m());
  const double dk_x = 1e-10 / (static_cast<double>(g.frame_w) * g.pixel_x_m());
  p.probe_guess = electron::aberration_probe(optics, g.frame_h, g.frame_w, dk_y, dk_x, counts).unsqueeze(0);
}

}  // namespace

ScanProblem ScanProblem::from_cxi(const std::string& path, const LoadOptions& options) {
  auto file = std::make_shared<CxiFile>(path);
  ScanProblem p;
  p.source = path;
  p.experiment = file->geometry();
  if (options.energy_kev) {
    const auto problem = electron::beam_energy_problem(*options.energy_kev);
    TESSERA_REQUIRE(SettingsError, problem.empty(), path, ": --energy-kev: ", problem);
    p.experiment.wavelength_m = electron::wavelength_angstrom(*options.energy_kev) * 1e-10;
    p.experiment.energy_j = 0;  // the field holds a photon energy
  }
  p.valid_mask = file->valid_mask();
  p.probe_guess = file->probe_guess();
  p.truth = file->ground_truth();
  p.read_frames = [file](const std::vector<int64_t>& idx) { return file->read_frames(idx); };
  settle_zero_order(p, file->num_frames(), options);
  load_scan(p, file->positions_m(), options);
  if (options.has_probe_optics()) {
    // CXI stores a photon energy. Electron optics on a file whose wavelength
    // no electron microscope uses is X-ray data given an electron option by
    // mistake: building an electron probe from it would be silently wrong.
    const double wavelength_a = p.experiment.wavelength_m * 1e10;
    const double energy = options.energy_kev.value_or(electron::energy_kev_from_wavelength(wavelength_a));
    TESSERA_REQUIRE(SettingsError, options.energy_kev || electron::beam_energy_problem(energy).empty(), path,
                    ": ", electron_option_given(options), " describes an electron probe, but the file's wavelength (",
                    wavelength_a, " Å) is that of ", energy, " keV electrons, outside the ", electron::kMinEnergyKev,
                    " to ", electron::kMaxEnergyKev, " keV of electron microscopes: this looks like X-ray data (",
                    photon_energy_kev(wavelength_a), " keV photons). For electron data stored as CXI give the beam "
                    "energy with --energy-kev; for X-ray data drop the electron option");
    attach_aberration_probe(p, energy, std::nullopt, std::nullopt, std::nullopt, options, file->num_frames());
  }
  return p;
}

ScanProblem ScanProblem::from_stem4d(const std::string& path, const LoadOptions& options) {
  auto file = std::make_shared<Stem4dFile>(path);
  const auto& cal = file->calibration();
  ScanProblem p;
  p.source = path;
  p.experiment = file->geometry();
  p.valid_mask = file->valid_mask();
  p.truth = file->ground_truth();
  p.read_frames = [file](const std::vector<int64_t>& idx) { return file->read_frames(idx); };
  settle_zero_order(p, file->num_frames(), options);
  load_scan(p, file->positions_m(), options);
  TESSERA_REQUIRE(SettingsError, !options.energy_kev || std::fabs(*options.energy_kev - cal.energy_kev) <= 1e-3 * cal.energy_kev,
                  path, ": --energy-kev ", options.energy_kev.value_or(0), " disagrees with the file's beam energy (",
                  cal.energy_kev, " keV, ", stem4d_keys::kEnergy, "), which a 4D-STEM file's calibration uses; drop the option");
  attach_aberration_probe(p, cal.energy_kev, cal.convergence_mrad, cal.defocus_angstrom, cal.c3_mm, options,
                          file->num_frames());
  return p;
}

ScanProblem ScanProblem::from_file(const std::string& path, const LoadOptions& options) {
  return detect_data_format(path) == DataFormat::stem4d ? from_stem4d(path, options) : from_cxi(path, options);
}

ScanProblem ScanProblem::from_content(CxiContent c, std::string source) {
  ScanProblem p;
  p.source = std::move(source);
  p.experiment = c.geometry;
  const auto& g = p.experiment;
  auto yx = torch::stack({c.translation_m.select(1, 1), c.translation_m.select(1, 0)}, 1);
  p.scan = ScanGeometry::from_metres(yx, g.pixel_y_m(), g.pixel_x_m(), g.frame_h, g.frame_w);
  p.valid_mask = c.mask ? (*c.mask == 0) : torch::ones({g.frame_h, g.frame_w}, torch::kBool);
  if (c.probe_guess) p.probe_guess = c.probe_guess->dim() == 2 ? c.probe_guess->unsqueeze(0) : *c.probe_guess;
  p.truth = c.truth;
  auto frames = c.frames;
  p.read_frames = [frames](const std::vector<int64_t>& idx) {
    return frames.index_select(0, torch::tensor(idx, torch::kInt64)).to(torch::kFloat32);
  };
  return p;
}

ScanProblem ScanProblem::restricted_to(const std::vector<int64_t>& positions) const {
  const int64_t n = scan.num_positions();
  TESSERA_REQUIRE(SettingsError, !positions.empty(), source, ": a subset of the scan needs at least one position");
  std::vector<bool> seen(static_cast<size_t>(n), false);
  for (const int64_t j : positions) {
    TESSERA_REQUIRE(SettingsError, j >= 0 && j < n, source, ": position ", j, " is not in the scan of ", n,
                    " positions");
    TESSERA_REQUIRE(SettingsError, !seen[static_cast<size_t>(j)], source, ": position ", j,
                    " is listed twice in a subset of the scan");
    seen[static_cast<size_t>(j)] = true;
  }
  ScanProblem p = *this;
  const auto index = torch::tensor(positions, torch::kInt64);
  p.scan.positions_px = scan.positions_px.index_select(0, index).contiguous();
  if (p.truth && p.truth->positions_px.defined() && p.truth->positions_px.size(0) == n)
    p.truth->positions_px = p.truth->positions_px.index_select(0, index).contiguous();
  auto read = read_frames;
  p.read_frames = [read, positions](const std::vector<int64_t>& idx) {
    std::vector<int64_t> global;
    global.reserve(idx.size());
    for (const int64_t i : idx) global.push_back(positions.at(static_cast<size_t>(i)));
    return read(global);
  };
  return p;
}

}  // namespace tessera
