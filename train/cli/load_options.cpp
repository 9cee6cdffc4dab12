#include "train/cli/load_options.h"

#include <cmath>
#include <string>

#include "src/electron_optics.h"
#include "src/error.h"

namespace tessera::cli {

OptionTable load_option_table() {
  using K = OptionKind;
  return {
      {"crop", K::text, "", "centred crop of every pattern to N or HxW detector pixels (the sample pixel grows by size/N)"},
      {"bin", K::whole, "1", "sum BxB detector pixels (sample pixel unchanged, probe window B times smaller)"},
      {"convergence-mrad", K::number, "",
       "electron probe convergence semi-angle (mrad), overriding the file's; any format: the starting probe is "
       "then the aberration probe"},
      {"defocus-angstrom", K::number, "", "electron probe defocus (Å, sign as in src/electron_optics.h), overriding the file's"},
      {"c3-mm", K::number, "", "electron spherical aberration C3 (mm), overriding the file's"},
      {"energy-kev", K::number, "", "CXI files of electron data: beam energy (keV); its wavelength replaces the file's"},
      {"zero-order", K::text, "",
       "where the direct beam meets the detector, Y,X in pixels of the frames as stored (sub-pixel; default: the "
       "file's beam centre, else estimated from the mean pattern's bright region)"},
  };
}

void add_load_options(cxxopts::Options& options) { add_options(options, "loading", load_option_table()); }

std::pair<double, double> parse_yx(const std::string& text, const std::string& option, const std::string& example) {
  const auto comma = text.find(',');
  const std::string message = "--" + option + " must be Y,X in pixels, such as " + example + "; got '" + text + "'";
  double y = 0, x = 0;
  try {
    size_t used_y = 0, used_x = 0;
    TESSERA_REQUIRE(SettingsError, comma != std::string::npos, "");
    y = std::stod(text.substr(0, comma), &used_y);
    x = std::stod(text.substr(comma + 1), &used_x);
    TESSERA_REQUIRE(SettingsError, used_y == comma && used_x == text.size() - comma - 1, "");
  } catch (const std::exception&) {
    throw SettingsError(message);
  }
  TESSERA_REQUIRE(SettingsError, std::isfinite(y) && std::isfinite(x), message);
  return {y, x};
}

LoadOptions parse_load_options(const cxxopts::ParseResult& r) {
  LoadOptions o;
  if (r.count("crop")) {
    const auto text = r["crop"].as<std::string>();
    const auto x = text.find('x');
    try {
      size_t used = 0;
      o.crop_h = std::stoll(text.substr(0, x), &used);
      TESSERA_REQUIRE(SettingsError, used == (x == std::string::npos ? text.size() : x), "");
      o.crop_w = o.crop_h;
      if (x != std::string::npos) {
        o.crop_w = std::stoll(text.substr(x + 1), &used);
        TESSERA_REQUIRE(SettingsError, used == text.size() - x - 1, "");
      }
    } catch (const std::exception&) {
      throw SettingsError("--crop must be a pixel count such as 48, or HxW such as 48x64; got '" + text + "'");
    }
    TESSERA_REQUIRE(SettingsError, o.crop_h > 0 && o.crop_w > 0, "--crop must be positive, got '", text, "'");
  }
  o.bin = r["bin"].as<int64_t>();
  TESSERA_REQUIRE(SettingsError, o.bin >= 1, "--bin must be >= 1, got ", o.bin);
  // The same ranges as the 4D-STEM reader's (src/electron_optics.h).
  auto optics = [&](const char* name, std::optional<double>& into, std::string (*problem)(double)) {
    if (!r.count(name)) return;
    const double v = r[name].as<double>();
    const std::string why = problem(v);
    TESSERA_REQUIRE(SettingsError, why.empty(), "--", name, ": ", why);
    into = v;
  };
  optics("convergence-mrad", o.convergence_mrad, electron::convergence_problem);
  optics("defocus-angstrom", o.defocus_angstrom, electron::defocus_problem);
  optics("c3-mm", o.c3_mm, electron::c3_problem);
  optics("energy-kev", o.energy_kev, electron::beam_energy_problem);
  if (r.count("zero-order")) o.zero_order = parse_yx(r["zero-order"].as<std::string>(), "zero-order", "64.0,66.75");
  return o;
}

}  // namespace tessera::cli
