#include "data/simulate.h"

#include <ATen/CPUGeneratorImpl.h>
#include <cmath>
#include <functional>

#include "data/phantom.h"
#include "data/stem4d_file.h"
#include "models/probe_init.h"
#include "models/propagation.h"
#include "models/zero_order.h"
#include "models/ptycho_model.h"
#include "src/electron_optics.h"
#include "src/error.h"
#include "src/geometry.h"

namespace tessera {

namespace {
constexpr double kJoulePerEv = 1.602176634e-19;
constexpr double kHcEvMetre = 1.23984198e-6;
}  // namespace

namespace {

void check_settings(const SimulationSettings& s) {
  TESSERA_REQUIRE(SettingsError, s.frame >= 8, "frame size must be at least 8 pixels, got ", s.frame);
  TESSERA_REQUIRE(SettingsError, s.scan_y >= 1 && s.scan_x >= 1, "the scan needs at least one point");
  TESSERA_REQUIRE(SettingsError, s.step_px > 0, "scan step must be positive, got ", s.step_px);
  TESSERA_REQUIRE(SettingsError, s.photons > 0, "photons per frame must be positive, got ", s.photons);
  TESSERA_REQUIRE(SettingsError, s.probe_modes >= 1 && s.slices >= 1, "modes and slices must be >= 1");
}

struct Simulated {
  torch::Tensor frames;       // (N, h, w) float32, detector order
  torch::Tensor positions_m;  // (N, 2) [y, x] probe centres
  GroundTruth truth;
};

// The phantom seen through `probe` at a raster scan of step_px (plus jitter)
// pixels of the sample grid that `geo` defines. The random generator is used
// for the jitter first and the noise last, so X-ray results stay as they were.
Simulated run_scan(const SimulationSettings& s, const ExperimentGeometry& geo, double step_px, double jitter_px,
                   const std::function<torch::Tensor()>& make_probe, double scan_rotation_deg = 0) {
  auto gen = at::detail::createCPUGenerator(s.seed);
  const double px = geo.pixel_x_m(), py = geo.pixel_y_m();

  // Raster scan of probe centres with sub-pixel jitter, in pixels then metres.
  const int64_t n = s.scan_y * s.scan_x;
  auto iy = torch::arange(s.scan_y, torch::kFloat64).view({-1, 1}).expand({s.scan_y, s.scan_x}).reshape({n});
  auto ix = torch::arange(s.scan_x, torch::kFloat64).view({1, -1}).expand({s.scan_y, s.scan_x}).reshape({n});
  auto jitter = (torch::rand({n, 2}, gen, torch::kFloat64) * 2 - 1) * jitter_px;
  auto centres_px = torch::stack({iy * step_px, ix * step_px}, 1) + jitter;
  auto positions_m = scan_to_detector_axes(centres_px * torch::tensor({py, px}, torch::kFloat64), scan_rotation_deg);
  // The reconstruction derives the same pixel grid from the metres (same margin).
  auto geom = ScanGeometry::from_metres(positions_m, py, px, s.frame, s.frame);

  torch::Tensor object;
  {
    std::vector<torch::Tensor> slices;
    for (int64_t l = 0; l < s.slices; ++l) {
      auto o = phantom_object(geom.object_h, geom.object_w, s.seed * 7919 + l);
      if (s.slices > 1) {
        const double fraction = s.slice_phase_fraction > 0 ? s.slice_phase_fraction : 1.0 / static_cast<double>(s.slices);
        o = torch::polar(torch::abs(o), torch::angle(o) * fraction);
      }
      slices.push_back(o);
    }
    object = torch::stack(slices, 0);
  }
  auto probe = make_probe();

  torch::Tensor transfer;
  if (s.slices > 1) {
    TESSERA_REQUIRE(SettingsError, s.slice_thickness_m > 0, "multislice needs a positive slice thickness");
    transfer = fresnel_transfer_function(s.frame, s.frame, py, px, geo.wavelength_m, s.slice_thickness_m);
  }
  PtychoModel model(object, probe, transfer);
  auto positions = geom.positions_px.to(torch::kFloat32);
  std::vector<torch::Tensor> chunks;
  for (int64_t b = 0; b < n; b += 256)
    chunks.push_back(model->forward(positions.slice(0, b, std::min(n, b + 256))));
  auto intensity = torch::cat(chunks);
  if (s.noise) intensity = at::poisson(intensity, gen);

  Simulated out;
  out.frames = to_detector_order(intensity).to(torch::kFloat32).contiguous();
  out.positions_m = positions_m;
  out.truth = GroundTruth{object.contiguous(), probe.contiguous(), geom.positions_px};
  return out;
}

}  // namespace

CxiContent simulate(const SimulationSettings& s) {
  check_settings(s);
  torch::NoGradGuard no_grad;

  ExperimentGeometry geo;
  geo.energy_j = s.energy_ev * kJoulePerEv;
  geo.wavelength_m = kHcEvMetre / s.energy_ev;
  geo.distance_m = s.distance_m;
  geo.detector_pixel_y_m = geo.detector_pixel_x_m = s.detector_pixel_m;
  geo.frame_h = geo.frame_w = s.frame;

  auto make_probe = [&] {
    std::vector<torch::Tensor> modes;
    for (int64_t m = 0; m < s.probe_modes; ++m) {
      // Distinct modes of a partially coherent beam: the same aperture with a
      // shifted defocus, times a low-order pattern across the beam (x, y, xy,
      // ...), as the coherent modes of a finite source look. Their far fields
      // stay centred on the zero order, as a real beam's do.
      auto p = phantom_probe(s.frame, s.frame, s.aperture_fraction, s.defocus_rad * (1 + 0.3 * m), 1.0);
      if (m > 0) {
        auto y = torch::linspace(-1, 1, s.frame).view({-1, 1}), x = torch::linspace(-1, 1, s.frame).view({1, -1});
        const torch::Tensor patterns[] = {x.expand({s.frame, s.frame}), y.expand({s.frame, s.frame}), x * y, x * x - y * y};
        p = p * patterns[(m - 1) % 4].to(torch::kComplexFloat);
      }
      modes.push_back(p);
    }
    auto probe = orthogonalise_modes(torch::stack(modes));
    // Mode powers 1, 1/2, 1/4, ... scaled to the requested photons.
    auto weights = torch::pow(0.5, torch::arange(s.probe_modes, torch::kFloat64));
    weights = weights / weights.sum() * s.photons;
    for (int64_t m = 0; m < s.probe_modes; ++m) {
      auto power = torch::view_as_real(probe[m]).pow(2).sum().item<double>();
      probe[m] *= std::sqrt(weights[m].item<double>() / power);
    }
    return tilt_probe(probe, {s.zero_order_offset_y_px, s.zero_order_offset_x_px});
  };
  Simulated sim = run_scan(s, geo, s.step_px, s.jitter_px, make_probe);

  CxiContent c;
  c.geometry = geo;
  if (s.write_beam_centre)
    c.geometry.zero_order_px = std::make_pair(static_cast<double>(s.frame / 2) + s.zero_order_offset_y_px,
                                              static_cast<double>(s.frame / 2) + s.zero_order_offset_x_px);
  c.frames = sim.frames;
  const int64_t n = sim.frames.size(0);
  auto z = torch::zeros({n, 1}, torch::kFloat64);
  auto stated_m = sim.positions_m.clone();
  if (s.position_error_px > 0) {
    auto gen = at::detail::createCPUGenerator(s.seed + 1000003);
    auto error_px = (torch::rand({n, 2}, gen, torch::kFloat64) * 2 - 1) * s.position_error_px;
    stated_m += error_px * torch::tensor({geo.pixel_y_m(), geo.pixel_x_m()}, torch::kFloat64);
  }
  c.translation_m = torch::cat({stated_m.select(1, 1).unsqueeze(1), stated_m.select(1, 0).unsqueeze(1), z}, 1);
  c.truth = sim.truth;
  return c;
}

Stem4dContent simulate_stem4d(const SimulationSettings& s) {
  check_settings(s);
  TESSERA_REQUIRE(SettingsError, s.probe_modes == 1,
                  "electron simulation uses one coherent probe from the aberration model; got ", s.probe_modes, " modes");
  TESSERA_REQUIRE(SettingsError, std::isfinite(s.mrad_per_pixel) && s.mrad_per_pixel > 0,
                  "the detector calibration must be a positive number of mrad per pixel, got ", s.mrad_per_pixel);
  TESSERA_REQUIRE(SettingsError, std::isfinite(s.step_angstrom) && s.step_angstrom >= 0,
                  "the scan step must be a positive number of Å (or 0 for step_px pixels), got ", s.step_angstrom);
  torch::NoGradGuard no_grad;
  const double lambda = electron::wavelength_angstrom(s.electron_energy_kev);
  const double dk = electron::mrad_to_inverse_angstrom(s.mrad_per_pixel, lambda);
  const double pixel_a = electron::sample_pixel_angstrom(s.frame, dk);

  ExperimentGeometry geo;
  geo.wavelength_m = lambda * 1e-10;
  geo.reciprocal_pixel_y_per_m = geo.reciprocal_pixel_x_per_m = dk * 1e10;
  geo.frame_h = geo.frame_w = s.frame;
  const double step_px = s.step_angstrom > 0 ? s.step_angstrom / pixel_a : s.step_px;

  electron::ProbeOptics optics{s.electron_energy_kev, s.convergence_mrad, s.defocus_angstrom, s.c3_mm};
  auto make_probe = [&] { return electron::aberration_probe(optics, s.frame, s.frame, dk, dk, s.photons).unsqueeze(0); };
  TESSERA_REQUIRE(SettingsError, std::isfinite(s.scan_rotation_deg) && std::fabs(s.scan_rotation_deg) <= 360,
                  "the scan rotation must be a number of degrees in [-360, 360], got ", s.scan_rotation_deg);
  Simulated sim = run_scan(s, geo, step_px, s.measured_positions ? s.jitter_px : 0.0, make_probe, s.scan_rotation_deg);

  Stem4dContent c;
  c.data = sim.frames.reshape({s.scan_y, s.scan_x, s.frame, s.frame});
  auto& cal = c.calibration;
  cal.energy_kev = s.electron_energy_kev;
  cal.wavelength_angstrom = lambda;
  cal.step_y_angstrom = cal.step_x_angstrom = step_px * pixel_a;
  cal.dk_y = cal.dk_x = dk;
  cal.convergence_mrad = s.convergence_mrad;
  cal.defocus_angstrom = s.defocus_angstrom;
  cal.c3_mm = s.c3_mm;
  // The zero order as the X-ray files state it: known from the simulation, as
  // a calibration without the specimen would give it.
  if (s.write_beam_centre)
    cal.zero_order_px = std::make_pair(static_cast<double>(s.frame / 2), static_cast<double>(s.frame / 2));
  if (s.scan_rotation_deg != 0) cal.scan_rotation_deg = s.scan_rotation_deg;
  if (s.measured_positions) {
    // Back to the scan's axes, where the layout stores positions.
    c.positions_angstrom = scan_to_detector_axes(sim.positions_m * 1e10, -s.scan_rotation_deg);
    cal.step_y_angstrom = cal.step_x_angstrom = 0;
  }
  c.store_mrad = s.store_mrad;
  c.truth = sim.truth;
  return c;
}

}  // namespace tessera
