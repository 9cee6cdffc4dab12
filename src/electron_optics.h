#pragma once
// Electron optics for 4D-STEM ptychography: the relativistic wavelength, the
// reciprocal-space calibration of a pixelated detector, and the probe that a
// convergent, aberrated beam forms on the sample.
//
// Units follow electron-microscopy practice: keV, Å, Å⁻¹, mrad, mm (for C3).
// Reciprocal calibration: a scattering angle α corresponds to the spatial
// frequency k = α / λ (small angles), so a detector pixel spanning α_px mrad
// spans Δk = α_px / λ Å⁻¹, and N such pixels give a sample-plane pixel of
// 1 / (N Δk) Å (the far-field sampling relation, with no camera length).
//
// Sign convention of the aberration phase:
//   χ(k) = π λ Δf k² + (π/2) C3 λ³ k⁴,   probe(r) = F⁻¹[ A(k) exp(−i χ(k)) ],
// A the aperture of semi-angle α (k ≤ α/λ). With tessera's propagator
// (models/propagation.h: exp(−i π λ dz k²) for a distance dz downstream),
// Δf > 0 is the focused probe propagated Δf downstream: the crossover lies Δf
// before the sample. Kirkland's convention (χ = π λ k² (C3 λ² k²/2 − Δf)) has
// the opposite defocus sign: Δf here = −Δf there; Scherzer-like balancing of a
// positive C3 therefore needs a negative Δf here. For reconstruction the sign
// only has to agree with the data's; simulation and initial probe both use
// this one builder.
//
// Arrays follow models/propagation.h: reciprocal space in FFT order (zero
// frequency at [0, 0]) internally, and the real-space probe centred in its
// window (at [h/2, w/2]), as simulations store and the forward model uses it.
#include <cstdint>
#include <string>

#include <torch/torch.h>

namespace tessera::electron {

// Exact SI constants (CODATA 2018).
inline constexpr double kElectronMassKg = 9.1093837015e-31;
inline constexpr double kElementaryChargeC = 1.602176634e-19;
inline constexpr double kPlanckJs = 6.62607015e-34;
inline constexpr double kSpeedOfLightMs = 299792458.0;

// Relativistic de Broglie wavelength (Å) of electrons accelerated through
// energy_kev kilovolts: λ = h / sqrt(2 m0 e V (1 + e V / (2 m0 c²))).
// 300 keV gives 0.019687 Å. Throws SettingsError unless energy_kev > 0.
double wavelength_angstrom(double energy_kev);
// Its inverse: the kinetic energy (keV) of electrons of wavelength_a Å,
// E = sqrt((h c / λ)² + (m0 c²)²) − m0 c². Throws SettingsError unless wavelength_a > 0.
double energy_kev_from_wavelength(double wavelength_a);

// Detector calibration: angle per pixel (mrad) <-> spatial frequency per pixel (Å⁻¹).
double mrad_to_inverse_angstrom(double mrad, double wavelength_a);
double inverse_angstrom_to_mrad(double inverse_angstrom, double wavelength_a);

// Sample-plane pixel (Å) of N detector pixels of Δk Å⁻¹ each: 1 / (N Δk).
double sample_pixel_angstrom(int64_t pixels, double dk_inverse_angstrom);

// Ranges that every electron microscope lies well within: a value outside is
// a wrong unit or a typing error (1e30 Å of defocus, 20 for 20 mrad given in
// rad), which would otherwise pass as "no problems found". Each returns an
// empty string for a plausible value, else a sentence on what is wrong; the
// file readers and the command line both call them.
inline constexpr double kMinEnergyKev = 1, kMaxEnergyKev = 5000;  // keV
inline constexpr double kMaxConvergenceMrad = 300;               // mrad (semi-angle)
inline constexpr double kMaxDefocusAngstrom = 1e6;              // |Δf|, Å (100 µm)
inline constexpr double kMaxC3Mm = 1e3;                         // |C3|, mm
std::string beam_energy_problem(double energy_kev);
std::string convergence_problem(double convergence_mrad);
std::string defocus_problem(double defocus_angstrom);
std::string c3_problem(double c3_mm);

// What shapes the probe: beam energy, probe-forming aperture and aberrations.
struct ProbeOptics {
  double energy_kev = 300;
  double convergence_mrad = 20;  // semi-angle α of the probe-forming aperture
  double defocus_angstrom = 0;   // Δf (sign convention above)
  double c3_mm = 0;              // third-order spherical aberration C3 (= Cs)
};

// Radius of the bright-field disc (the aperture) in detector pixels along y
// and x: α / (λ Δk).
double aperture_radius_pixels(const ProbeOptics& optics, double dk_inverse_angstrom);

// χ(k) in radians on an (h, w) grid of Δk_y × Δk_x Å⁻¹ per pixel, FFT order, float64.
torch::Tensor aberration_phase(const ProbeOptics& optics, int64_t h, int64_t w, double dk_y, double dk_x);

// The probe (h, w) complex64 in real space, centred in its window, scaled so
// that sum |P|² = counts (the mean counts per pattern, by Parseval: the
// far-field intensity of the orthonormal FFT carries the same sum).
// Throws SettingsError when the optics or calibration are not positive and
// finite, or when the aperture spans less than one pixel.
torch::Tensor aberration_probe(const ProbeOptics& optics, int64_t h, int64_t w, double dk_y, double dk_x,
                               double counts);

}  // namespace tessera::electron
