// The tessera tool as a user runs it: exit codes and messages.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <torch/torch.h>

#include "tests/tool_run.h"
#include "data/cxi_writer.h"
#include "src/io/hdf5.h"

namespace fs = std::filesystem;

namespace {


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
  // The result names what computed it, as --version does.
  o = run("--version");
  EXPECT_EQ(o.code, 0) << o.text;
  const auto fft_at = o.text.find("CPU FFT: ");
  ASSERT_NE(fft_at, std::string::npos) << o.text;
  EXPECT_NE(o.text.find("LibTorch "), std::string::npos) << o.text;
  const auto fft = o.text.substr(fft_at + 9, o.text.find('\n', fft_at) - fft_at - 9);
  auto f = tessera::h5::File::open(result);
  EXPECT_EQ(f.read_string_attribute("cpu_fft"), fft);
  EXPECT_FALSE(f.read_string_attribute("libtorch").empty());
  fs::remove_all(dir);
}

TEST(Cli, PlanTimeModel) {
  auto o = run("plan --scan-y 12 --scan-x 12 --frame 32 --ranks 1,4 --show 0 --throughput 500 --network loopback-gloo");
  EXPECT_EQ(o.code, 0) << o.text;
  EXPECT_NE(o.text.find("time model (loopback-gloo"), std::string::npos) << o.text;
  EXPECT_NE(o.text.find("halo reduction"), std::string::npos) << o.text;
  o = run("plan --ranks 4 --throughput 500 --latency-us 2 --bandwidth-gbps 100 --allreduce tree");
  EXPECT_EQ(o.code, 0) << o.text;
  EXPECT_NE(o.text.find("tree allreduce"), std::string::npos) << o.text;
  o = run("plan --ranks 4 --throughput 500");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("needs a network"), std::string::npos) << o.text;
  o = run("plan --ranks 4 --network summit");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("--throughput"), std::string::npos) << o.text;
  o = run("plan --ranks 4 --throughput 500 --network ethernet");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("unknown --network 'ethernet'"), std::string::npos) << o.text;
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

// ---- hostile input (issue 14): each test fails on the code before its fix.

namespace {

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A small CXI file: frames of ones (n x n positions of a raster whose corners
// in metres are `corner_px` pixels apart, 16 x 16 frames).
void write_small_cxi(const std::string& path, int64_t n, double step_px, double offset_px = 0, float value = 1.0f,
                     int64_t frame = 16) {
  tessera::CxiContent c;
  c.geometry.wavelength_m = 1e-10;
  c.geometry.distance_m = 1;
  c.geometry.detector_pixel_y_m = c.geometry.detector_pixel_x_m = 1e-4;
  const double pixel = 1e-10 * 1 / (static_cast<double>(frame) * 1e-4);
  c.frames = torch::full({n * n, frame, frame}, value, torch::kFloat32);
  c.translation_m = torch::zeros({n * n, 3}, torch::kFloat64);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      c.translation_m[i * n + j][0] = (static_cast<double>(j) * step_px + offset_px) * pixel;
      c.translation_m[i * n + j][1] = (static_cast<double>(i) * step_px + offset_px) * pixel;
    }
  tessera::write_cxi(path, c);
}

}  // namespace

TEST(Cli, ReconstructNeverReplacesItsInputOrAForeignFile) {
  const auto dir = temp_dir() / "input";
  fs::create_directories(dir);
  const auto data = (dir / "data.cxi").string();
  ASSERT_EQ(run("simulate -o " + data + " --scan 4 --frame 16 --step 4").code, 0);
  const std::string before = file_bytes(data);
  fs::create_symlink(data, dir / "link.h5");
  fs::create_hard_link(data, dir / "hard.h5");
  for (const std::string& out : {data, (dir / "." / "data.cxi").string(), (dir / "link.h5").string(),
                                (dir / "hard.h5").string()}) {
    auto o = run("reconstruct " + data + " -o " + out + " -i 1 --threads 1 --no-previews");
    EXPECT_EQ(o.code, 1) << out << ": " << o.text;
    EXPECT_NE(o.text.find("is the input file"), std::string::npos) << o.text;
    EXPECT_EQ(file_bytes(data), before) << "the data file was changed by -o " << out;
  }
  // A file that is not a tessera result is kept, unless --overwrite.
  const auto notes = dir / "notes.h5";
  { std::ofstream(notes) << "my notes\n"; }
  auto o = run("reconstruct " + data + " -o " + notes.string() + " -i 1 --threads 1 --no-previews");
  EXPECT_EQ(o.code, 1) << o.text;
  EXPECT_NE(o.text.find("not a tessera result"), std::string::npos) << o.text;
  EXPECT_EQ(file_bytes(notes), "my notes\n");
  o = run("reconstruct " + data + " -o " + notes.string() + " -i 1 --threads 1 --no-previews --overwrite");
  EXPECT_EQ(o.code, 0) << o.text;
  // A tessera result is replaced as before (a rerun).
  o = run("reconstruct " + data + " -o " + notes.string() + " -i 1 --threads 1 --no-previews");
  EXPECT_EQ(o.code, 0) << o.text;
  fs::remove_all(dir);
}

TEST(Cli, AnUnwritableOutputFailsBeforeTheFirstIteration) {
  const auto dir = temp_dir() / "unwritable";
  fs::create_directories(dir);
  const auto data = (dir / "data.cxi").string();
  ASSERT_EQ(run("simulate -o " + data + " --scan 4 --frame 16 --step 4").code, 0);
  auto o = run("reconstruct " + data + " -o " + (dir / "no" / "such" / "r.h5").string() + " -i 100000 --threads 1");
  EXPECT_EQ(o.code, 1) << o.text;
  EXPECT_NE(o.text.find("does not exist"), std::string::npos) << o.text;
  EXPECT_EQ(o.text.find("iter "), std::string::npos) << "iterations ran before the output was checked: " << o.text;
  o = run("reconstruct " + data + " -o " + dir.string() + " -i 100000 --threads 1");
  EXPECT_EQ(o.code, 1) << o.text;
  EXPECT_NE(o.text.find("is a directory"), std::string::npos) << o.text;
  fs::remove_all(dir);
}

TEST(Cli, ResumeChecksEveryStoredSettingAndMayRetile) {
  const auto dir = temp_dir() / "resume";
  fs::create_directories(dir);
  const auto data = (dir / "data.cxi").string(), first = (dir / "first.h5").string();
  ASSERT_EQ(run("simulate -o " + data + " --scan 6 --frame 16 --step 4").code, 0);
  const std::string common = " -i 4 --threads 1 --no-previews --no-defocus-search --resume " + first;
  ASSERT_EQ(run("reconstruct " + data + " -o " + first + " -i 2 --threads 1 --no-previews").code, 0);
  const std::pair<std::string, std::string> refused[] = {
      {"--slices 2 --slice-thickness 1e-6", "--slices"}, {"--modes 2", "--modes"},
      {"--precision double", "--precision"},             {"--optimizer sgd", "--optimizer"}};
  for (const auto& [options, named] : refused) {
    auto o = run("reconstruct " + data + " -o " + (dir / "r.h5").string() + common + " " + options);
    EXPECT_EQ(o.code, 1) << options << ": " << o.text;
    EXPECT_NE(o.text.find(named), std::string::npos) << options << ": " << o.text;
  }
  // Another tiling: the object is global, the optimiser state starts afresh (with a warning).
  for (const char* options : {"--tiles 2", "--tile-grid 2x2", "--tile-grid 4x1"}) {
    auto o = run("reconstruct " + data + " -o " + (dir / "r.h5").string() + common + " " + options);
    EXPECT_EQ(o.code, 0) << options << ": " << o.text;
    EXPECT_NE(o.text.find("start afresh"), std::string::npos) << options << ": " << o.text;
    EXPECT_NE(o.text.find("iter    4/4"), std::string::npos) << o.text;
  }
  // ... and back from 4 tiles to 1.
  const auto four = (dir / "four.h5").string();
  ASSERT_EQ(run("reconstruct " + data + " -o " + four + " -i 2 --threads 1 --no-previews --tiles 4").code, 0);
  auto o = run("reconstruct " + data + " -o " + (dir / "r.h5").string() +
               " -i 3 --threads 1 --no-previews --tiles 1 --resume " + four);
  EXPECT_EQ(o.code, 0) << o.text;
  fs::remove_all(dir);
}

TEST(Cli, ResumeRefusesAnotherDataSetAndADamagedIterationCount) {
  const auto dir = temp_dir() / "resume_data";
  fs::create_directories(dir);
  const auto data = (dir / "data.cxi").string(), other = (dir / "other.cxi").string();
  const auto first = (dir / "first.h5").string();
  ASSERT_EQ(run("simulate -o " + data + " --scan 5 --frame 16 --step 4 --seed 1").code, 0);
  ASSERT_EQ(run("simulate -o " + other + " --scan 5 --frame 16 --step 4 --seed 2").code, 0);
  ASSERT_EQ(run("reconstruct " + data + " -o " + first + " -i 2 --threads 1 --no-previews").code, 0);
  auto o = run("reconstruct " + other + " -o " + (dir / "r.h5").string() + " -i 3 --threads 1 --resume " + first);
  EXPECT_EQ(o.code, 1) << o.text;
  EXPECT_NE(o.text.find("another data set"), std::string::npos) << o.text;
  for (double bad : {std::nan(""), -3.0, 1e12}) {
    const auto damaged = (dir / "damaged.h5").string();
    fs::copy_file(first, damaged, fs::copy_options::overwrite_existing);
    {
      auto f = tessera::h5::File::open(damaged, tessera::h5::File::Mode::read_write);
      f.remove("/reconstruction/iteration");
      f.group("/reconstruction").write_scalar("iteration", bad);
    }
    const auto started = std::chrono::steady_clock::now();
    o = run("reconstruct " + data + " -o " + (dir / "r.h5").string() + " -i 3 --threads 1 --resume " + damaged);
    EXPECT_EQ(o.code, 1) << bad << ": " << o.text;
    EXPECT_NE(o.text.find("/reconstruction/iteration"), std::string::npos) << o.text;
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(60));
  }
  fs::remove_all(dir);
}

TEST(Cli, PositionsJustBelowWholePixelsWorkWithTiles) {
  // Corners 1e-9 px below whole pixels: floor() of the double positions and
  // of their float32 values differ, and the windows used to leave their tile.
  const auto dir = temp_dir() / "raster";
  fs::create_directories(dir);
  const auto data = (dir / "raster.cxi").string();
  write_small_cxi(data, 6, 3.0, -1e-9);
  for (const char* tiles : {"--tiles 2", "--tile-grid 2x2"}) {
    auto o = run("reconstruct " + data + " -o " + (dir / "r.h5").string() + " -i 1 --threads 1 --no-previews " +
                 tiles);
    EXPECT_EQ(o.code, 0) << tiles << ": " << o.text;
  }
  fs::remove_all(dir);
}

TEST(Cli, AbsurdInputIsRefusedNamingIt) {
  const auto dir = temp_dir() / "absurd";
  fs::create_directories(dir);
  const auto data = (dir / "data.cxi").string(), out = (dir / "r.h5").string();
  ASSERT_EQ(run("simulate -o " + data + " --scan 4 --frame 16 --step 4").code, 0);
  const std::string base = "reconstruct " + data + " -o " + out + " -i 1 --threads 1 --no-previews ";
  const std::pair<std::string, std::string> refused[] = {
      {"--tiles 0", "--tiles"},          {"--tiles -2", "--tiles"},
      {"--batch-size 0", "--batch-size"}, {"--batch-size -5", "--batch-size"},
      {"--threads -1", "--threads"},     {"--probe-rate -1", "--probe-rate"},
      {"--probe-rate 0", "--probe-rate"}, {"--rate-scale -1", "--rate-scale"},
      {"--checkpoint-every -1", "--checkpoint-every"}, {"--tile-grid 2x", "--tile-grid"},
      {"--tile-grid x2", "--tile-grid"}, {"--tile-grid 2x2x", "--tile-grid"},
      {"--iterations -3", "--iterations"},
      {"--slices 1000000 --slice-thickness 1e-9", "GiB"}, {"--modes 100000000", "GiB"},
      {data, "unexpected argument"},
      // cxxopts's own conversion errors, which did not name the option.
      {"--object-rate nan", "--object-rate: 'nan'"}, {"--rate-scale=abc", "--rate-scale: 'abc'"},
      {"--defocus-candidates 4,x", "--defocus-candidates: 'x'"},
      {"--defocus-start sideways", "--defocus-start must be one of focused, parallax, search"},
      {"--defocus-search-iterations -1", "defocus-search-iterations must be >= 0"}};
  for (const auto& [options, named] : refused) {
    auto o = run(base + options);
    EXPECT_EQ(o.code, 1) << options << ": " << o.text;
    EXPECT_NE(o.text.find(named), std::string::npos) << options << ": " << o.text;
    EXPECT_EQ(o.text.find("stoi"), std::string::npos) << o.text;
  }
  auto o = run("info " + data + " " + data);
  EXPECT_EQ(o.code, 1) << o.text;
  EXPECT_NE(o.text.find("unexpected argument"), std::string::npos) << o.text;
  // More threads than cores: clamped with a warning.
  o = run(base + "--threads 10000");
  EXPECT_EQ(o.code, 0) << o.text;
  EXPECT_NE(o.text.find("cores; using"), std::string::npos) << o.text;
  fs::remove_all(dir);
}

TEST(Cli, AbsurdDataIsRefusedByInfoAndReconstructAlike) {
  const auto dir = temp_dir() / "absurd_data";
  fs::create_directories(dir);
  const auto out = (dir / "r.h5").string();
  const std::string opts = " -o " + out + " -i 1 --threads 1 --no-previews";
  // Every pixel at a fill value: refused by both.
  for (float value : {1.8446744e19f, 3e38f}) {
    const auto data = (dir / "huge.cxi").string();
    write_small_cxi(data, 4, 4.0, 0, value);
    auto o = run("info " + data);
    EXPECT_EQ(o.code, 1) << o.text;
    EXPECT_NE(o.text.find("above 1e+15"), std::string::npos) << o.text;
    o = run("reconstruct " + data + opts);
    EXPECT_EQ(o.code, 1) << o.text;
    EXPECT_NE(o.text.find("above 1e+15"), std::string::npos) << o.text;
  }
  // Tiny frames: one rule (at least 8 x 8) for info and reconstruct.
  for (int64_t frame : {1, 3}) {
    const auto data = (dir / "tiny.cxi").string();
    write_small_cxi(data, 3, 1.0, 0, 1.0f, frame);
    auto o = run("info " + data);
    EXPECT_EQ(o.code, 1) << frame << ": " << o.text;
    EXPECT_NE(o.text.find("too small"), std::string::npos) << o.text;
    o = run("reconstruct " + data + opts);
    EXPECT_EQ(o.code, 1) << frame << ": " << o.text;
    EXPECT_NE(o.text.find("too small"), std::string::npos) << o.text;
  }
  // All positions identical: info flags it, reconstruct refuses it.
  {
    const auto data = (dir / "same.cxi").string();
    write_small_cxi(data, 3, 0.0);
    EXPECT_EQ(run("info " + data).code, 1);
    auto o = run("reconstruct " + data + opts);
    EXPECT_EQ(o.code, 1) << o.text;
    EXPECT_NE(o.text.find("identical"), std::string::npos) << o.text;
  }
  // A FIFO is not a data file: refused at once instead of blocking in open().
  {
    const auto fifo = dir / "fifo.cxi";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
    auto o = run("info " + fifo.string());
    EXPECT_EQ(o.code, 1) << o.text;
    EXPECT_NE(o.text.find("not a regular file"), std::string::npos) << o.text;
  }
  fs::remove_all(dir);
}

TEST(Cli, AbsurdElectronOpticsAreRefused) {
  const auto dir = temp_dir() / "optics";
  fs::create_directories(dir);
  const auto data = (dir / "stem.h5").string(), out = (dir / "r.h5").string();
  ASSERT_EQ(run("simulate --electron -o " + data + " --scan 4 --frame 16 --step 4").code, 0);
  for (const char* text : {"--c3-mm 1e300", "--defocus-angstrom 1e30", "--convergence-mrad 1e6",
                           "--convergence-mrad 20000"}) {
    const std::string option = text;
    auto o = run("reconstruct " + data + " -o " + out + " -i 1 --threads 1 " + option);
    EXPECT_EQ(o.code, 1) << option << ": " << o.text;
    EXPECT_NE(o.text.find(option.substr(0, option.find(' '))), std::string::npos) << o.text;
  }
  const std::pair<const char*, double> stored[] = {{"/stem4d/c3_mm", 1e300},
                                                   {"/stem4d/defocus_angstrom", 1e30},
                                                   {"/stem4d/convergence_semiangle_mrad", 1e6},
                                                   {"/stem4d/beam_energy_kev", 1e-6}};
  for (const auto& [key, value] : stored) {
    const auto damaged = (dir / "damaged.h5").string();
    fs::copy_file(data, damaged, fs::copy_options::overwrite_existing);
    {
      auto f = tessera::h5::File::open(damaged, tessera::h5::File::Mode::read_write);
      if (f.exists(key)) f.remove(key);
      f.group("/stem4d").write_scalar(std::string(key).substr(8), value);
    }
    auto o = run("info " + damaged);
    EXPECT_EQ(o.code, 1) << key << ": " << o.text;
    EXPECT_NE(o.text.find("not plausible"), std::string::npos) << key << ": " << o.text;
    EXPECT_EQ(o.text.find("no problems found"), std::string::npos) << o.text;
  }
  fs::remove_all(dir);
}

TEST(Cli, AFullDiskEndsWithAMessageAndExitCodeOne) {
  // The file size limit stands in for a full disk: writes past it fail with
  // EFBIG (SIGXFSZ ignored), as they fail with ENOSPC on a full one.
  const auto dir = temp_dir() / "full";
  fs::create_directories(dir);
  const auto data = (dir / "data.cxi").string(), out = (dir / "r.h5").string();
  ASSERT_EQ(run("simulate -o " + data + " --scan 12 --frame 32 --step 4").code, 0);
  const std::string cmd = "bash -c 'trap \"\" XFSZ; ulimit -f 64; exec " + tool_path() + " reconstruct " + data + " -o " + out +
                          " -i 2 --threads 1 --no-previews --checkpoint-every 1' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string text;
  std::array<char, 4096> buf{};
  while (fgets(buf.data(), buf.size(), p)) text += buf.data();
  const int status = pclose(p);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << ": " << text;
  EXPECT_EQ(WEXITSTATUS(status), 1) << text;
  EXPECT_NE(text.find(out), std::string::npos) << text;
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path() << " left behind";
  fs::remove_all(dir);
}
