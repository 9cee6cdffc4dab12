#include "data/simulate.h"

#include <ATen/CPUGeneratorImpl.h>
#include <cmath>

#include "data/phantom.h"
#include "models/probe_init.h"
#include "models/propagation.h"
#include "models/ptycho_model.h"
#include "src/error.h"
#include "src/geometry.h"

namespace tessera {

namespace {
constexpr double kJoulePerEv = 1.602176634e-19;
constexpr double kHcEvMetre = 1.23984198e-6;
}  // namespace

CxiContent simulate(const SimulationSettings& s) {
  TESSERA_REQUIRE(SettingsError, s.frame >= 8, "frame size must be at least 8 pixels, got ", s.frame);
  TESSERA_REQUIRE(SettingsError, s.scan_y >= 1 && s.scan_x >= 1, "the scan needs at least one point");
  TESSERA_REQUIRE(SettingsError, s.step_px > 0, "scan step must be positive, got ", s.step_px);
  TESSERA_REQUIRE(SettingsError, s.photons > 0, "photons per frame must be positive, got ", s.photons);
  TESSERA_REQUIRE(SettingsError, s.probe_modes >= 1 && s.slices >= 1, "modes and slices must be >= 1");
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(s.seed);

  ExperimentGeometry geo;
  geo.energy_j = s.energy_ev * kJoulePerEv;
  geo.wavelength_m = kHcEvMetre / s.energy_ev;
  geo.distance_m = s.distance_m;
  geo.detector_pixel_y_m = geo.detector_pixel_x_m = s.detector_pixel_m;
  geo.frame_h = geo.frame_w = s.frame;
  const double px = geo.pixel_x_m(), py = geo.pixel_y_m();

  // Raster scan of probe centres with sub-pixel jitter, in pixels then metres.
  const int64_t n = s.scan_y * s.scan_x;
  auto iy = torch::arange(s.scan_y, torch::kFloat64).view({-1, 1}).expand({s.scan_y, s.scan_x}).reshape({n});
  auto ix = torch::arange(s.scan_x, torch::kFloat64).view({1, -1}).expand({s.scan_y, s.scan_x}).reshape({n});
  auto jitter = (torch::rand({n, 2}, gen, torch::kFloat64) * 2 - 1) * s.jitter_px;
  auto centres_px = torch::stack({iy * s.step_px, ix * s.step_px}, 1) + jitter;
  auto positions_m = centres_px * torch::tensor({py, px}, torch::kFloat64);
  // The reconstruction derives the same pixel grid from the metres (same margin).
  auto geom = ScanGeometry::from_metres(positions_m, py, px, s.frame, s.frame);

  torch::Tensor object;
  {
    std::vector<torch::Tensor> slices;
    for (int64_t l = 0; l < s.slices; ++l) {
      auto o = phantom_object(geom.object_h, geom.object_w, s.seed * 7919 + l);
      if (s.slices > 1) {  // thinner phase per slice keeps the total comparable
        o = torch::polar(torch::abs(o), torch::angle(o) / static_cast<double>(s.slices));
      }
      slices.push_back(o);
    }
    object = torch::stack(slices, 0);
  }
  std::vector<torch::Tensor> modes;
  for (int64_t m = 0; m < s.probe_modes; ++m) {
    // Distinct, non-trivial modes: shifted defocus and a ramp per mode.
    auto p = phantom_probe(s.frame, s.frame, s.aperture_fraction, s.defocus_rad * (1 + 0.3 * m), 1.0);
    if (m > 0) {
      auto x = torch::linspace(-M_PI, M_PI, s.frame).view({1, -1});
      p = p * torch::polar(torch::ones_like(x), x * static_cast<double>(m)).to(torch::kComplexFloat);
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

  CxiContent c;
  c.geometry = geo;
  c.frames = to_detector_order(intensity).to(torch::kFloat32).contiguous();
  auto z = torch::zeros({n, 1}, torch::kFloat64);
  c.translation_m = torch::cat({positions_m.select(1, 1).unsqueeze(1), positions_m.select(1, 0).unsqueeze(1), z}, 1);
  c.truth = GroundTruth{object.contiguous(), probe.contiguous(), geom.positions_px};
  return c;
}

}  // namespace tessera
