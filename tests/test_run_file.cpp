// Run files (issue 17, item 3): one definition per setting gives the option,
// the run-file key and the record a result stores; the command line
// overrides the file; a result reruns its own run bit for bit.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/losses.h"
#include "src/error.h"
#include "tests/error_text.h"
#include "tests/tool_run.h"
#include "train/cli/option_table.h"
#include "train/cli/reconstruct_options.h"
#include "train/optimizers.h"
#include "train/result_file.h"

namespace fs = std::filesystem;
using namespace tessera;
using namespace tessera::cli;

namespace {

fs::path temp_dir() {
  auto d = fs::temp_directory_path() / ("tessera_test_run_file_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
}

// Parses a command line (words after the command) the way `tessera
// reconstruct` does: a run file's settings first, then the command line's.
cxxopts::ParseResult parse(const OptionTable& table, std::vector<std::string> words) {
  auto o = reconstruct_command_options(table);
  words.insert(words.begin(), "reconstruct");
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  return o.parse(static_cast<int>(argv.size()), argv.data());
}

cxxopts::ParseResult parse_with_file(const OptionTable& table, const RunFile& file, const std::vector<std::string>& cli) {
  const auto command_line = parse(table, cli);
  auto words = arguments_from(file, table, command_line);
  words.insert(words.end(), cli.begin(), cli.end());
  return parse(table, words);
}

RunFile text_file(const std::string& text) { return RunFile{"run.toml", text, "/data/here"}; }


}  // namespace

TEST(RunFile, FileSettingsApplyAndTheCommandLineOverridesThem) {
  const auto table = reconstruct_option_table();
  const auto file = text_file(
      "# a run file\n"
      "data = \"scan.cxi\"\n"
      "iterations = 7\n"
      "object_rate = 0.02          # underscores read as dashes\n"
      "prior = [\"tv\"]\n"
      "phase-only = true\n"
      "defocus-candidates = [-4, 4.5]\n"
      "seed = 3\n");
  const auto r = parse_with_file(table, file, {"--iterations", "3", "--no-previews"});
  EXPECT_EQ(r["iterations"].as<int64_t>(), 3);  // the command line wins
  EXPECT_DOUBLE_EQ(r["object-rate"].as<double>(), 0.02);
  EXPECT_EQ(r["seed"].as<int64_t>(), 3);
  EXPECT_TRUE(r["phase-only"].as<bool>());
  EXPECT_TRUE(r["no-previews"].as<bool>());
  EXPECT_EQ(r["prior"].as<std::vector<std::string>>(), std::vector<std::string>{"tv"});
  EXPECT_EQ(r["defocus-candidates"].as<std::vector<double>>(), (std::vector<double>{-4, 4.5}));
  // Relative paths in a run file are relative to its folder.
  EXPECT_EQ(r["data"].as<std::string>(), "/data/here/scan.cxi");
  // A flag set in the file can be turned off on the command line.
  EXPECT_FALSE(parse_with_file(table, file, {"--phase-only=false"})["phase-only"].as<bool>());
  // A list on the command line replaces the file's, it is not appended to it.
  EXPECT_EQ(parse_with_file(table, file, {"--defocus-candidates", "2"})["defocus-candidates"].as<std::vector<double>>(),
            std::vector<double>{2});
}

TEST(RunFile, MistakesInAFileNameTheFileAndTheKey) {
  const auto table = reconstruct_option_table();
  auto from = [&](const std::string& text) {
    return settings_error_of([&] { parse_with_file(table, text_file(text), {}); });
  };
  std::string e = from("iteratoins = 5\n");
  EXPECT_NE(e.find("run.toml"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown setting 'iteratoins'"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'iterations'"), std::string::npos) << e;
  e = from("iterations = \"many\"\n");
  EXPECT_NE(e.find("iterations must be a whole number"), std::string::npos) << e;
  // A mistake stays one when the command line overrides the setting.
  e = settings_error_of([&] { parse_with_file(table, text_file("iterations = \"many\"\n"), {"--iterations", "3"}); });
  EXPECT_NE(e.find("iterations must be a whole number"), std::string::npos) << e;
  e = from("iterations = 2.5\n");
  EXPECT_NE(e.find("iterations must be a whole number"), std::string::npos) << e;
  e = from("phase-only = 1\n");
  EXPECT_NE(e.find("phase-only must be true or false"), std::string::npos) << e;
  e = from("[loading]\nbin = 2\n");
  EXPECT_NE(e.find("flat"), std::string::npos) << e;
  e = from("iterations = 5\nloss = \n");
  EXPECT_NE(e.find("line 2"), std::string::npos) << e;
  e = from("resume = \"r.h5\"\n");  // not a setting of the run: given on the command line
  EXPECT_NE(e.find("unknown setting 'resume'"), std::string::npos) << e;
  // Values are checked as strictly as on the command line.
  e = settings_error_of([&] { check_values(parse_with_file(table, text_file("batch-size = -3\n"), {}), table); });
  EXPECT_NE(e.find("--batch-size must be positive"), std::string::npos) << e;
  e = settings_error_of([&] { check_values(parse_with_file(table, text_file("precision = \"half\"\n"), {}), table); });
  EXPECT_NE(e.find("--precision must be one of float, double"), std::string::npos) << e;
  e = from("object-rate = nan\n");
  EXPECT_NE(e.find("object-rate must be a finite number"), std::string::npos) << e;
  e = settings_error_of([&] { check_values(parse(table, {"--iterations", "4294967296"}), table); });
  EXPECT_NE(e.find("--iterations is 4294967296"), std::string::npos) << e;
}

TEST(RunFile, TheRecordListsEverySettingAndReadsBackToTheSameRun) {
  const auto table = reconstruct_option_table();
  const auto r = parse(table, {"/d/scan.cxi", "--object-rate", "0.30000000000000004", "--prior", "tv", "--prior",
                               "smooth", "--tile-grid", "2x1", "--defocus-candidates", "-1e-7,3"});
  const std::string record = record_settings(r, table);
  for (const auto& spec : table) {
    const bool listed = record.find("\n" + spec.name + " = ") != std::string::npos ||
                        record.find("\n# " + spec.name + " =") != std::string::npos;
    EXPECT_EQ(listed, spec.recorded) << spec.name << " in\n" << record;
  }
  EXPECT_NE(record.find("object-rate = 0.30000000000000004\n"), std::string::npos) << record;
  EXPECT_NE(record.find("prior = ['tv', 'smooth']\n"), std::string::npos) << record;
  EXPECT_NE(record.find("phase-only = false\n"), std::string::npos) << record;
  EXPECT_NE(record.find("# zero-order =\n"), std::string::npos) << record;
  // Read back as a run file: the same settings, so the same record.
  const auto again = parse_with_file(table, RunFile{"record", record, "/elsewhere"}, {});
  EXPECT_EQ(record_settings(again, table), record);
  EXPECT_EQ(again["object-rate"].as<double>(), 0.1 + 0.2);
  EXPECT_TRUE(setting_differences(record, record, table).empty());
  const auto changed = parse_with_file(table, RunFile{"record", record, "/elsewhere"}, {"--iterations", "5"});
  EXPECT_EQ(setting_differences(record, record_settings(changed, table), table),
            std::vector<std::string>{"--iterations 100 -> 5"});
}

TEST(RunFile, HelpListsTheRegisteredOptimisersAndLosses) {
  const auto o = run("reconstruct --help");
  ASSERT_EQ(o.code, 0) << o.text;
  for (const auto& name : optimizer_names()) EXPECT_NE(o.text.find(name), std::string::npos) << name;
  for (const auto& name : loss_names()) EXPECT_NE(o.text.find(name), std::string::npos) << name;
  EXPECT_NE(o.text.find("--config"), std::string::npos);
}

TEST(RunFile, AResultRerunsItsOwnRunBitForBitAndResumeNamesWhatChanged) {
  const auto dir = temp_dir();
  ASSERT_EQ(run("simulate -o " + (dir / "scan.cxi").string() + " --scan 8 --frame 32 --step 4").code, 0);
  write_text(dir / "run.toml",
             "data = \"scan.cxi\"\niterations = 3\nthreads = 1\nseed = 5\nrate-scale = 0.7\nno-previews = true\n");
  const auto first = (dir / "first.h5").string(), second = (dir / "second.h5").string();
  auto o = run("reconstruct --config " + (dir / "run.toml").string() + " -o " + first);
  ASSERT_EQ(o.code, 0) << o.text;
  EXPECT_NE(o.text.find("iter    3/3"), std::string::npos) << o.text;
  const auto stored = read_result(first).run_file;
  EXPECT_NE(stored.find("seed = 5\n"), std::string::npos) << stored;
  EXPECT_NE(stored.find("data = '" + (dir / "scan.cxi").string() + "'\n"), std::string::npos) << stored;

  // From another folder, with the result as the run file.
  o = run("reconstruct --config " + first + " -o " + second);
  ASSERT_EQ(o.code, 0) << o.text;
  const auto a = read_result(first), b = read_result(second);
  EXPECT_TRUE(torch::equal(a.object, b.object));
  EXPECT_TRUE(torch::equal(a.probe, b.probe));
  EXPECT_EQ(a.loss, b.loss);

  // Rerunning into the result it reads would replace it.
  o = run("reconstruct --config " + first);
  EXPECT_EQ(o.code, 1) << o.text;
  EXPECT_NE(o.text.find("--output"), std::string::npos) << o.text;
  EXPECT_EQ(read_result(first).loss, a.loss);

  // Resume with changed settings: each difference is named; one that shapes
  // the stored state is refused.
  o = run("reconstruct --config " + first + " -o " + second + " --resume " + second + " -i 5 --rate-scale 0.5");
  ASSERT_EQ(o.code, 0) << o.text;
  EXPECT_NE(o.text.find("--iterations 3 -> 5"), std::string::npos) << o.text;
  EXPECT_NE(o.text.find("--rate-scale 0.7 -> 0.5"), std::string::npos) << o.text;
  o = run("reconstruct --config " + first + " -o " + second + " --resume " + second + " -i 6 --optimizer sgd");
  EXPECT_EQ(o.code, 1) << o.text;
  EXPECT_NE(o.text.find("--optimizer"), std::string::npos) << o.text;
  fs::remove_all(dir);
}
