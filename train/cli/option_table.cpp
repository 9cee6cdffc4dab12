#include "train/cli/option_table.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <fstream>
#include <sstream>

#include <toml++/toml.h>

#include "src/error.h"
#include "train/result_file.h"

namespace tessera::cli {

namespace fs = std::filesystem;

namespace {

std::string join(const std::vector<std::string>& words, const std::string& separator) {
  std::string s;
  for (const auto& w : words) s += (s.empty() ? "" : separator) + w;
  return s;
}

std::shared_ptr<cxxopts::Value> value_of(const OptionSpec& spec) {
  std::shared_ptr<cxxopts::Value> v;
  switch (spec.kind) {
    case OptionKind::flag: v = cxxopts::value<bool>()->default_value("false")->implicit_value("true"); break;
    case OptionKind::whole: v = cxxopts::value<int64_t>(); break;
    case OptionKind::number: v = cxxopts::value<double>(); break;
    case OptionKind::text:
    case OptionKind::path: v = cxxopts::value<std::string>(); break;
    case OptionKind::numbers: v = cxxopts::value<std::vector<double>>(); break;
    case OptionKind::texts: v = cxxopts::value<std::vector<std::string>>(); break;
  }
  if (!spec.default_value.empty()) v->default_value(spec.default_value);
  return v;
}

const OptionSpec* find_spec(const OptionTable& table, const std::string& name) {
  for (const auto& spec : table)
    if (spec.name == name) return &spec;
  return nullptr;
}

// Levenshtein distance, for "did you mean" in front of a misspelt key.
size_t distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string nearest_key(const OptionTable& table, const std::string& key) {
  const OptionSpec* best = nullptr;
  size_t best_distance = 4;  // beyond three edits it is another word
  for (const auto& spec : table) {
    if (!spec.recorded) continue;
    const size_t d = distance(key, spec.name);
    if (d < best_distance) best = &spec, best_distance = d;
  }
  return best ? "; did you mean '" + best->name + "'?" : "";
}

const char* kind_words(OptionKind kind) {
  switch (kind) {
    case OptionKind::flag: return "true or false";
    case OptionKind::whole: return "a whole number";
    case OptionKind::number: return "a finite number";
    case OptionKind::text: return "a text in quotes";
    case OptionKind::path: return "a file name in quotes";
    case OptionKind::numbers: return "a finite number or an array of them";
    case OptionKind::texts: return "a text or an array of texts";
  }
  return "";
}

std::string number_text(double v) {
  char buf[64];
  return std::string(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
}

// A TOML value's text as the command line takes it; nullopt when its type is wrong.
std::optional<std::string> scalar_text(const toml::node& node, OptionKind kind, const fs::path& base) {
  switch (kind) {
    case OptionKind::flag:
      if (auto b = node.value_exact<bool>()) return *b ? "true" : "false";
      return std::nullopt;
    case OptionKind::whole:
      if (auto i = node.value_exact<int64_t>()) return std::to_string(*i);
      return std::nullopt;
    case OptionKind::number:
    case OptionKind::numbers:
      if (node.is_integer()) return std::to_string(*node.value_exact<int64_t>());
      // cxxopts reads no nan or inf, and no setting takes one.
      if (auto d = node.value_exact<double>(); d && std::isfinite(*d)) return number_text(*d);
      return std::nullopt;
    case OptionKind::text:
    case OptionKind::texts:
      if (auto s = node.value_exact<std::string>()) return *s;
      return std::nullopt;
    case OptionKind::path:
      if (auto s = node.value_exact<std::string>()) {
        if (s->empty()) return *s;
        const fs::path p(*s);
        return (p.is_absolute() ? p : base / p).lexically_normal().string();
      }
      return std::nullopt;
  }
  return std::nullopt;
}

toml::table parse_toml(const std::string& text, const std::string& source) {
  try {
    return toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    throw SettingsError(source + ", line " + std::to_string(at.line) + ", column " + std::to_string(at.column) +
                        ": " + std::string(e.description()) + " (a run file is TOML: name = value lines)");
  }
}

// A text as a TOML string (quoted, escaped).
std::string toml_text(const std::string& v) {
  std::ostringstream s;
  s << toml::value<std::string>(v);
  return s.str();
}

// A number as a TOML float that reads back to the same double (a rerun from
// the record must be bit for bit the same run).
std::string toml_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  std::string t(buf, end);
  if (t.find_first_of(".en") == std::string::npos) t += ".0";
  return t;
}

}  // namespace

void add_options(cxxopts::Options& options, const std::string& group, const OptionTable& table) {
  auto adder = options.add_options(group);
  for (const auto& spec : table) {
    std::string help = spec.help;
    if (!spec.choices.empty()) help += " (" + join(spec.choices, ", ") + ")";
    adder(spec.short_name.empty() ? spec.name : spec.short_name + "," + spec.name, help, value_of(spec));
  }
}

void check_values(const cxxopts::ParseResult& r, const OptionTable& table) {
  for (const auto& spec : table) {
    if (!r.count(spec.name)) continue;
    const std::string option = "--" + spec.name;
    auto check_bound = [&](double v, const std::string& shown) {
      switch (spec.bound) {
        case Bound::none: break;
        case Bound::positive:
          TESSERA_REQUIRE(SettingsError, v > 0, option, " must be positive, got ", shown,
                          spec.default_value == "0" ? " (leave it out for the automatic value)" : "");
          break;
        case Bound::at_least_zero:
          TESSERA_REQUIRE(SettingsError, v >= 0, option, " must be >= 0, got ", shown);
          break;
        case Bound::at_least_minus_one:
          TESSERA_REQUIRE(SettingsError, v >= -1, option, " must be >= -1 (-1: never), got ", shown);
          break;
      }
    };
    auto check_choice = [&](const std::string& v) {
      TESSERA_REQUIRE(SettingsError,
                      spec.choices.empty() || std::find(spec.choices.begin(), spec.choices.end(), v) != spec.choices.end(),
                      option, " must be one of ", join(spec.choices, ", "), "; got '", v, "'");
    };
    switch (spec.kind) {
      case OptionKind::flag:
      case OptionKind::path: break;
      case OptionKind::whole: {
        const int64_t v = r[spec.name].as<int64_t>();
        // Every whole-number setting is an int or smaller inside: a larger
        // value is a typo, not a wish, and must not wrap around.
        TESSERA_REQUIRE(SettingsError, spec.wide || (v >= INT_MIN && v <= INT_MAX), option, " is ", v,
                        ", beyond the largest value it takes (", INT_MAX, ")");
        check_bound(static_cast<double>(v), std::to_string(v));
        break;
      }
      case OptionKind::number: {
        const double v = r[spec.name].as<double>();
        TESSERA_REQUIRE(SettingsError, std::isfinite(v), option, " must be a finite number, got ", v);
        check_bound(v, number_text(v));
        break;
      }
      case OptionKind::numbers:
        for (double v : r[spec.name].as<std::vector<double>>())
          TESSERA_REQUIRE(SettingsError, std::isfinite(v), option, " must hold finite numbers, got ", v);
        break;
      case OptionKind::text: check_choice(r[spec.name].as<std::string>()); break;
      case OptionKind::texts:
        for (const auto& v : r[spec.name].as<std::vector<std::string>>()) check_choice(v);
        break;
    }
  }
}

RunFile read_run_file(const std::string& path) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  TESSERA_REQUIRE(SettingsError, !ec && fs::exists(status), "--config ", path, ": no such file");
  TESSERA_REQUIRE(SettingsError, fs::is_regular_file(status), "--config ", path, ": not a regular file");
  RunFile f;
  f.source = path;
  f.base = fs::absolute(path).parent_path();
  if (is_tessera_result(path)) {
    f.text = read_stored_run_file(path);
    TESSERA_REQUIRE(SettingsError, !f.text.empty(), "--config ", path,
                    ": this result holds no run-file record (/reconstruction/run_file); it was written before "
                    "tessera stored one. Its settings are listed in /reconstruction/settings");
    return f;
  }
  // A run file is a page of text; anything much larger is not one.
  TESSERA_REQUIRE(SettingsError, fs::file_size(path) <= (1 << 20), "--config ", path,
                  ": larger than 1 MiB, so not a run file (a TOML file of name = value lines, or a tessera result)");
  std::ifstream in(path, std::ios::binary);
  TESSERA_REQUIRE(SettingsError, in.good(), "--config ", path, ": cannot be read");
  std::ostringstream s;
  s << in.rdbuf();
  f.text = s.str();
  TESSERA_REQUIRE(SettingsError, f.text.find('\0') == std::string::npos, "--config ", path,
                  ": a binary file, not a run file (a TOML file of name = value lines, or a tessera result)");
  return f;
}

std::vector<std::string> arguments_from(const RunFile& file, const OptionTable& table,
                                        const cxxopts::ParseResult& command_line) {
  const toml::table doc = parse_toml(file.text, file.source);
  std::vector<std::string> args;
  for (const auto& [raw_key, node] : doc) {
    std::string key(raw_key.str());
    std::replace(key.begin(), key.end(), '_', '-');  // object_rate and object-rate alike
    TESSERA_REQUIRE(SettingsError, !node.is_table(), file.source, ": [", raw_key.str(),
                    "] is a table; a run file is flat: name = value lines");
    const OptionSpec* spec = find_spec(table, key);
    TESSERA_REQUIRE(SettingsError, spec && spec->recorded, file.source, ": unknown setting '", raw_key.str(), "'",
                    nearest_key(table, key), " (the settings are the options of tessera reconstruct --help)");
    auto wrong = [&] {
      return SettingsError(file.source + ": " + std::string(raw_key.str()) + " must be " + kind_words(spec->kind));
    };
    const bool list = spec->kind == OptionKind::numbers || spec->kind == OptionKind::texts;
    std::vector<std::string> values;
    if (list && node.is_array()) {
      for (const auto& element : *node.as_array()) {
        const auto v = scalar_text(element, spec->kind, file.base);
        if (!v) throw wrong();
        values.push_back(*v);
      }
    } else {
      const auto v = scalar_text(node, spec->kind, file.base);
      if (!v) throw wrong();
      values.push_back(*v);
    }
    // Checked above even when overridden: a mistake in the file is still one.
    if (command_line.count(spec->name)) continue;  // the command line overrides the file
    const std::string option = "--" + spec->name;
    if (spec->kind == OptionKind::flag) {
      args.push_back(option + "=" + values.front());
    } else if (spec->kind == OptionKind::numbers) {
      if (!values.empty()) args.push_back(option + "=" + join(values, ","));
    } else {
      for (const auto& v : values) args.push_back(option + "=" + v);
    }
  }
  return args;
}

std::string record_settings(const cxxopts::ParseResult& r, const OptionTable& table) {
  std::ostringstream s;
  s << "# tessera reconstruct: every setting of this run. `tessera reconstruct --config FILE` runs it again;\n"
       "# options on the command line override it. Lines starting with # are settings left at their automatic\n"
       "# value.\n";
  for (const auto& spec : table) {
    if (!spec.recorded) continue;
    // A default of 0 that means "derive it" is no value the option takes
    // when given (Bound::positive): the record leaves it automatic too.
    const bool automatic = spec.bound == Bound::positive && spec.default_value == "0";
    if (!r.count(spec.name) && (automatic || (spec.default_value.empty() && spec.kind != OptionKind::flag))) {
      s << "# " << spec.name << " =" << (automatic ? "   (automatic)" : "") << "\n";
      continue;
    }
    const auto& v = r[spec.name];
    s << spec.name << " = ";
    switch (spec.kind) {
      case OptionKind::flag: s << (v.as<bool>() ? "true" : "false"); break;
      case OptionKind::whole: s << v.as<int64_t>(); break;
      case OptionKind::number: s << toml_number(v.as<double>()); break;
      case OptionKind::text: s << toml_text(v.as<std::string>()); break;
      case OptionKind::path: {
        const auto p = v.as<std::string>();
        s << toml_text(p.empty() ? p : fs::absolute(p).lexically_normal().string());
        break;
      }
      case OptionKind::numbers: {
        std::vector<std::string> items;
        for (double x : v.as<std::vector<double>>()) items.push_back(toml_number(x));
        s << "[" << join(items, ", ") << "]";
        break;
      }
      case OptionKind::texts: {
        std::vector<std::string> items;
        for (const auto& x : v.as<std::vector<std::string>>()) items.push_back(toml_text(x));
        s << "[" << join(items, ", ") << "]";
        break;
      }
    }
    s << "\n";
  }
  return s.str();
}

std::vector<std::string> setting_differences(const std::string& before, const std::string& now,
                                             const OptionTable& table) {
  const toml::table a = parse_toml(before, "the stored settings"), b = parse_toml(now, "this run's settings");
  auto shown = [](const toml::node* n) -> std::string {
    if (!n) return "(not set)";
    std::ostringstream s;
    if (auto str = n->value_exact<std::string>())
      s << *str;
    else if (auto d = n->value_exact<double>())
      s << toml_number(*d);
    else
      n->visit([&](const auto& x) { s << x; });
    return s.str();
  };
  std::vector<std::string> out;
  for (const auto& spec : table) {
    if (!spec.recorded) continue;
    const std::string x = shown(a.get(spec.name)), y = shown(b.get(spec.name));
    if (x != y) out.push_back("--" + spec.name + " " + x + " -> " + y);
  }
  return out;
}

}  // namespace tessera::cli
