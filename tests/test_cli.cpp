// The tessera tool as a user runs it: exit codes and messages.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;

namespace {

struct Output {
  int code;
  std::string text;
};

Output run(const std::string& args) {
  const std::string cmd = std::string(TESSERA_BINARY_DIR) + "/train/tessera " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string text;
  std::array<char, 4096> buf{};
  while (p && fgets(buf.data(), buf.size(), p)) text += buf.data();
  const int status = p ? pclose(p) : -1;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text};
}

fs::path temp_dir() {
  auto d = fs::temp_directory_path() / ("tessera_test_cli_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST(Cli, HelpAndUsage) {
  EXPECT_EQ(run("--help").code, 0);
  EXPECT_EQ(run("").code, 1);
  for (auto cmd : {"simulate", "info", "reconstruct", "plan"}) {
    auto o = run(std::string(cmd) + " --help");
    EXPECT_EQ(o.code, 0) << cmd << ": " << o.text;
    EXPECT_NE(o.text.find("tessera " + std::string(cmd)), std::string::npos) << o.text;
  }
  auto o = run("frobnicate");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("unknown command"), std::string::npos);
}

TEST(Cli, SimulateInfoReconstruct) {
  const auto dir = temp_dir();
  const auto data = (dir / "s.cxi").string(), result = (dir / "r.h5").string();
  auto o = run("simulate -o " + data + " --scan 6 --frame 32 --step 4 --photons 1e5");
  ASSERT_EQ(o.code, 0) << o.text;
  o = run("info " + data);
  EXPECT_EQ(o.code, 0) << o.text;
  EXPECT_NE(o.text.find("no problems found"), std::string::npos) << o.text;
  o = run("reconstruct " + data + " -o " + result + " -i 3 --threads 1");
  ASSERT_EQ(o.code, 0) << o.text;
  EXPECT_NE(o.text.find("iter    3/3"), std::string::npos) << o.text;
  for (auto suffix : {".h5", "_metrics.csv", "_object_phase.png", "_object_amplitude.png", "_probe_amplitude.png"})
    EXPECT_TRUE(fs::exists(dir / (std::string("r") + suffix))) << suffix;
  o = run("plan " + data + " --ranks 1,4");
  EXPECT_EQ(o.code, 0) << o.text;
  EXPECT_NE(o.text.find("K = 4 ranks"), std::string::npos) << o.text;
  fs::remove_all(dir);
}

TEST(Cli, BadInputExitsOneWithAMessageNamingTheProblem) {
  const auto dir = temp_dir();
  auto o = run("reconstruct " + (dir / "missing.cxi").string());
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("missing.cxi"), std::string::npos) << o.text;
  {
    std::ofstream f(dir / "text.cxi");
    f << "not hdf5\n";
  }
  o = run("info " + (dir / "text.cxi").string());
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("HDF5"), std::string::npos) << o.text;
  const auto data = (dir / "s.cxi").string();
  ASSERT_EQ(run("simulate -o " + data + " --scan 4 --frame 16 --step 4").code, 0);
  o = run("reconstruct " + data + " -o " + (dir / "r.h5").string() + " --optimizer adamw9");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("unknown optimizer 'adamw9'"), std::string::npos) << o.text;
  o = run("reconstruct " + data + " -o " + (dir / "r.h5").string() + " --loss l7");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("unknown loss 'l7'"), std::string::npos) << o.text;
  o = run("reconstruct " + data + " --iterations many");
  EXPECT_EQ(o.code, 1);
  fs::remove_all(dir);
}

TEST(Cli, ElectronGeometry) {
  const auto dir = temp_dir();
  const auto data = (dir / "e.h5").string();
  auto o = run("simulate --electron -o " + data +
               " --scan 12 --frame 32 --mrad-per-pixel 1.6 --step-angstrom 2 --defocus-angstrom 250 --scan-rotation 30");
  ASSERT_EQ(o.code, 0) << o.text;
  o = run("info " + data);
  EXPECT_EQ(o.code, 0) << o.text;
  EXPECT_NE(o.text.find("scan rotation:     30°"), std::string::npos) << o.text;
  EXPECT_NE(o.text.find("implied scan rotation"), std::string::npos) << o.text;
  EXPECT_NE(o.text.find("agrees"), std::string::npos) << o.text;
  o = run("simulate -o " + (dir / "x.cxi").string() + " --scan 4 --frame 16 --scan-rotation 30");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("--scan-rotation"), std::string::npos) << o.text;
  o = run("reconstruct " + data + " -o " + (dir / "r.h5").string() + " -i 1 --energy-kev 200");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("--energy-kev"), std::string::npos) << o.text;
  fs::remove_all(dir);
}
