#include "src/electron_optics.h"

#include <cmath>
#include <sstream>
#include <string>

#include "src/error.h"

namespace tessera::electron {

namespace {

void require_positive(double v, const char* what, const char* unit) {
  TESSERA_REQUIRE(SettingsError, std::isfinite(v) && v > 0, what, " is ", v, "; it must be a positive number of ", unit);
}

}  // namespace

namespace {
std::string number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}
}  // namespace

std::string beam_energy_problem(double kev) {
  if (!std::isfinite(kev) || kev <= 0) return "the beam energy is " + number(kev) + "; it must be a positive number of keV";
  if (kev < kMinEnergyKev || kev > kMaxEnergyKev)
    return "the beam energy is " + number(kev) + " keV, outside the " + number(kMinEnergyKev) + " to " +
           number(kMaxEnergyKev) + " keV of electron microscopes; is it in the right unit (keV)?";
  return {};
}

std::string convergence_problem(double mrad) {
  if (!std::isfinite(mrad) || mrad <= 0)
    return "the convergence semi-angle is " + number(mrad) + "; it must be a positive number of mrad";
  if (mrad > kMaxConvergenceMrad)
    return "the convergence semi-angle is " + number(mrad) + " mrad, more than " + number(kMaxConvergenceMrad) +
           " mrad (no probe-forming aperture is that wide); is it in the right unit (mrad)?";
  return {};
}

std::string defocus_problem(double angstrom) {
  if (!std::isfinite(angstrom)) return "the defocus is " + number(angstrom) + "; it must be a finite number of Å";
  if (std::fabs(angstrom) > kMaxDefocusAngstrom)
    return "the defocus is " + number(angstrom) + " Å, beyond ±" + number(kMaxDefocusAngstrom) +
           " Å (100 µm); is it in the right unit (Å)?";
  return {};
}

std::string c3_problem(double mm) {
  if (!std::isfinite(mm)) return "the spherical aberration C3 is " + number(mm) + "; it must be a finite number of mm";
  if (std::fabs(mm) > kMaxC3Mm)
    return "the spherical aberration C3 is " + number(mm) + " mm, beyond ±" + number(kMaxC3Mm) +
           " mm; is it in the right unit (mm)?";
  return {};
}

double wavelength_angstrom(double energy_kev) {
  require_positive(energy_kev, "the beam energy", "keV");
  const double eV = kElementaryChargeC * energy_kev * 1e3;  // kinetic energy, J
  const double m0c2 = kElectronMassKg * kSpeedOfLightMs * kSpeedOfLightMs;
  const double p = std::sqrt(2 * kElectronMassKg * eV * (1 + eV / (2 * m0c2)));
  return kPlanckJs / p * 1e10;
}

double energy_kev_from_wavelength(double wavelength_a) {
  require_positive(wavelength_a, "the wavelength", "Å");
  const double pc = kPlanckJs * kSpeedOfLightMs / (wavelength_a * 1e-10);  // momentum × c, J
  const double m0c2 = kElectronMassKg * kSpeedOfLightMs * kSpeedOfLightMs;
  // pc² = E² + 2 E m0c², solved for E without the cancellation of sqrt(pc² + m0c²²) − m0c².
  const double e = pc * pc / (std::sqrt(pc * pc + m0c2 * m0c2) + m0c2);
  return e / kElementaryChargeC * 1e-3;
}

double mrad_to_inverse_angstrom(double mrad, double wavelength_a) {
  require_positive(wavelength_a, "the wavelength", "Å");
  return mrad * 1e-3 / wavelength_a;
}

double inverse_angstrom_to_mrad(double inverse_angstrom, double wavelength_a) {
  require_positive(wavelength_a, "the wavelength", "Å");
  return inverse_angstrom * wavelength_a * 1e3;
}

double sample_pixel_angstrom(int64_t pixels, double dk_inverse_angstrom) {
  TESSERA_REQUIRE(SettingsError, pixels > 0, "a pattern needs at least one pixel, got ", pixels);
  require_positive(dk_inverse_angstrom, "the reciprocal pixel size", "Å⁻¹");
  return 1.0 / (static_cast<double>(pixels) * dk_inverse_angstrom);
}

double aperture_radius_pixels(const ProbeOptics& optics, double dk_inverse_angstrom) {
  require_positive(optics.convergence_mrad, "the convergence semi-angle", "mrad");
  require_positive(dk_inverse_angstrom, "the reciprocal pixel size", "Å⁻¹");
  return optics.convergence_mrad * 1e-3 / wavelength_angstrom(optics.energy_kev) / dk_inverse_angstrom;
}

torch::Tensor aberration_phase(const ProbeOptics& optics, int64_t h, int64_t w, double dk_y, double dk_x) {
  TESSERA_REQUIRE(SettingsError, h > 0 && w > 0, "the probe window must have pixels, got ", h, " x ", w);
  require_positive(dk_y, "the reciprocal pixel size along y", "Å⁻¹");
  require_positive(dk_x, "the reciprocal pixel size along x", "Å⁻¹");
  TESSERA_REQUIRE(SettingsError, std::isfinite(optics.defocus_angstrom), "the defocus is ", optics.defocus_angstrom,
                  "; it must be a finite number of Å");
  TESSERA_REQUIRE(SettingsError, std::isfinite(optics.c3_mm), "C3 is ", optics.c3_mm, "; it must be a finite number of mm");
  const double lambda = wavelength_angstrom(optics.energy_kev);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  // fftfreq(n, d) is in cycles per unit of d: with d = 1/(n dk) it gives k in Å⁻¹.
  auto ky = torch::fft::fftfreq(h, 1.0 / (static_cast<double>(h) * dk_y), opts).view({h, 1});
  auto kx = torch::fft::fftfreq(w, 1.0 / (static_cast<double>(w) * dk_x), opts).view({1, w});
  auto k2 = ky * ky + kx * kx;
  const double c3_a = optics.c3_mm * 1e7;
  return k2 * (M_PI * lambda * optics.defocus_angstrom) + k2 * k2 * (0.5 * M_PI * c3_a * lambda * lambda * lambda);
}

torch::Tensor aberration_probe(const ProbeOptics& optics, int64_t h, int64_t w, double dk_y, double dk_x,
                               double counts) {
  require_positive(counts, "the probe's counts per pattern", "counts");
  const double lambda = wavelength_angstrom(optics.energy_kev);
  const double r_y = aperture_radius_pixels(optics, dk_y), r_x = aperture_radius_pixels(optics, dk_x);
  TESSERA_REQUIRE(SettingsError, r_y >= 1 && r_x >= 1, "the probe aperture (", optics.convergence_mrad,
                  " mrad) spans ", std::min(r_y, r_x), " detector pixels in radius; at least 1 is needed: is the "
                  "reciprocal calibration (", dk_y, " x ", dk_x, " Å⁻¹ per pixel) right?");
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto ky = torch::fft::fftfreq(h, 1.0 / (static_cast<double>(h) * dk_y), opts).view({h, 1});
  auto kx = torch::fft::fftfreq(w, 1.0 / (static_cast<double>(w) * dk_x), opts).view({1, w});
  const double k_max = optics.convergence_mrad * 1e-3 / lambda;
  auto aperture = ((ky * ky + kx * kx) <= k_max * k_max).to(torch::kFloat64);
  auto pupil = torch::polar(aperture, -aberration_phase(optics, h, w, dk_y, dk_x));
  auto probe = torch::fft::fftshift(torch::fft::ifft2(pupil, c10::nullopt, {-2, -1}, "ortho"), {-2, -1});
  const double power = torch::view_as_real(probe).pow(2).sum().item<double>();
  return (probe * std::sqrt(counts / power)).to(torch::kComplexFloat);
}

}  // namespace tessera::electron
