#pragma once
// One definition per setting of a command: its name (the --option and the
// run-file key alike), kind, default, help and check. From the table come the
// cxxopts options, the reading of run files (TOML), the complete record a
// result file stores (the same TOML, so `--config result.h5` reruns a
// reconstruction) and the check of every value, whether it came from the
// command line or from a file. A setting added here has all four at once.
//
// TOML (Debian libtomlplusplus-dev, header-only) rather than JSON: a run file
// is written and kept by people, next to their data; TOML has comments, needs
// no quotes around keys and no braces, and its numbers, booleans and arrays
// are typed like the options.
#include <cxxopts.hpp>
#include <filesystem>
#include <string>
#include <vector>

namespace tessera::cli {

enum class OptionKind {
  flag,     // --name; `name = true` in a file
  whole,    // an integer
  number,   // a real number (finite)
  text,
  path,     // a file name: relative names in a run file are relative to the file's folder
  numbers,  // a comma-separated list; an array in a file
  texts,    // repeatable; an array in a file
};

enum class Bound {
  none,
  positive,         // > 0 when given (leaving it out keeps the automatic default)
  at_least_zero,
  at_least_minus_one,  // -1 means "never"
};

struct OptionSpec {
  std::string name;
  OptionKind kind;
  std::string default_value = {};  // as typed on the command line; empty: none
  std::string help = {};
  std::string short_name = {};  // one letter, or empty
  Bound bound = Bound::none;
  std::vector<std::string> choices = {};  // allowed values of a text (listed in the help); empty: any
  bool recorded = true;  // false: not a setting of the reconstruction (--help, --config, --resume, --overwrite)
  bool positional = false;
  bool wide = false;  // a whole number beyond int's range (the seed); the others are ints inside
};
using OptionTable = std::vector<OptionSpec>;

// The cxxopts options of the table, in group `group`; choices are appended to the help.
void add_options(cxxopts::Options& options, const std::string& group, const OptionTable& table);

// Bounds, finiteness and choices of every value given (command line or run
// file): SettingsError naming the option.
void check_values(const cxxopts::ParseResult& result, const OptionTable& table);

// A run file's settings, read from a TOML file or from the record stored in
// a tessera result (HDF5).
struct RunFile {
  std::string source;          // where it was read from
  std::string text;            // TOML
  std::filesystem::path base;  // folder that relative paths in it are relative to
};
RunFile read_run_file(const std::string& path);

// The file's settings as command-line arguments ("--name", "value", ...),
// less those the command line sets itself (it overrides the file). Unknown
// keys and values of the wrong type are SettingsErrors naming the file and key.
std::vector<std::string> arguments_from(const RunFile& file, const OptionTable& table,
                                        const cxxopts::ParseResult& command_line);

// Every recorded setting of a parsed command line, defaults included, as a
// TOML run file; settings without a value are listed as comments. Paths are
// made absolute so the record can be rerun from anywhere.
std::string record_settings(const cxxopts::ParseResult& result, const OptionTable& table);

// "name: before -> now" for each recorded setting whose value differs
// between two records (a key missing from one shows as "(not set)").
std::vector<std::string> setting_differences(const std::string& before, const std::string& now,
                                             const OptionTable& table);

}  // namespace tessera::cli
