#pragma once
// Checks of command-line arguments shared by the subcommands: what cxxopts
// accepts silently but a user did not mean.
#include <cxxopts.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

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

// cxxopts reports a value it cannot convert ("Argument 'nan' failed to
// parse") without the option it was given to; among several numbers on a
// command line the user then has to guess. Names the option(s) whose value
// holds the quoted text, from the raw arguments; the message unchanged when
// none does.
inline std::string name_the_option(const std::string& message, int argc, char** argv) {
  // cxxopts quotes with U+2018/U+2019 or ASCII quotes, depending on its version.
  static const std::vector<std::pair<std::string, std::string>> quotes{{"\u2018", "\u2019"}, {"'", "'"}};
  std::string value;
  for (const auto& [open, close] : quotes) {
    const auto a = message.find(open);
    if (a == std::string::npos) continue;
    const auto b = message.find(close, a + open.size());
    if (b == std::string::npos) continue;
    value = message.substr(a + open.size(), b - a - open.size());
    break;
  }
  if (value.empty() || message.find("failed to parse") == std::string::npos) return message;
  // Options whose value, or an element of their comma-separated list, is
  // exactly the text; failing that, whose value contains it.
  auto holds = [&](const std::string& given, bool exact) {
    if (!exact) return given.find(value) != std::string::npos;
    std::stringstream list(given);
    std::string item;
    while (std::getline(list, item, ','))
      if (item == value) return true;
    return false;
  };
  auto matching = [&](bool exact) {
    std::string options;
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg.rfind("-", 0) != 0) continue;
      const auto eq = arg.find('=');
      const std::string given = eq != std::string::npos ? arg.substr(eq + 1) : (i + 1 < argc ? argv[i + 1] : "");
      if (holds(given, exact)) options += (options.empty() ? "" : " or ") + arg.substr(0, eq);
    }
    return options;
  };
  std::string options = matching(true);
  if (options.empty()) options = matching(false);
  if (options.empty()) return message;
  return options + ": '" + value + "' cannot be read as this option's value (a number, a whole number or a " +
         "comma-separated list: see --help)";
}

}  // namespace tessera::cli
