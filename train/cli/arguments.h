#pragma once
// Checks of command-line arguments shared by the subcommands: what cxxopts
// accepts silently but a user did not mean.
#include <cxxopts.hpp>
#include <string>
#include <utility>

#include "src/error.h"

namespace tessera::cli {

// A second file name (or any stray word) would otherwise be ignored: the run
// would use the first file while the user meant another.
inline void require_no_extra_arguments(const cxxopts::ParseResult& r, const std::string& command) {
  const auto& extra = r.unmatched();
  if (extra.empty()) return;
  std::string words;
  for (const auto& w : extra) words += (words.empty() ? "'" : ", '") + w + "'";
  throw SettingsError("unexpected argument(s) " + words + ": tessera " + command +
                      " reads at most one data file, and options start with --");
}

// An option that, when given, must be > 0 (its default, 0, means "automatic").
template <typename T>
void require_positive_if_given(const cxxopts::ParseResult& r, const char* name) {
  if (!r.count(name)) return;
  const T v = r[name].as<T>();
  TESSERA_REQUIRE(SettingsError, v > 0, "--", name, " must be positive, got ", v,
                  " (leave it out for the automatic value)");
}

// "RxC" with two positive integers and nothing else; names the option on error.
inline std::pair<int, int> parse_grid(const std::string& text, const char* option) {
  const auto x = text.find('x');
  auto number = [&](const std::string& part) {
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(part, &used);
    } catch (const std::exception&) {
      used = std::string::npos;
    }
    TESSERA_REQUIRE(SettingsError, used == part.size() && !part.empty() && v > 0, "--", option,
                    " must be two positive whole numbers such as 2x3 (rows x columns), got '", text, "'");
    return v;
  };
  TESSERA_REQUIRE(SettingsError, x != std::string::npos, "--", option,
                  " must look like 2x3 (rows x columns), got '", text, "'");
  return {number(text.substr(0, x)), number(text.substr(x + 1))};
}

}  // namespace tessera::cli
