#pragma once
// `tessera simulate`: a CXI data set from the built-in phantom, with the true
// object, probe and window positions stored so that accuracy can be scored.
#include <cstdint>

#include "data/cxi_writer.h"

namespace tessera {

struct SimulationSettings {
  int64_t frame = 64;              // frame (probe window) size in pixels, square
  int64_t scan_y = 20, scan_x = 20;  // raster scan points
  double step_px = 5.0;            // scan step in object pixels
  double jitter_px = 0.3;          // random sub-pixel offsets, so the scan is not on the pixel grid
  double photons = 1e6;            // mean photons per frame
  bool noise = true;               // Poisson noise
  uint64_t seed = 1;
  int64_t probe_modes = 1;         // incoherent modes in the true probe
  double aperture_fraction = 0.35; // probe aperture, fraction of the Nyquist radius
  double defocus_rad = 8.0;        // probe defocus: quadratic phase at the aperture edge
  int64_t slices = 1;              // object slices (multislice)
  double slice_thickness_m = 0;    // distance between slices (multislice only)
  // X-ray geometry of the written file (only the sample-plane pixel size matters).
  double energy_ev = 8000, distance_m = 2.0, detector_pixel_m = 75e-6;
};

// Runs the forward model on the phantom and returns what write_cxi stores.
CxiContent simulate(const SimulationSettings& settings);

}  // namespace tessera
