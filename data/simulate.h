#pragma once
// `tessera simulate`: a CXI data set from the built-in phantom, with the true
// object, probe and window positions stored so that accuracy can be scored;
// or, in electron mode, a 4D-STEM data set in tessera's layout
// (data/stem4d_file.h) with the probe of an aberrated convergent beam.
#include <cstdint>

#include "data/cxi_writer.h"
#include "data/stem4d_writer.h"

namespace tessera {

struct SimulationSettings {
  int64_t frame = 64;              // frame (probe window) size in pixels, square
  int64_t scan_y = 20, scan_x = 20;  // raster scan points
  double step_px = 5.0;            // scan step in object pixels
  double jitter_px = 0.3;          // random sub-pixel offsets, so the scan is not on the pixel grid
  // Error of the positions written to the file (uniform in +-this many pixels
  // per axis; the truth keeps the exact ones): data for position correction.
  double position_error_px = 0;
  double photons = 1e6;            // mean photons per frame
  bool noise = true;               // Poisson noise
  uint64_t seed = 1;
  int64_t probe_modes = 1;         // incoherent modes in the true probe
  double aperture_fraction = 0.35; // probe aperture, fraction of the Nyquist radius
  double defocus_rad = 8.0;        // probe defocus: quadratic phase at the aperture edge
  // Detector offset: the zero order falls this many pixels [y, x] from the
  // frame centre (sub-pixel allowed), as on a real detector that is not
  // centred on the beam. Simulated as a tilt of the true probe (exact).
  double zero_order_offset_y_px = 0, zero_order_offset_x_px = 0;
  // Write that zero order as the detector's beam centre (electron mode: the
  // pattern centre as zero_order_px), as an instrument calibrated without the
  // sample would; false leaves it to be estimated.
  bool write_beam_centre = true;
  int64_t slices = 1;              // object slices (multislice)
  double slice_thickness_m = 0;    // distance between slices (multislice only)
  // Phase of each slice as a fraction of the phantom's (0.5 rad RMS); 0 = 1 / slices,
  // which keeps the total phase of a multislice object comparable to one slice.
  double slice_phase_fraction = 0;
  // X-ray geometry of the written file (only the sample-plane pixel size matters).
  double energy_ev = 8000, distance_m = 2.0, detector_pixel_m = 75e-6;

  // Electron mode (simulate_stem4d): physical 4D-STEM units. The probe comes
  // from src/electron_optics.h (aperture, defocus, C3; aperture_fraction,
  // defocus_rad and probe_modes > 1 do not apply), `photons` is the mean
  // electron count per pattern, and the scan is a regular raster stored as a
  // step (jitter_px does not apply) unless measured_positions is set.
  double electron_energy_kev = 300;
  double convergence_mrad = 20;
  double defocus_angstrom = 300;
  double c3_mm = 0;
  // Detector calibration. 0.8 mrad per pixel puts the 20 mrad bright-field
  // disc at a radius of 25 pixels in a 64-pixel pattern: the disc fits with a
  // margin of 7 pixels for the scattered beams (and the sample pixel is
  // 1 / (64 Δk) = 0.385 Å at 300 keV).
  double mrad_per_pixel = 0.8;
  double step_angstrom = 0;  // scan step in Å; 0 = step_px sample pixels
  bool store_mrad = false;   // store the calibration in mrad (else Å⁻¹) per pixel
  // Angle from the scan's axes to the detector's (data/stem4d_file.h,
  // /stem4d/scan_rotation_deg): the raster is rotated by it on the sample, and
  // the file records it.
  double scan_rotation_deg = 0;
  // Store the probe positions (raster plus jitter_px) as measured positions
  // (/stem4d/positions_angstrom) instead of a step: jitter then applies.
  bool measured_positions = false;
};

// Runs the forward model on the phantom and returns what write_cxi stores.
CxiContent simulate(const SimulationSettings& settings);

// Electron mode: the same phantom and forward model in physical electron
// units, as stored by write_stem4d (data (scan_y, scan_x, frame, frame)).
Stem4dContent simulate_stem4d(const SimulationSettings& settings);

}  // namespace tessera
