#pragma once
// Command-line options that say how a data file is loaded (crop, bin, probe
// optics of 4D-STEM data), shared by `tessera reconstruct` and `tessera plan`.
#include <string>
#include <utility>

#include <cxxopts.hpp>

#include "train/cli/option_table.h"
#include "train/scan_problem.h"

namespace tessera::cli {

// --crop, --bin, --convergence-mrad, --defocus-angstrom, --c3-mm, --energy-kev, --zero-order.
OptionTable load_option_table();
void add_load_options(cxxopts::Options& options);
// "Y,X" as two finite numbers; SettingsError naming --option otherwise.
std::pair<double, double> parse_yx(const std::string& text, const std::string& option, const std::string& example);
// Reads them back; throws SettingsError for values that make no sense.
LoadOptions parse_load_options(const cxxopts::ParseResult& result);

}  // namespace tessera::cli
